# Presence agent, subscriptions, lists: python3 UA against parley-homeserver (labels: integration, presence).
if(TARGET parley-homeserver)
  find_program(PYTHON3 python3)
  if(PYTHON3)
    foreach(case publish errors block lists restart winfo rls)
      add_test(NAME presence_${case}
        COMMAND ${PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/presence/presence_test.py ${case})
      set_tests_properties(presence_${case} PROPERTIES
        LABELS "integration;presence"
        TIMEOUT 90
        ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>")
    endforeach()
  endif()
endif()
