# Agent protocol: frame check + decode of anything; what decodes re-encodes.
parley_fuzz_target(fuzz_agent_proto fuzz_agent_proto.c LIBS parley_agent)
