# shared/directory against a real etcd (Debian's /usr/bin/etcd on free loopback ports).
add_executable(dir_it ${CMAKE_CURRENT_LIST_DIR}/directory/dir_it.c)
target_link_libraries(dir_it PRIVATE parley_directory)
add_test(NAME dir_integration
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/directory/run.sh $<TARGET_FILE:dir_it>)
set_tests_properties(dir_integration PROPERTIES LABELS "integration;needs-etcd" TIMEOUT 180)
# parley-homeserver with the directory and digest authentication (real etcd, sipp).
if(TARGET parley-homeserver)  # parleyctl (tools/) is defined later; generator expressions resolve it
  foreach(case auth disable etcd_down lease)
    add_test(NAME hs_dir_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/homeserver_dir/run.sh ${case})
    set_tests_properties(hs_dir_${case} PROPERTIES
      LABELS "integration;needs-etcd"
      TIMEOUT 120
      ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>;CTL_BIN=$<TARGET_FILE:parleyctl>")
  endforeach()
endif()
