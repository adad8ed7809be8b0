# homeserver: PIDF and SERVICE XML handlers (us_pidf.c, us_lists.c).
set(_hs ${CMAKE_SOURCE_DIR}/homeserver)
parley_fuzz_target(fuzz_pidf fuzz_pidf.c LIBS parley_proxy parley_store parley_util PkgConfig::LIBXML2)
foreach(_t fuzz_pidf fuzz_pidf_replay)
  if(TARGET ${_t})
    target_sources(${_t} PRIVATE ${_hs}/us_pidf.c ${_hs}/us_lists.c ${_hs}/us_subs.c)
    target_include_directories(${_t} PRIVATE ${_hs})
  endif()
endforeach()
