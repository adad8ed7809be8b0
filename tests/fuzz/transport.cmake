# transport: stream framing.
parley_fuzz_target(fuzz_tp_frame fuzz_tp_frame.c LIBS parley_transport)
