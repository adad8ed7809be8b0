# Application chain: manifest parsing and the chain walk with a mock host (shared/apps).
parley_unit_test(test_apps test_apps.c LIBS parley_apps)
target_compile_definitions(test_apps PRIVATE
  APPS_DIR="${CMAKE_SOURCE_DIR}/homeserver/apps")
