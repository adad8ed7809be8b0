/*
 * fuzz_pidf: the XML handlers of the presence agent and the lists — PIDF validation,
 * composition of an accepted document, and the SERVICE document parser.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "us_lists.h"
#include "us_pidf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    struct us_service svc;
    char err[128];

    if (!init) {
        us_pidf_init();
        init = 1;
    }
    if (us_pidf_parse((const char *)data, size, NULL, err, sizeof err) == 0) {
        struct us_pidf_part part = {(const char *)data, size, NULL, NULL};
        size_t len = 0;
        char *doc = us_pidf_compose("sip:fuzz@example.com", &part, 1, &len);
        if (doc && us_pidf_parse(doc, len, NULL, err, sizeof err) != 0)
            abort();   /* what we compose must be valid PIDF */
        free(doc);
    }
    if (us_service_parse((const char *)data, size, &svc, err, sizeof err) == 0)
        us_service_clear(&svc);
    return 0;
}
