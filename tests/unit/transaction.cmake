# transaction: RFC 3261 §17 state machines over a real tp on 127.0.0.1 with fast timers.
parley_unit_test(test_tx test_tx.c LIBS parley_transaction parley_sip parley_transport parley_util)
target_link_libraries(test_tx PRIVATE PkgConfig::LIBEVENT)
