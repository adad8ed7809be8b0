# Application manifests (shared/apps/app_manifest.c).
parley_fuzz_target(fuzz_app_manifest fuzz_app_manifest.c LIBS parley_apps)
