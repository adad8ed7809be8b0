#include "agent/agent_proto.h"

#include <stdlib.h>
#include <string.h>

/* Which fields each frame type carries (bit = tag). */
#define B(t) (1u << (t))
#define INTS (B(AGENT_T_VERSION) | B(AGENT_T_ID) | B(AGENT_T_STATUS) | B(AGENT_T_FLAGS) | B(AGENT_T_EVENT) | B(AGENT_T_QUEUE))

struct type_rule {
    int type;
    const char *name;
    uint32_t allowed;             /* fields encoded / accepted */
    uint32_t required;            /* fields a valid frame must have */
};

static const struct type_rule rules[] = {
    {AGENT_HELLO, "HELLO", B(AGENT_T_VERSION) | B(AGENT_T_SECRET), B(AGENT_T_VERSION)},
    {AGENT_WELCOME, "WELCOME", B(AGENT_T_VERSION), B(AGENT_T_VERSION)},
    {AGENT_REGISTER, "REGISTER", B(AGENT_T_APP), B(AGENT_T_APP)},
    {AGENT_REGISTERED, "REGISTERED", B(AGENT_T_APP) | B(AGENT_T_QUEUE), B(AGENT_T_APP)},
    {AGENT_ERROR, "ERROR", B(AGENT_T_STATUS) | B(AGENT_T_REASON), B(AGENT_T_STATUS)},
    {AGENT_REQUEST, "REQUEST", B(AGENT_T_ID) | B(AGENT_T_APP) | B(AGENT_T_SIP), B(AGENT_T_ID) | B(AGENT_T_SIP)},
    {AGENT_RESPONSE, "RESPONSE", B(AGENT_T_ID) | B(AGENT_T_STATUS) | B(AGENT_T_SIP),
     B(AGENT_T_ID) | B(AGENT_T_STATUS) | B(AGENT_T_SIP)},
    {AGENT_EVENT, "EVENT", B(AGENT_T_ID) | B(AGENT_T_EVENT) | B(AGENT_T_REASON), B(AGENT_T_EVENT)},
    {AGENT_PROXY, "PROXY", B(AGENT_T_ID) | B(AGENT_T_URI) | B(AGENT_T_ADD) | B(AGENT_T_REMOVE) | B(AGENT_T_FLAGS),
     B(AGENT_T_ID)},
    {AGENT_PROXY_RESPONSE, "PROXY_RESPONSE", B(AGENT_T_ID) | B(AGENT_T_ADD) | B(AGENT_T_REMOVE), B(AGENT_T_ID)},
    {AGENT_RESPOND, "RESPOND", B(AGENT_T_ID) | B(AGENT_T_STATUS) | B(AGENT_T_REASON) | B(AGENT_T_ADD),
     B(AGENT_T_ID) | B(AGENT_T_STATUS)},
    {AGENT_TRYING, "TRYING", B(AGENT_T_ID), B(AGENT_T_ID)},
    {AGENT_FORK, "FORK", B(AGENT_T_ID) | B(AGENT_T_URI) | B(AGENT_T_ADD) | B(AGENT_T_REMOVE) | B(AGENT_T_FLAGS),
     B(AGENT_T_ID) | B(AGENT_T_URI)},
};

static const struct type_rule *
rule_of(int type)
{
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (rules[i].type == type)
            return &rules[i];
    return NULL;
}

const char *
agent_type_name(int type)
{
    const struct type_rule *r = rule_of(type);
    return r ? r->name : "?";
}

static uint32_t
get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

long
agent_frame_check(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint32_t n;

    if (len >= 1 && p[0] != 'P')
        return -1;
    if (len >= 2 && p[1] != 'A')
        return -1;
    if (len >= 3 && p[2] != AGENT_PROTO_VERSION)
        return -1;
    if (len < AGENT_HDR_LEN)
        return 0;
    n = get32(p + 4);
    if (n > AGENT_MAX_FRAME)
        return -1;
    if (len < AGENT_HDR_LEN + (size_t)n)
        return 0;
    return (long)(AGENT_HDR_LEN + n);
}

/* A string field: ends with its only NUL. */
static const char *
str_field(const unsigned char *v, uint32_t n, bool binary)
{
    if (n == 0 || v[n - 1] != '\0')
        return NULL;
    if (!binary && (n > AGENT_MAX_STR || memchr(v, '\0', n - 1) != NULL))
        return NULL;
    return (const char *)v;
}

int
agent_decode(const void *buf, size_t len, struct agent_msg *m, const char **why)
{
    const unsigned char *p = buf, *end;
    const struct type_rule *r;
    uint32_t seen = 0;
    const char *dummy;

    if (why == NULL)
        why = &dummy;
    memset(m, 0, sizeof *m);
    if (agent_frame_check(buf, len) != (long)len) {
        *why = "bad frame header or length";
        return -1;
    }
    m->version = p[2];
    m->type = (enum agent_type)p[3];
    if ((r = rule_of(p[3])) == NULL) {
        *why = "unknown frame type";
        return -1;
    }
    end = p + len;
    p += AGENT_HDR_LEN;
    while (p < end) {
        unsigned tag;
        uint32_t n;
        const unsigned char *v;
        const char *s = NULL;
        uint64_t x = 0;

        if (end - p < 5) {
            *why = "truncated field header";
            return -1;
        }
        tag = p[0];
        n = get32(p + 1);
        v = p + 5;
        if ((size_t)(end - v) < n) {
            *why = "field longer than the frame";
            return -1;
        }
        p = v + n;
        if (tag >= 32 || !(r->allowed & B(tag)))
            continue;   /* unknown or not used by this type: skipped */
        if (B(tag) & INTS) {
            if (n != 8) {
                *why = "integer field is not 8 bytes";
                return -1;
            }
            x = (uint64_t)get32(v) << 32 | get32(v + 4);
        } else {
            s = str_field(v, n, tag == AGENT_T_SIP);
            if (s == NULL) {
                *why = "string field without its NUL, with a NUL inside, or too long";
                return -1;
            }
        }
        if ((seen & B(tag)) && tag != AGENT_T_URI && tag != AGENT_T_ADD && tag != AGENT_T_REMOVE) {
            *why = "field repeated";
            return -1;
        }
        seen |= B(tag);
        switch (tag) {
        case AGENT_T_VERSION: m->proto_version = x; break;
        case AGENT_T_ID: m->id = x; break;
        case AGENT_T_STATUS: m->status = x; break;
        case AGENT_T_FLAGS: m->flags = x; break;
        case AGENT_T_EVENT: m->event = x; break;
        case AGENT_T_QUEUE: m->queue = x; break;
        case AGENT_T_SECRET: m->secret = s; break;
        case AGENT_T_APP: m->app = s; break;
        case AGENT_T_REASON: m->reason = s; break;
        case AGENT_T_SIP:
            m->sip = s;
            m->sip_len = n - 1;
            break;
        case AGENT_T_URI:
        case AGENT_T_ADD:
        case AGENT_T_REMOVE: {
            unsigned *cnt = tag == AGENT_T_URI ? &m->nuri : tag == AGENT_T_ADD ? &m->nadd : &m->nremove;
            const char **arr = tag == AGENT_T_URI ? m->uri : tag == AGENT_T_ADD ? m->add : m->remove;
            if (*cnt >= AGENT_MAX_ITEMS) {
                *why = "too many items";
                return -1;
            }
            arr[(*cnt)++] = s;
            break;
        }
        default:
            break;
        }
    }
    if ((seen & r->required) != r->required) {
        *why = "a required field is missing";
        return -1;
    }
    if ((m->type == AGENT_RESPOND || m->type == AGENT_RESPONSE) && (m->status < 100 || m->status > 699)) {
        *why = "status out of range";
        return -1;
    }
    if (m->type == AGENT_PROXY && m->nuri > 1) {
        *why = "PROXY takes at most one URI (FORK for several)";
        return -1;
    }
    if (m->id == 0 && (r->required & B(AGENT_T_ID))) {
        *why = "id 0";
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ encode */

static int
reserve(struct agent_buf *b, size_t n)
{
    size_t cap;
    char *p;

    if (b->failed)
        return -1;
    if (b->len - b->start + n > AGENT_HDR_LEN + (size_t)AGENT_MAX_FRAME) {
        b->failed = true;
        return -1;
    }
    if (b->len + n <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    if ((p = realloc(b->p, cap)) == NULL) {
        b->failed = true;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void
put_field(struct agent_buf *b, unsigned tag, const void *v, uint32_t n)
{
    if (reserve(b, 5 + (size_t)n) != 0)
        return;
    b->p[b->len] = (char)tag;
    put32((unsigned char *)b->p + b->len + 1, n);
    if (n)
        memcpy(b->p + b->len + 5, v, n);
    b->len += 5 + (size_t)n;
}

static void
put_u64(struct agent_buf *b, unsigned tag, uint64_t x)
{
    unsigned char v[8];

    put32(v, (uint32_t)(x >> 32));
    put32(v + 4, (uint32_t)x);
    put_field(b, tag, v, 8);
}

static void
put_str(struct agent_buf *b, unsigned tag, const char *s, size_t max)
{
    size_t n;

    if (s == NULL)
        return;
    n = strlen(s);
    if (n >= max) {
        b->failed = true;
        return;
    }
    put_field(b, tag, s, (uint32_t)n + 1);
}

int
agent_encode(struct agent_buf *b, const struct agent_msg *m)
{
    const struct type_rule *r = rule_of(m->type);
    size_t start = b->len;
    bool was_failed = b->failed;

    if (r == NULL || m->nuri > AGENT_MAX_ITEMS || m->nadd > AGENT_MAX_ITEMS || m->nremove > AGENT_MAX_ITEMS)
        return -1;
    b->failed = false;
    b->start = start;
    if (reserve(b, AGENT_HDR_LEN) != 0)
        goto fail;
    b->p[start] = 'P';
    b->p[start + 1] = 'A';
    b->p[start + 2] = AGENT_PROTO_VERSION;
    b->p[start + 3] = (char)m->type;
    b->len += AGENT_HDR_LEN;
    if (r->allowed & B(AGENT_T_VERSION))
        put_u64(b, AGENT_T_VERSION, m->proto_version ? m->proto_version : AGENT_PROTO_VERSION);
    if (r->allowed & B(AGENT_T_ID))
        put_u64(b, AGENT_T_ID, m->id);
    if (r->allowed & B(AGENT_T_STATUS))
        put_u64(b, AGENT_T_STATUS, m->status);
    if (r->allowed & B(AGENT_T_EVENT))
        put_u64(b, AGENT_T_EVENT, m->event);
    if ((r->allowed & B(AGENT_T_FLAGS)) && m->flags)
        put_u64(b, AGENT_T_FLAGS, m->flags);
    if ((r->allowed & B(AGENT_T_QUEUE)) && m->queue)
        put_u64(b, AGENT_T_QUEUE, m->queue);
    if (r->allowed & B(AGENT_T_SECRET))
        put_str(b, AGENT_T_SECRET, m->secret, AGENT_MAX_STR);
    if (r->allowed & B(AGENT_T_APP))
        put_str(b, AGENT_T_APP, m->app, AGENT_MAX_STR);
    if (r->allowed & B(AGENT_T_REASON))
        put_str(b, AGENT_T_REASON, m->reason, AGENT_MAX_STR);
    if ((r->allowed & B(AGENT_T_SIP)) && m->sip) {
        if (memchr(m->sip, '\0', m->sip_len) != NULL || m->sip_len >= AGENT_MAX_FRAME)
            b->failed = true;
        else if (reserve(b, 5 + m->sip_len + 1) == 0) {
            b->p[b->len] = (char)AGENT_T_SIP;
            put32((unsigned char *)b->p + b->len + 1, (uint32_t)m->sip_len + 1);
            memcpy(b->p + b->len + 5, m->sip, m->sip_len);
            b->p[b->len + 5 + m->sip_len] = '\0';   /* the NUL after the bytes */
            b->len += 5 + m->sip_len + 1;
        }
    }
    if (r->allowed & B(AGENT_T_URI))
        for (unsigned i = 0; i < m->nuri; i++)
            put_str(b, AGENT_T_URI, m->uri[i], AGENT_MAX_STR);
    if (r->allowed & B(AGENT_T_ADD))
        for (unsigned i = 0; i < m->nadd; i++)
            put_str(b, AGENT_T_ADD, m->add[i], AGENT_MAX_STR);
    if (r->allowed & B(AGENT_T_REMOVE))
        for (unsigned i = 0; i < m->nremove; i++)
            put_str(b, AGENT_T_REMOVE, m->remove[i], AGENT_MAX_STR);
    if (b->failed)
        goto fail;
    put32((unsigned char *)b->p + start + 4, (uint32_t)(b->len - start - AGENT_HDR_LEN));
    b->failed = was_failed;
    return 0;
fail:
    b->len = start;
    b->failed = was_failed;
    return -1;
}

void
agent_buf_free(struct agent_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = b->start = 0;
    b->failed = false;
}
