# Agents (shared/agent, agents/) and archiving (homeserver/hs_archive.c), driven by
# test_agent / the example agents / sipp (labels: integration, agents).
if(TARGET parley-homeserver AND TARGET parley-agent)
  add_executable(test_agent ${CMAKE_CURRENT_LIST_DIR}/agents/test_agent.c)
  target_link_libraries(test_agent PRIVATE parley-agent)
  foreach(case respond trying timeout stall critical kill garbage examples archive archive_full)
    add_test(NAME agents_${case} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/agents/run.sh ${case})
    set_tests_properties(agents_${case} PROPERTIES
      LABELS "integration;agents"
      TIMEOUT 150
      ENVIRONMENT "HS_BIN=$<TARGET_FILE:parley-homeserver>;AGENT_BIN=$<TARGET_FILE:test_agent>;EX_DIR=$<TARGET_FILE_DIR:parley-agent-msglog>")
  endforeach()
endif()
