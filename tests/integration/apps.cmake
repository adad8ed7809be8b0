# The application chain of parley-homeserver driven by sipp (labels: integration, apps).
if(TARGET parley-homeserver)
  foreach(case epid fork after_hours content_filter strict bad_manifest reload)
    add_test(NAME apps_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/apps/run.sh ${case})
    set_tests_properties(apps_${case} PROPERTIES
      LABELS "integration;apps"
      TIMEOUT 90
      ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>")
  endforeach()
endif()

# the pool-wide order (`parleyctl app order`, a real etcd); parleyctl (tools/) is defined later
if(TARGET parley-homeserver)
  add_test(NAME apps_pool_order COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/apps/run.sh pool_order)
  set_tests_properties(apps_pool_order PROPERTIES
    LABELS "integration;apps;needs-etcd"
    TIMEOUT 120
    ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>;CTL_BIN=$<TARGET_FILE:parleyctl>")
endif()

# routing.am follows presence (python3 UAs: two endpoints of alice publish, bob calls)
if(TARGET parley-homeserver)
  find_program(PYTHON3 python3)
  if(PYTHON3)
    foreach(case away tie offline)
      add_test(NAME apps_presence_${case}
        COMMAND ${PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/apps/presence_routing.py ${case})
      set_tests_properties(apps_presence_${case} PROPERTIES
        LABELS "integration;apps"
        TIMEOUT 90
        ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>")
    endforeach()
  endif()
endif()
