# sip: message layer over libosip2 (fixtures in tests/data/sip/*.sip).
# Known-bug tests are off by default; enable one with e.g.
#   -DCMAKE_C_FLAGS=-DPARLEY_KNOWN_BUG_PUSH_VIA_BRANCH
parley_unit_test(test_sip_msg test_sip_msg.c LIBS parley_sip parley_util)
target_compile_definitions(test_sip_msg PRIVATE PARLEY_SIP_DATA="${CMAKE_SOURCE_DIR}/tests/data/sip")
