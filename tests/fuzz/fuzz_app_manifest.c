/*
 * fuzz_app_manifest: the application manifest parser (app_manifest_parse: header
 * lines, request/response filters, then the script text) on arbitrary bytes.
 * Manifests are loaded from disk or pushed through the directory; nothing may crash,
 * leak or read out of bounds, a refusal must carry a message, and an accepted manifest
 * must keep its documented invariants.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apps/app_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct app_err err;
    struct app_manifest *m;
    char buf[600];

    memset(&err, 0, sizeof err);
    m = app_manifest_parse((const char *)data, size, "fuzz.am", &err);
    if (m == NULL) {
        if (err.msg[0] == '\0')
            abort();   /* every refusal says why */
        sink += strlen(app_err_str(&err, buf, sizeof buf));
        return 0;
    }
    if (m->name[0] == '\0' || memchr(m->name, '\0', sizeof m->name) == NULL)
        abort();
    if (m->nmethods > APP_MAX_METHODS || m->script == NULL || m->script[m->script_len] != '\0')
        abort();
    for (unsigned i = 0; i < m->nmethods; i++)
        if (!app_manifest_wants_request(m, m->methods[i]))
            abort();   /* a listed method is selected */
    for (int code = 100; code < 700; code += 37)
        sink += app_manifest_wants_response(m, code);
    app_manifest_free(m);
    return 0;
}
