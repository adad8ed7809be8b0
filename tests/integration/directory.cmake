# shared/directory against a real etcd (Debian's /usr/bin/etcd on free loopback ports).
add_executable(dir_it ${CMAKE_CURRENT_LIST_DIR}/directory/dir_it.c)
target_link_libraries(dir_it PRIVATE parley_directory)
add_test(NAME dir_integration
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/directory/run.sh $<TARGET_FILE:dir_it>)
set_tests_properties(dir_integration PROPERTIES LABELS "integration;needs-etcd" TIMEOUT 180)
