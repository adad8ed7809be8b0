# shared/store: unit tests (sqlite WAL store, group commit, kill -9 durability).
parley_unit_test(test_store test_store.c LIBS parley_store)
target_link_libraries(test_store PRIVATE PkgConfig::SQLITE3 PkgConfig::LIBEVENT)

# Throughput probe for the group commit: prints puts/s, asserts nothing, not a ctest.
#   build-*/tests/test_store_bench [total] [batch]
add_executable(test_store_bench ${CMAKE_CURRENT_LIST_DIR}/test_store_bench.c)
target_link_libraries(test_store_bench PRIVATE parley_store PkgConfig::LIBEVENT)
