/*
 * fuzz_edge_flow: the edge's parsers of outside bytes — the flow token (RFC 5626 §5.1,
 * the user part of the Route/Record-Route entries the edge put in, which come back from
 * anyone: edge_flow_parse) and the raw Route scanners (edge_raw_routes,
 * edge_raw_first_route_user) run on every request before it is parsed.
 *
 * The first input byte picks the mode:
 *   0  the rest as a token, as received (almost always stopped by the MAC check)
 *   1  the rest as a token body with a correct MAC appended (HMAC-SHA-256 under the
 *      same key, as edge_flow_token makes it), so the parsing behind the MAC is reached
 *   2  a flow built from the bytes: edge_flow_parse(edge_flow_token(f)) must give f back
 *   3  the rest as a request: both raw Route scanners
 *   4  the rest as a sealed topology-hiding blob ("th" of a Via or Record-Route from
 *      outside: edge_th_open), which must not open
 *   5  the rest as entries to hide: edge_th_seal, then edge_th_open gives them back; sealing
 *      again gives the same blob (synthetic IV); a changed character does not open
 */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "edge_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char fz_key[32] = {0x45, 0x64, 0x67, 0x65, 7, 1, 9};
static volatile size_t sink;

static void
route_cb(const char *uri, void *arg)
{
    (void)arg;
    sink += strlen(uri);
}

/* "<text>.<first 8 bytes of HMAC-SHA-256 in hex>", the token's MAC (edge_policy.c). */
static char *
with_mac(const char *text, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char *out = malloc(len + 18);

    if (out == NULL)
        return NULL;
    HMAC(EVP_sha256(), fz_key, 32, (const unsigned char *)text, len, md, &mdlen);
    memcpy(out, text, len);
    out[len] = '.';
    for (int i = 0; i < 8; i++)
        snprintf(out + len + 1 + 2 * i, 3, "%02x", md[i]);
    return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct edge_flow f, g;
    char *s, tok[512], user[256];

    if (size < 1)
        return 0;
    switch (data[0] % 6) {
    case 0:
    case 1:
        s = malloc(size);
        if (s == NULL)
            return 0;
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';   /* a token is a string: stops at the first NUL */
        if (data[0] % 6 == 1) {
            char *t = with_mac(s, strlen(s));
            free(s);
            s = t;
            if (s == NULL)
                return 0;
        }
        if (edge_flow_parse(fz_key, s, &f) == 0) {
            if (f.addr.len > sizeof f.addr.ss)
                abort();
            if (f.proto != TP_UDP && f.proto != TP_TCP && f.proto != TP_TLS)
                abort();
        }
        free(s);
        break;
    case 2:
        memset(&f, 0, sizeof f);
        f.proto = size > 1 ? (enum tp_proto)(data[1] % 3) : TP_UDP;
        for (size_t i = 2; i < size && i < 10; i++)
            f.conn_id = (f.conn_id << 8) | data[i];
        /* a peer address is at most a sockaddr_in6: edge_flow_token accepts longer ones
         * (up to its 200-byte body) that edge_flow_parse then refuses (> 190) */
        f.addr.len = (socklen_t)(size > 10 ? (size - 10) % (sizeof(struct sockaddr_in6) + 1) : 0);
        if (size > 10)
            memcpy(&f.addr.ss, data + 10, size - 10 < f.addr.len ? size - 10 : f.addr.len);
        if (edge_flow_token(fz_key, &f, tok, sizeof tok) != 0)
            break;
        if (edge_flow_parse(fz_key, tok, &g) != 0)
            abort();   /* a token we made must parse */
        if (g.proto != f.proto || g.conn_id != f.conn_id || g.addr.len != f.addr.len ||
            memcmp(&g.addr.ss, &f.addr.ss, f.addr.len) != 0)
            abort();   /* ... back to the same flow */
        tok[0] = tok[0] == 'c' ? 'd' : 'c';   /* any change breaks the MAC */
        if (edge_flow_parse(fz_key, tok, &g) == 0)
            abort();
        break;
    case 4:
    case 5:
        s = malloc(size);
        if (s == NULL)
            return 0;
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        if (data[0] % 6 == 4) {
            char out[EDGE_TH_MAX + 1];
            if (edge_th_open(fz_key, "via", s, out, sizeof out) == 0)
                abort();   /* forging a seal takes the key */
        } else if (strlen(s) <= EDGE_TH_MAX) {
            static char blob[(12 + EDGE_TH_MAX + 16 + 2) / 3 * 4 + 1], blob2[sizeof blob];
            char out[EDGE_TH_MAX + 1];
            if (edge_th_seal(fz_key, "via", s, blob, sizeof blob) != 0 ||
                edge_th_seal(fz_key, "via", s, blob2, sizeof blob2) != 0)
                abort();
            if (strcmp(blob, blob2) != 0)
                abort();   /* the same input seals the same way */
            if (edge_th_open(fz_key, "via", blob, out, sizeof out) != 0 || strcmp(out, s) != 0)
                abort();   /* ... and opens back to it */
            if (edge_th_open(fz_key, "rr", blob, out, sizeof out) == 0)
                abort();   /* other associated data: refused */
            blob[size % strlen(blob)] = blob[size % strlen(blob)] == 'A' ? 'B' : 'A';
            if (edge_th_open(fz_key, "via", blob, out, sizeof out) == 0)
                abort();   /* a changed character: refused */
        }
        free(s);
        break;
    default:
        sink += (size_t)edge_raw_routes((const char *)data + 1, size - 1, route_cb, NULL);
        if (edge_raw_first_route_user((const char *)data + 1, size - 1, user, sizeof user) == 0)
            sink += strnlen(user, sizeof user);
        break;
    }
    return 0;
}
