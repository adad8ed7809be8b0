# parley-homeserver driven by sipp (labels: integration, homeserver).
if(TARGET parley-homeserver)
  foreach(case register register_rules call call_tcp message cancel fork maxfwd unknown
          nexthop_tcp nexthop_udp persist)
    add_test(NAME hs_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/homeserver/run.sh ${case})
    set_tests_properties(hs_${case} PROPERTIES
      LABELS "integration;homeserver"
      TIMEOUT 90
      ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>")
  endforeach()
endif()
