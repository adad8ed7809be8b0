# Connection trust (design §2): TLS/MTLS classes, Route stripping, no open relay, throttling,
# trusted listeners, static routes. Labels: integration, tls, needs-etcd where etcd is used.
if(TARGET parley-homeserver)   # parleyctl (tools/) is defined later: generator expression only
  foreach(case classes relay throttle gateway static)
    add_test(NAME trust_${case}
      COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/trust/run.sh ${case})
    set(labels "integration;trust")
    if(case STREQUAL "classes")
      list(APPEND labels tls)
    endif()
    if(case STREQUAL "classes" OR case STREQUAL "gateway" OR case STREQUAL "static")
      list(APPEND labels needs-etcd)
    endif()
    set_tests_properties(trust_${case} PROPERTIES
      LABELS "${labels}"
      TIMEOUT 90
      ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>;CTL_BIN=$<TARGET_FILE:parleyctl>")
  endforeach()
endif()
