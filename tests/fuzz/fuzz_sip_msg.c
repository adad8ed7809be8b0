/*
 * libFuzzer target for sip_msg: parse the input, read it through every accessor the
 * proxy uses (Via info, routes, contacts, URI params, AOR, Max-Forwards, tags,
 * Call-ID, body, content type), make the proxy's edits (fix/pop/push Via, Max-Forwards,
 * Record-Route, To tag), serialize, and parse the output again; also build a raw 400
 * from the input bytes and check the answer is well formed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sip/sip_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static void
touch(const char *s)
{
    if (s)
        sink += strlen(s);
}

static void
read_uri(const osip_uri_t *uri)
{
    char aor[256];
    char *s;

    if (uri == NULL)
        return;
    touch(sip_uri_param(uri, "maddr"));
    touch(sip_uri_param(uri, "transport"));
    touch(sip_uri_param(uri, "user"));
    sink += sip_uri_has_param(uri, "lr");
    sink += sip_uri_port(uri, 5060);
    touch(sip_uri_aor(uri, aor, sizeof aor));
    sink += sip_uri_is_phone(uri);
    s = sip_uri_str(uri);
    touch(s);
    free(s);
}

static void
read_all(const struct sip_msg *msg)
{
    struct sip_via_info v;
    char buf[256];
    size_t blen = 0;
    const char *body;

    touch(sip_msg_method_str(msg));
    touch(msg->branch);
    for (int i = 0; sip_msg_via_info(msg, i, &v) == 0 && i < 8; i++) {
        touch(v.transport);
        touch(v.host);
        touch(v.received);
        touch(v.branch);
        sink += v.port + v.rport + v.has_rport;
    }
    sink += (size_t)sip_msg_via_count(msg);
    for (int i = 0; i < sip_msg_route_count(msg) && i < 8; i++)
        read_uri(sip_msg_route_uri(msg, i));
    for (int i = 0; i < sip_msg_contact_count(msg) && i < 8; i++) {
        osip_contact_t *ct = sip_msg_contact(msg, i);
        if (ct == NULL)
            continue;
        read_uri(ct->url);
        touch(sip_contact_param(ct, "expires"));
        touch(sip_contact_param(ct, "q"));
        touch(sip_contact_param(ct, "+sip.instance"));
        touch(sip_contact_param(ct, "reg-id"));
    }
    sink += sip_msg_contact_is_star(msg);
    if (msg->request)
        read_uri(sip_msg_ruri(msg));
    if (msg->osip->from)
        read_uri(msg->osip->from->url);
    if (msg->osip->to)
        read_uri(msg->osip->to->url);
    sink += (size_t)sip_msg_max_forwards(msg);
    touch(sip_msg_from_tag(msg));
    touch(sip_msg_to_tag(msg));
    touch(sip_msg_call_id(msg, buf, sizeof buf));
    body = sip_msg_body(msg, &blen);
    if (body && blen)
        sink += (unsigned char)body[blen - 1];
    touch(sip_msg_content_type(msg, buf, sizeof buf));
    touch(sip_msg_header(msg, "expires", 0));
    touch(sip_msg_header(msg, "require", 0));
    sink += (size_t)sip_msg_header_count(msg, "path");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    struct sip_error err;
    struct sip_msg *msg, *again = NULL, *reply = NULL;
    char *buf, *out = NULL, *raw;
    size_t outlen = 0, rawlen = 0;

    if (!init) {
        sip_init();
        init = true;
    }
    /* an exact-size heap copy so ASan sees any read past the end */
    buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);

    raw = sip_reply_raw(buf, size, 400, "Bad Request", &rawlen);
    if (raw) {
        if (rawlen < 12 || memcmp(raw, "SIP/2.0 400 ", 12) != 0 ||
            memcmp(raw + rawlen - 4, "\r\n\r\n", 4) != 0)
            abort();
        free(raw);
    }

    msg = sip_msg_parse(buf, size, NULL, &err);
    if (msg == NULL) {
        if (memchr(err.reason, '\0', sizeof err.reason) == NULL)
            abort();
        goto out;
    }
    read_all(msg);
    if (msg->request) {
        char tag[24], branch[48];
        reply = sip_reply_new(msg, 404, NULL, "fuzztag");
        if (reply) {
            read_all(reply);
            if (sip_msg_serialize(reply, &out, &outlen) == 0)
                free(out);
            out = NULL;
        }
        sip_make_tag(msg, tag, sizeof tag);
        sip_make_branch(branch, sizeof branch);
        sip_msg_fix_via(msg, "192.0.2.1", 5060);
        if (sip_msg_max_forwards(msg) > 0)
            sip_msg_set_max_forwards(msg, sip_msg_max_forwards(msg) - 1);
        sip_msg_push_record_route(msg, "sip:127.0.0.1:5060;lr");
        sip_msg_pop_route(msg);
        char via[128];
        memcpy(via, "SIP/2.0/UDP 127.0.0.1:5060;branch=", 34);
        memcpy(via + 34, branch, strlen(branch) + 1);
        sip_msg_push_via(msg, via);
        if (sip_msg_to_tag(msg) == NULL)
            sip_msg_set_to_tag(msg, tag);
    } else {
        sip_msg_pop_via(msg);
    }
    read_all(msg);
    if (sip_msg_serialize(msg, &out, &outlen) == 0 && out) {
        struct sip_error err2;
        again = sip_msg_parse(out, outlen, NULL, &err2);
        if (again)
            read_all(again);
    }

out:
    free(out);
    sip_msg_free(again);
    sip_msg_free(reply);
    sip_msg_free(msg);
    free(buf);
    return 0;
}
