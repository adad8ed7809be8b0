#define LOG_MODULE "flood"
#include "us_flood.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cfg.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/metrics.h"

/* ------------------------------------------------------------------ settings */

struct flood_settings {
    long long register_rate;
    long long request_rate;
    long long burst;
    long long ban_failures;
    long long ban_time_ms;
    long long max_addresses;
};

/* Static: cfg_free() writes into settings after the stage is gone (as hs_apps.c). */
static struct flood_settings flood_set;

static const struct cfg_opt flood_rows[] = {
    {"flood-register-rate", CFG_INT, "0", 0, 1000000, true, false,
     "REGISTER requests per second accepted from one source address (more: 503 with "
     "Retry-After); 0 = unlimited",
     offsetof(struct flood_settings, register_rate)},
    {"flood-request-rate", CFG_INT, "0", 0, 1000000, true, false,
     "requests per second (any method but ACK) accepted from one source address (more: 503 "
     "with Retry-After); 0 = unlimited",
     offsetof(struct flood_settings, request_rate)},
    {"flood-burst", CFG_INT, "50", 1, 1000000, true, false,
     "requests one source address may send at once above its flood rates (token bucket size)",
     offsetof(struct flood_settings, burst)},
    {"flood-ban-failures", CFG_INT, "10", 1, 1000000, true, false,
     "failed digest authentications from one source address within flood-ban-time that ban it",
     offsetof(struct flood_settings, ban_failures)},
    {"flood-ban-time", CFG_DURATION_MS, "0", 0, 86400000, true, false,
     "how long a source address stays banned (every request: 503 with Retry-After); 0 = no bans",
     offsetof(struct flood_settings, ban_time_ms)},
    {"flood-max-addresses", CFG_INT, "16384", 1, 10000000, true, false,
     "source addresses tracked by flood protection (least recently seen forgotten first)",
     offsetof(struct flood_settings, max_addresses)},
};

/* ------------------------------------------------------------------ table */

struct flood_entry {
    uint8_t addr[16];             /* IPv4 in the first 4 bytes */
    uint8_t family;               /* 4 or 6; 0 = free */
    struct flood_entry *hnext;    /* hash chain */
    struct flood_entry *lru_prev, *lru_next;
    double reg_tokens, req_tokens;
    int64_t refill_ms;            /* last refill of both buckets */
    uint32_t failures;
    int64_t fail_start_ms;        /* start of the failure window */
    int64_t banned_until_ms;      /* 0 = not banned */
};

struct us_flood {
    struct us_flood_opts opts;
    struct flood_entry **buckets;
    size_t nbuckets;              /* power of two */
    struct flood_entry *lru_head, *lru_tail;   /* head = most recently seen */
    size_t used;
    struct us_flood_stats stats;
    struct metric *m_rejected[4];
    struct metric *m_bans;
};

static uint64_t
key_hash(const uint8_t *a, uint8_t family)
{
    uint64_t h = hash_fnv1a64(HASH_FNV64_SEED ^ family, a, family == 4 ? 4 : 16);

    return h ^ (h >> 29);
}

/* The address without the port; an IPv4-mapped IPv6 address counts as IPv4. 0 or -1. */
static int
addr_key(const struct tp_addr *src, uint8_t out[16], uint8_t *family)
{
    memset(out, 0, 16);
    if (src->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&src->ss;
        memcpy(out, &s4->sin_addr, 4);
        *family = 4;
        return 0;
    }
    if (src->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&src->ss;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            memcpy(out, &s6->sin6_addr.s6_addr[12], 4);
            *family = 4;
        } else {
            memcpy(out, &s6->sin6_addr, 16);
            *family = 6;
        }
        return 0;
    }
    return -1;
}

static void
lru_unlink(struct us_flood *fl, struct flood_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        fl->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        fl->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void
lru_push_head(struct us_flood *fl, struct flood_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = fl->lru_head;
    if (fl->lru_head)
        fl->lru_head->lru_prev = e;
    fl->lru_head = e;
    if (fl->lru_tail == NULL)
        fl->lru_tail = e;
}

static void
hash_remove(struct us_flood *fl, struct flood_entry *e)
{
    struct flood_entry **pp = &fl->buckets[key_hash(e->addr, e->family) & (fl->nbuckets - 1)];

    for (; *pp; pp = &(*pp)->hnext) {
        if (*pp == e) {
            *pp = e->hnext;
            e->hnext = NULL;
            return;
        }
    }
}

/* Frees the least recently seen entry. */
static void
evict_one(struct us_flood *fl)
{
    struct flood_entry *e = fl->lru_tail;

    if (e == NULL)
        return;
    lru_unlink(fl, e);
    hash_remove(fl, e);
    free(e);
    fl->used--;
    fl->stats.evictions++;
}

static void
fresh_buckets(struct us_flood *fl, struct flood_entry *e, int64_t now_ms)
{
    e->reg_tokens = fl->opts.burst;
    e->req_tokens = fl->opts.burst;
    e->refill_ms = now_ms;
}

/* The entry of <src>, created (evicting the oldest if full) when absent; moved to the LRU head. */
static struct flood_entry *
entry_get(struct us_flood *fl, const struct tp_addr *src, int64_t now_ms)
{
    uint8_t a[16], family;
    struct flood_entry *e;
    size_t b;

    if (addr_key(src, a, &family) != 0)
        return NULL;
    b = key_hash(a, family) & (fl->nbuckets - 1);
    for (e = fl->buckets[b]; e; e = e->hnext) {
        if (e->family == family && memcmp(e->addr, a, 16) == 0) {
            lru_unlink(fl, e);
            lru_push_head(fl, e);
            return e;
        }
    }
    while (fl->used >= fl->opts.max_addresses)
        evict_one(fl);
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    memcpy(e->addr, a, 16);
    e->family = family;
    fresh_buckets(fl, e, now_ms);
    e->hnext = fl->buckets[b];
    fl->buckets[b] = e;
    lru_push_head(fl, e);
    fl->used++;
    return e;
}

/* ------------------------------------------------------------------ public */

static int
apply_settings(struct cfg *cfg, void *arg, struct cfg_error *err)
{
    struct us_flood *fl = arg;
    struct us_flood_opts o;

    (void)cfg;
    o.register_rate = (unsigned)flood_set.register_rate;
    o.request_rate = (unsigned)flood_set.request_rate;
    o.burst = (unsigned)flood_set.burst;
    o.ban_failures = (unsigned)flood_set.ban_failures;
    o.ban_time_s = (unsigned)((flood_set.ban_time_ms + 999) / 1000);
    o.max_addresses = (unsigned)flood_set.max_addresses;
    if (us_flood_set_opts(fl, &o) != 0) {
        cfg_error_set(err, "flood protection: out of memory for %u addresses", o.max_addresses);
        return -1;
    }
    return 0;
}

struct us_flood *
us_flood_new(struct cfg *cfg)
{
    struct us_flood *fl = calloc(1, sizeof *fl);
    struct us_flood_opts off = {0, 0, 1, 1, 0, 1024};

    if (fl == NULL)
        return NULL;
    if (us_flood_set_opts(fl, &off) != 0)
        goto fail;
    if (cfg) {
        if (cfg_register(cfg, "flood", flood_rows, sizeof flood_rows / sizeof flood_rows[0], &flood_set) != 0)
            goto fail;
        if (cfg_add_check(cfg, apply_settings, fl) != 0)
            goto fail;
    }
    return fl;
fail:
    us_flood_free(fl);
    return NULL;
}

void
us_flood_free(struct us_flood *fl)
{
    if (fl == NULL)
        return;
    while (fl->lru_tail)
        evict_one(fl);
    free(fl->buckets);
    free(fl);
}

int
us_flood_set_opts(struct us_flood *fl, const struct us_flood_opts *opts)
{
    size_t want = 64;

    if (opts->burst == 0 || opts->ban_failures == 0 || opts->max_addresses == 0)
        return -1;
    while (want < opts->max_addresses && want < ((size_t)1 << 24))
        want <<= 1;
    if (want != fl->nbuckets) {
        /* Rehash into a table sized for the new maximum (one bucket per address at most). */
        struct flood_entry **nb = calloc(want, sizeof *nb);
        if (nb == NULL)
            return -1;
        for (struct flood_entry *e = fl->lru_head; e; e = e->lru_next) {
            size_t b = key_hash(e->addr, e->family) & (want - 1);
            e->hnext = nb[b];
            nb[b] = e;
        }
        free(fl->buckets);
        fl->buckets = nb;
        fl->nbuckets = want;
    }
    fl->opts = *opts;
    while (fl->used > fl->opts.max_addresses)
        evict_one(fl);
    /* A smaller burst caps the tokens already held. */
    for (struct flood_entry *e = fl->lru_head; e; e = e->lru_next) {
        if (e->reg_tokens > opts->burst)
            e->reg_tokens = opts->burst;
        if (e->req_tokens > opts->burst)
            e->req_tokens = opts->burst;
    }
    return 0;
}

static double
m_addresses(void *arg)
{
    return (double)((struct us_flood *)arg)->used;
}

static double
m_evictions(void *arg)
{
    return (double)((struct us_flood *)arg)->stats.evictions;
}

int
us_flood_add_metrics(struct us_flood *fl, struct metrics *m)
{
    static const char *const reasons[4] = {NULL, "register_rate", "request_rate", "banned"};
    const char *help = "requests refused by flood protection (503), by reason";

    if (m == NULL)
        return 0;
    for (int i = 1; i < 4; i++) {
        fl->m_rejected[i] = metrics_counter_labels(m, "parley_flood_rejections_total", help, "reason", reasons[i]);
        if (fl->m_rejected[i] == NULL)
            return -1;
    }
    fl->m_bans = metrics_counter(m, "parley_flood_bans_total", "source addresses banned after failed authentications");
    if (fl->m_bans == NULL ||
        metrics_gauge_fn(m, "parley_flood_addresses", "source addresses tracked by flood protection", m_addresses,
                         fl) == NULL ||
        metrics_counter_fn(m, "parley_flood_evictions_total", "addresses forgotten because the table was full",
                           m_evictions, fl) == NULL)
        return -1;
    return 0;
}

/* Seconds until <tokens> reaches 1 at <rate> per second, at least 1. */
static unsigned
retry_after(double tokens, unsigned rate)
{
    double s = (1.0 - tokens) / (double)rate;
    unsigned r = (unsigned)s;

    if ((double)r < s)
        r++;
    return r ? r : 1;
}

enum us_flood_verdict
us_flood_admit(struct us_flood *fl, const struct tp_addr *src, bool is_register, int64_t now_ms,
               unsigned *retry_s)
{
    const struct us_flood_opts *o = &fl->opts;
    struct flood_entry *e;
    enum us_flood_verdict v = US_FLOOD_PASS;
    unsigned retry = 1;

    if (o->register_rate == 0 && o->request_rate == 0 && o->ban_time_s == 0)
        return US_FLOOD_PASS;   /* all off: nothing tracked */
    e = entry_get(fl, src, now_ms);
    if (e == NULL)
        return US_FLOOD_PASS;   /* out of memory or not an IP address: fail open */
    if (e->banned_until_ms) {
        if (now_ms < e->banned_until_ms && o->ban_time_s) {
            v = US_FLOOD_BANNED;
            retry = (unsigned)((e->banned_until_ms - now_ms + 999) / 1000);
            goto out;
        }
        e->banned_until_ms = 0;   /* the ban is over */
        e->failures = 0;
    }
    if (now_ms > e->refill_ms) {
        double dt = (double)(now_ms - e->refill_ms) / 1000.0;
        e->reg_tokens += dt * o->register_rate;
        e->req_tokens += dt * o->request_rate;
        if (e->reg_tokens > o->burst)
            e->reg_tokens = o->burst;
        if (e->req_tokens > o->burst)
            e->req_tokens = o->burst;
        e->refill_ms = now_ms;
    }
    /* The specific bucket first, so a REGISTER flood is reported as one. */
    if (is_register && o->register_rate && e->reg_tokens < 1.0) {
        v = US_FLOOD_REGISTER_RATE;
        retry = retry_after(e->reg_tokens, o->register_rate);
        goto out;
    }
    if (o->request_rate && e->req_tokens < 1.0) {
        v = US_FLOOD_REQUEST_RATE;
        retry = retry_after(e->req_tokens, o->request_rate);
        goto out;
    }
    if (o->request_rate)
        e->req_tokens -= 1.0;
    if (is_register && o->register_rate)
        e->reg_tokens -= 1.0;
out:
    if (v != US_FLOOD_PASS) {
        fl->stats.rejected[v]++;
        metrics_counter_inc(fl->m_rejected[v]);
    }
    if (retry_s)
        *retry_s = retry;
    return v;
}

bool
us_flood_check(struct us_flood *fl, struct px_req *req)
{
    struct sip_msg *msg = px_req_msg(req);
    struct sip_msg *resp;
    enum us_flood_verdict v;
    unsigned retry = 1;
    char ra[24];

    if (fl == NULL || msg->method == SIP_ACK || msg->method == SIP_CANCEL || px_req_is_trusted(req))
        return true;
    v = us_flood_admit(fl, px_req_src(req), msg->method == SIP_REGISTER, (int64_t)clock_mono_ms(), &retry);
    if (v == US_FLOOD_PASS)
        return true;
    resp = px_reply_build(req, 503, v == US_FLOOD_BANNED ? "Banned" : "Rate Limited");
    if (resp == NULL) {
        px_reply(req, 503, NULL);
        return false;
    }
    snprintf(ra, sizeof ra, "%u", retry);
    sip_msg_add_header(resp, "Retry-After", ra);
    px_reply_msg(req, resp);
    sip_msg_free(resp);
    return false;
}

void
us_flood_auth_failed_at(struct us_flood *fl, const struct tp_addr *src, int64_t now_ms)
{
    struct flood_entry *e;
    int64_t window = (int64_t)fl->opts.ban_time_s * 1000;

    if (fl->opts.ban_time_s == 0)
        return;
    e = entry_get(fl, src, now_ms);
    if (e == NULL || (e->banned_until_ms && now_ms < e->banned_until_ms))
        return;
    if (e->failures == 0 || now_ms - e->fail_start_ms >= window) {
        e->failures = 0;
        e->fail_start_ms = now_ms;
    }
    if (++e->failures >= fl->opts.ban_failures) {
        char ip[80];
        e->banned_until_ms = now_ms + window;
        fl->stats.bans++;
        metrics_counter_inc(fl->m_bans);
        tp_addr_host(src, ip, sizeof ip);
        log_warn("%s banned for %u s after %u failed authentications", ip, fl->opts.ban_time_s, e->failures);
    }
}

void
us_flood_auth_failed(struct us_flood *fl, const struct tp_addr *src)
{
    if (fl)
        us_flood_auth_failed_at(fl, src, (int64_t)clock_mono_ms());
}

void
us_flood_auth_failed_cb(const struct tp_addr *src, void *arg)
{
    us_flood_auth_failed(arg, src);
}

void
us_flood_stats_get(const struct us_flood *fl, struct us_flood_stats *out)
{
    *out = fl->stats;
    out->addresses = fl->used;
}
