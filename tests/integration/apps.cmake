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
