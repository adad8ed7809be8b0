# Config file parser and the setting value parsers (shared/util/cfg_ini.c, cfg.c).
parley_fuzz_target(fuzz_cfg_ini fuzz_cfg_ini.c LIBS parley_util)
