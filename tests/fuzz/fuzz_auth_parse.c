/*
 * libFuzzer target: auth_parse_credentials on arbitrary bytes, then, when it
 * parses, auth_verify and auth_build_challenge on what it produced. Nothing may
 * crash, leak or read out of bounds; the parse invariants are asserted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth_digest.h"

static struct auth_secret fz_secret;
static struct auth_nc_table *fz_nc;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct auth_credentials c;
    char ha1[AUTH_HEX_SIZE];
    char chal[2048];
    struct auth_verify_params p;

    if (fz_nc == NULL) {
        static const unsigned char key[32] = {1, 2, 3};

        if (auth_secret_init(&fz_secret, key, sizeof(key), "fuzz") != 0)
            abort();
        fz_nc = auth_nc_table_new(64, 300);
        if (fz_nc == NULL)
            abort();
    }
    if (auth_parse_credentials((const char *)data, size, &c) != 0) {
        if (c.err == NULL)
            abort();
        return 0;
    }
    /* invariants promised by auth_parse.h */
    if (c.username[0] == '\0' || c.nonce[0] == '\0' || c.uri[0] == '\0' ||
        strlen(c.response) != auth_hex_len(c.algorithm) || (c.qop_auth && !c.has_nc))
        abort();
    if (auth_ha1(c.algorithm, c.username, c.realm, "pw", ha1, sizeof(ha1)) != 0)
        abort();
    memset(&p, 0, sizeof(p));
    p.realm = c.realm;
    p.secret = &fz_secret;
    p.now_s = 1000;
    p.nonce_lifetime_s = 300;
    p.nc_table = fz_nc;
    p.allow_no_qop = size & 1;
    (void)auth_verify(&c, "REGISTER", ha1, &p, NULL);
    (void)auth_build_challenge(c.realm, c.nonce, c.algorithm, c.qop_auth, c.has_opaque ? c.opaque : NULL,
                               chal, sizeof(chal));
    return 0;
}
