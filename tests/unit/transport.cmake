# transport: framing (pure) and the real-socket tests on 127.0.0.1.
parley_unit_test(test_tp_frame test_tp_frame.c LIBS parley_transport)
parley_unit_test(test_tp test_tp.c LIBS parley_transport)
