/*
 * fuzz_scr_compile: libFuzzer target for scr_compile(). Every input that
 * compiles is also run against a small mock host with a tight step budget, so
 * the VM, the built-ins and the host contract are fuzzed as well. Any crash,
 * sanitizer report or leak is a bug: hostile scripts must give a compile or
 * runtime error.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "script/scr.h"

static const char *const hdr_names[] = { "From", "To", "Via", "Via", "Route", "Subject" };
static const char *const hdr_vals[] = {
    "\"A\" <sip:alice@example.com;maddr=10.0.0.1>;tag=1", "<sip:bob@example.com>;epid=x",
    "SIP/2.0/TLS 10.0.0.1;branch=z9hG4bK1", "SIP/2.0/UDP 10.0.0.2", "<sip:edge;lr>", "hi",
};

static bool f_is_request(void *arg) { return *(const int *)arg & 1; }
static const char *f_method(void *arg) { return "INVITE"; }
static const char *f_ruri(void *arg) { return "sip:bob@example.com;transport=tls"; }
static int f_status(void *arg) { return 486; }
static const char *f_body(void *arg) { return "v=0\r\n"; }
static const char *f_ctype(void *arg) { return "application/sdp"; }
static int64_t f_now(void *arg) { return 1704292200; }

static const char *
f_header(void *arg, const char *name, size_t idx)
{
    for (size_t i = 0; i < sizeof(hdr_names) / sizeof(hdr_names[0]); i++) {
        if (strcasecmp(hdr_names[i], name) == 0 && idx-- == 0)
            return hdr_vals[i];
    }
    return NULL;
}

static int
f_endpoints(void *arg, const char *aor, scr_endpoint_cb *cb, void *cb_arg)
{
    static const struct scr_endpoint eps[] = {
        { "e1", "sip:bob@10.0.0.1", "active", "<sip:edge1;lr>", 3500, 100 },
        { "e2", "sip:bob@10.0.0.2", NULL, NULL, 3000, 200 },
        { NULL, NULL, NULL, NULL, 0, 0 },
    };
    for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]); i++) {
        if (cb(cb_arg, &eps[i]) != 0)
            break;
    }
    return 0;
}

static int f_str1(void *arg, const char *a) { return a[0] == '!' ? -1 : 0; }
static int f_str2(void *arg, const char *a, const char *b) { return 0; }
static int f_respond(void *arg, int code, const char *r, const char *h) { return 0; }
static bool f_dispatch(void *arg, const char *h) { return h[0] != 'x'; }
static void f_log(void *arg, int level, const char *text) { (void)strlen(text); }
static int f_proxy(void *arg, const char *uri) { return 0; }

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct scr_err err;
    struct scr_program *p = scr_compile((const char *)data, size, "fuzz.scr", &err);
    if (!p)
        return 0;
    int kind = (int)(size & 1);
    struct scr_host h = {
        .is_request = f_is_request, .method = f_method, .request_uri = f_ruri,
        .status_code = f_status, .header = f_header, .body = f_body,
        .content_type = f_ctype, .endpoints = f_endpoints, .now = f_now,
        .proxy_request = f_proxy, .respond = f_respond, .redirect = f_str1,
        .add_header = f_str2, .set_header = f_str2, .remove_header = f_str1,
        .add_route = f_str1, .set_to_epid = f_str1, .dispatch = f_dispatch, .log = f_log,
        .arg = &kind,
    };
    struct scr_run_result res;
    char dump[256];
    scr_program_set_limits(p, 5000, 256 * 1024);
    scr_run(p, &h, &res);
    scr_program_dump(p, dump, sizeof(dump));
    scr_program_free(p);
    return 0;
}
