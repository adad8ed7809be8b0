/*
 * fuzz_cfg_ini: the config file parser (cfg_ini_parse) on arbitrary bytes, and the
 * value parsers every setting goes through (cfg_parse_int/bool/duration_ms/size) on
 * each value it yields. A config file is operator input, but it may come from a
 * mounted volume or a generator: nothing may crash, hang or read out of bounds, and
 * an error must say where (file:line).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/cfg.h"
#include "util/cfg_ini.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static int
on_item(void *arg, const char *section, const char *key, const char *value, int line, int col,
        struct cfg_error *err)
{
    char why[128];
    long long v;
    bool b;

    (void)arg;
    if (line < 1 || col < 0)
        abort();
    if (section)
        sink += strlen(section);
    if (key == NULL)
        return value == NULL ? 0 : (abort(), 0);   /* a section header has no value */
    if (value == NULL)
        abort();
    sink += strlen(key);
    sink += (size_t)cfg_parse_int(value, &v, why, sizeof why);
    sink += (size_t)cfg_parse_bool(value, &b, why, sizeof why);
    sink += (size_t)cfg_parse_duration_ms(value, &v, why, sizeof why);
    sink += (size_t)cfg_parse_size(value, &v, why, sizeof why);
    /* the callback's own refusal must come back as the parse's error */
    if (strcmp(key, "refuse") == 0) {
        cfg_error_set(err, "refused");
        return -1;
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cfg_error err;

    memset(&err, 0, sizeof err);
    if (cfg_ini_parse("fuzz.conf", (const char *)data, size, on_item, NULL, &err) != 0) {
        if (err.msg[0] == '\0' || strncmp(err.msg, "fuzz.conf:", 10) != 0)
            abort();   /* every error names the file and line */
        if (memchr(err.msg, '\0', sizeof err.msg) == NULL)
            abort();
    }
    return 0;
}
