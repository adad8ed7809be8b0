# Integration tests: real processes on loopback, sipp as the peer, a real etcd.
foreach(area homeserver apps directory auth ops torture faults trust agents presence e2e frontend_workers)
  if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/${area}.cmake)
    include(${CMAKE_CURRENT_LIST_DIR}/${area}.cmake)
  endif()
endforeach()
