# parleyctl against a real etcd (tests/lib/etcd.sh): users, routes, servers,
# registrations, a 100,000-user import, etcd down.
add_test(NAME parleyctl_etcd
  COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/parleyctl/test_parleyctl.sh $<TARGET_FILE:parleyctl> 100000)
set_tests_properties(parleyctl_etcd PROPERTIES LABELS "integration;needs-etcd" TIMEOUT 600)
# parleyctl contacts / acl through a real home server's admin endpoint (real etcd): round
# trip, NOTIFY to the list's subscriber, block -> 403 and closed presence, bad input -> 2.
if(TARGET parley-homeserver)   # parleyctl (tools/) is defined later: generator expression only
  find_program(PYTHON3 python3)
  if(PYTHON3)
    foreach(case contacts acl errors)
      add_test(NAME parleyctl_lists_${case}
        COMMAND ${PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/parleyctl/test_lists.py ${case})
      set_tests_properties(parleyctl_lists_${case} PROPERTIES
        LABELS "integration;needs-etcd"
        TIMEOUT 120
        ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>;CTL_BIN=$<TARGET_FILE:parleyctl>")
    endforeach()
  endif()
endif()
