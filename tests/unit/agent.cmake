# Agent protocol codec (shared/agent).
parley_unit_test(test_agent_proto test_agent_proto.c LIBS parley_agent)
