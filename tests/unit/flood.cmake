# homeserver flood protection (us_flood.c): buckets, bans, the LRU bound. The module source
# is compiled into the test (add_executable cannot reuse parley-homeserver's objects).
add_executable(test_us_flood ${CMAKE_CURRENT_LIST_DIR}/test_us_flood.c ${CMAKE_SOURCE_DIR}/homeserver/us_flood.c)
target_include_directories(test_us_flood PRIVATE ${CMAKE_SOURCE_DIR}/homeserver)
target_link_libraries(test_us_flood PRIVATE parley_proxy parley_util PkgConfig::CMOCKA)
add_test(NAME test_us_flood COMMAND test_us_flood)
set_tests_properties(test_us_flood PROPERTIES LABELS unit TIMEOUT 60)
