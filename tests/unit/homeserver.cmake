# homeserver: location table and registrar. add_executable cannot reuse the objects of
# parley-homeserver, so the module sources are compiled into each test. The registrar
# test supplies the px_req_* / px_reply* functions itself (a fake request, no proxy),
# and uses a real store in a temporary directory.
set(_hs ${CMAKE_SOURCE_DIR}/homeserver)

add_executable(test_us_location ${CMAKE_CURRENT_LIST_DIR}/test_us_location.c ${_hs}/us_location.c)
target_include_directories(test_us_location PRIVATE ${_hs})
target_link_libraries(test_us_location PRIVATE parley_transport parley_util PkgConfig::CMOCKA)
add_test(NAME test_us_location COMMAND test_us_location)
set_tests_properties(test_us_location PROPERTIES LABELS unit TIMEOUT 120)

add_executable(test_registrar ${CMAKE_CURRENT_LIST_DIR}/test_registrar.c ${_hs}/us_registrar.c
  ${_hs}/us_location.c)
target_include_directories(test_registrar PRIVATE ${_hs})
target_compile_definitions(test_registrar PRIVATE PARLEY_SIP_DATA="${CMAKE_SOURCE_DIR}/tests/data/sip")
target_link_libraries(test_registrar PRIVATE parley_store parley_sip parley_transport parley_util
  PkgConfig::LIBEVENT PkgConfig::CMOCKA)
add_test(NAME test_registrar COMMAND test_registrar)
set_tests_properties(test_registrar PROPERTIES LABELS unit TIMEOUT 120)

# presence documents (us_pidf.c) and the SERVICE parser of the lists (us_lists.c; its
# SIP side links against the real proxy, subscriptions and store).
add_executable(test_us_pidf ${CMAKE_CURRENT_LIST_DIR}/test_us_pidf.c ${_hs}/us_pidf.c ${_hs}/us_lists.c
  ${_hs}/us_subs.c)
target_include_directories(test_us_pidf PRIVATE ${_hs})
target_link_libraries(test_us_pidf PRIVATE parley_proxy parley_store parley_util PkgConfig::LIBXML2
  PkgConfig::LIBEVENT PkgConfig::CMOCKA)
add_test(NAME test_us_pidf COMMAND test_us_pidf)
set_tests_properties(test_us_pidf PROPERTIES LABELS unit TIMEOUT 120)
