# The edge's flow tokens and raw Route scanners (edge/edge_policy.c, built into the target
# as the edge is an executable, like presence.cmake does with the home server's files).
set(_edge ${CMAKE_SOURCE_DIR}/edge)
parley_fuzz_target(fuzz_edge_flow fuzz_edge_flow.c
  LIBS parley_proxy parley_directory parley_util PkgConfig::OPENSSL PkgConfig::LIBEVENT)
foreach(_t fuzz_edge_flow fuzz_edge_flow_replay)
  if(TARGET ${_t})
    target_sources(${_t} PRIVATE ${_edge}/edge_policy.c)
    target_include_directories(${_t} PRIVATE ${_edge})
  endif()
endforeach()
