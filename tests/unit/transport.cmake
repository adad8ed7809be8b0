# transport: framing (pure) and the real-socket tests on 127.0.0.1.
parley_unit_test(test_tp_frame test_tp_frame.c LIBS parley_transport)
parley_unit_test(test_tp test_tp.c LIBS parley_transport)
# TLS: makes a throwaway PKI with tests/lib/certs.sh (openssl CLI) at group setup.
parley_unit_test(test_tp_tls test_tp_tls.c LIBS parley_transport)
target_compile_definitions(test_tp_tls PRIVATE PARLEY_CERTS_SH="${CMAKE_SOURCE_DIR}/tests/lib/certs.sh")
set_tests_properties(test_tp_tls PROPERTIES LABELS "unit;tls")
