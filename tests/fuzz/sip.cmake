# sip: message parser, accessors, edits and serialize/re-parse; raw 400 builder.
parley_fuzz_target(fuzz_sip_msg fuzz_sip_msg.c LIBS parley_sip parley_util)
