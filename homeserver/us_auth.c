#define LOG_MODULE "auth"
#include "us_auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_digest.h"
#include "auth/auth_nonce.h"
#include "auth/auth_parse.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/metrics.h"

/* Replay table size: nonces active within one lifetime (docs/internals/auth.md). */
#define NC_TABLE_CAPACITY 65536
/* Failure table: user+source slots (hashed; a collision only resets a counter). */
#define FAIL_SLOTS 4096

enum challenge_reason {
    CH_NO_CREDENTIALS = 0,
    CH_STALE,
    CH_BAD_NONCE,
    CH_REPLAY,
    CH_WRONG_PASSWORD,
    CH_ALGORITHM,
    CH_COUNT,
};
static const char *const challenge_names[CH_COUNT] = {
    "no_credentials", "stale_nonce", "bad_nonce", "replay", "wrong_password", "algorithm",
};

enum failure_reason {
    FAIL_UNKNOWN_USER = 0,
    FAIL_DISABLED,
    FAIL_TOO_MANY,
    FAIL_IDENTITY,
    FAIL_URI_MISMATCH,
    FAIL_BAD_CREDENTIALS,
    FAIL_COUNT,
};
static const char *const failure_names[FAIL_COUNT] = {
    "unknown_user", "disabled", "too_many_failures", "identity_mismatch", "uri_mismatch",
    "bad_credentials",
};

/* Consecutive wrong responses of one user from one source address. */
struct fail_slot {
    uint64_t key;        /* hash of "user@realm" + source IP; 0 = empty */
    uint32_t count;
    int64_t first_s;     /* start of the window */
};

struct us_auth {
    struct us_auth_opts opts;
    char *realm;
    struct dir *dir;
    struct auth_secret secret;
    struct auth_nc_table *nc;
    struct fail_slot *fails;
    char identity[AUTH_FIELD_MAX * 2 + 2];
    struct us_auth_stats stats;
    struct metric *m_ok;
    struct metric *m_challenge[CH_COUNT];
    struct metric *m_failure[FAIL_COUNT];
};

int
us_auth_mode_parse(const char *s, enum us_auth_mode *out)
{
    if (s == NULL)
        return -1;
    if (strcasecmp(s, "off") == 0)
        *out = US_AUTH_OFF;
    else if (strcasecmp(s, "register") == 0)
        *out = US_AUTH_REGISTER;
    else if (strcasecmp(s, "all") == 0)
        *out = US_AUTH_ALL;
    else
        return -1;
    return 0;
}

struct us_auth *
us_auth_new(const struct us_auth_opts *opts, struct metrics *m)
{
    struct us_auth *ua = calloc(1, sizeof *ua);

    if (ua == NULL)
        return NULL;
    ua->opts = *opts;
    if (ua->opts.nonce_lifetime_s == 0)
        ua->opts.nonce_lifetime_s = 300;
    if (ua->opts.max_failures == 0)
        ua->opts.max_failures = 3;
    if (ua->opts.failure_window_s == 0)
        ua->opts.failure_window_s = 60;
    ua->dir = opts->dir;
    ua->realm = strdup(opts->realm ? opts->realm : "");
    ua->opts.realm = ua->realm;
    ua->opts.server_name = NULL;   /* bound into the secret below */
    ua->nc = auth_nc_table_new(NC_TABLE_CAPACITY, ua->opts.nonce_lifetime_s);
    ua->fails = calloc(FAIL_SLOTS, sizeof *ua->fails);
    if (ua->realm == NULL || ua->nc == NULL || ua->fails == NULL ||
        auth_secret_generate(&ua->secret, opts->server_name ? opts->server_name : "") != 0) {
        us_auth_free(ua);
        return NULL;
    }
    if (m) {
        ua->m_ok = metrics_counter(m, "parley_auth_success_total", "requests authenticated");
        for (int i = 0; i < CH_COUNT; i++)
            ua->m_challenge[i] = metrics_counter_labels(m, "parley_auth_challenges_total",
                                                        "401/407 challenges sent, by reason", "reason",
                                                        challenge_names[i]);
        for (int i = 0; i < FAIL_COUNT; i++)
            ua->m_failure[i] = metrics_counter_labels(m, "parley_auth_failures_total",
                                                      "requests refused by authentication, by reason",
                                                      "reason", failure_names[i]);
    }
    return ua;
}

void
us_auth_free(struct us_auth *ua)
{
    if (ua == NULL)
        return;
    auth_secret_wipe(&ua->secret);
    auth_nc_table_free(ua->nc);
    free(ua->fails);
    free(ua->realm);
    free(ua);
}

void
us_auth_stats_get(const struct us_auth *ua, struct us_auth_stats *out)
{
    *out = ua->stats;
}

/* ------------------------------------------------------------------ helpers */

static struct fail_slot *
fail_slot(struct us_auth *ua, const char *aor, const struct tp_addr *src, uint64_t *key)
{
    char ip[80];
    uint64_t h;

    tp_addr_str(src, ip, sizeof ip);
    /* the source address without the port: a client may change ports between tries */
    {
        char *colon = strrchr(ip, ':');
        if (colon && strchr(ip, ':') == colon)
            *colon = '\0';
    }
    h = hash_fnv1a64_str_lower(HASH_FNV64_SEED, aor);
    h = hash_fnv1a64_step(h, '|');
    h = hash_fnv1a64_str_lower(h, ip);
    if (h == 0)
        h = 1;
    *key = h;
    return &ua->fails[h % FAIL_SLOTS];
}

/* True while <aor> from <src> is locked out (max_failures reached within the window). */
static bool
is_locked(struct us_auth *ua, const char *aor, const struct tp_addr *src, int64_t now)
{
    uint64_t key;
    struct fail_slot *s = fail_slot(ua, aor, src, &key);

    if (s->key != key || now - s->first_s >= (int64_t)ua->opts.failure_window_s)
        return false;
    return s->count >= ua->opts.max_failures;
}

/* Counts a wrong response; returns the number of consecutive failures in the window. */
static uint32_t
note_failure(struct us_auth *ua, const char *aor, const struct tp_addr *src, int64_t now)
{
    uint64_t key;
    struct fail_slot *s = fail_slot(ua, aor, src, &key);

    if (s->key != key || now - s->first_s >= (int64_t)ua->opts.failure_window_s) {
        s->key = key;
        s->count = 0;
        s->first_s = now;
    }
    return ++s->count;
}

static void
clear_failures(struct us_auth *ua, const char *aor, const struct tp_addr *src)
{
    uint64_t key;
    struct fail_slot *s = fail_slot(ua, aor, src, &key);

    if (s->key == key)
        memset(s, 0, sizeof *s);
}

static void
refuse(struct us_auth *ua, struct px_req *req, int code, const char *reason, enum failure_reason why)
{
    ua->stats.failures++;
    metrics_counter_inc(ua->m_failure[why]);
    px_reply(req, code, reason);
}

/*
 * 401 (REGISTER) or 407 with a SHA-256 and an MD5 challenge, SHA-256 first (RFC 8760 §2.4),
 * each with a fresh nonce. <md5_only> when the user has no SHA-256 hash.
 */
static void
challenge(struct us_auth *ua, struct px_req *req, bool proxy, bool stale, bool md5_only,
          enum challenge_reason why)
{
    const char *hname = proxy ? "Proxy-Authenticate" : "WWW-Authenticate";
    uint64_t now = (uint64_t)clock_wall_s();
    char nonce[AUTH_NONCE_SIZE], value[512], extra[2 * 600];
    size_t off = 0;
    enum auth_algorithm algs[2];
    int nalg = 0;

    if (ua->opts.offer_sha256 && !md5_only)
        algs[nalg++] = AUTH_ALG_SHA256;
    algs[nalg++] = AUTH_ALG_MD5;
    extra[0] = '\0';
    for (int i = 0; i < nalg; i++) {
        int n;
        if (auth_nonce_make(&ua->secret, now, nonce, sizeof nonce) != 0 ||
            auth_build_challenge(ua->realm, nonce, algs[i], stale, NULL, value, sizeof value) != 0 ||
            (n = snprintf(extra + off, sizeof extra - off, "%s: %s\r\n", hname, value)) < 0 ||
            (size_t)n >= sizeof extra - off) {
            px_reply(req, 500, "Cannot Build Challenge");
            return;
        }
        off += (size_t)n;
    }
    ua->stats.challenges++;
    metrics_counter_inc(ua->m_challenge[why]);
    /* A challenge is answered as a stateless UAS (RFC 3261 §8.2.7): a retransmitted
     * request simply gets a fresh challenge, and no transaction is held for Timer J.
     * INVITE keeps its transaction so that the ACK for the 407 finds it. */
    px_reply_stateless(req, proxy ? 407 : 401, NULL, extra);
}

/*
 * The credentials of <req> for our realm (the Authorization or Proxy-Authorization
 * header whose realm is ours; RFC 3261 §22.4 allows one per realm). Returns 1 when
 * found, 0 when absent, -1 when a header for our realm (or with no readable realm) does
 * not parse.
 */
static int
find_credentials(struct us_auth *ua, const struct sip_msg *msg, bool proxy, struct auth_credentials *c)
{
    const osip_list_t *l = proxy ? &msg->osip->proxy_authorizations : &msg->osip->authorizations;
    int bad = 0;

    for (int i = 0; i < osip_list_size(l); i++) {
        osip_authorization_t *a = osip_list_get(l, i);
        char *s = NULL;
        int rc;

        /* RFC 4475 §3.3.7 (regaut01): credentials in a scheme other than Digest answer no
         * challenge of ours; they are skipped as if absent (401/407), not a 400. */
        if (a == NULL || a->auth_type == NULL || strcasecmp(a->auth_type, "Digest") != 0)
            continue;
        if (osip_authorization_to_str(a, &s) != 0 || s == NULL)
            continue;
        rc = auth_parse_credentials(s, strlen(s), c);
        osip_free(s);
        if (rc != 0) {
            log_debug("unusable credentials: %s", c->err ? c->err : "?");
            bad = 1;
            continue;
        }
        if (strcasecmp(c->realm, ua->realm) == 0)
            return 1;
    }
    return bad ? -1 : 0;
}

static bool
str_eq_ci(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcasecmp(a, b) == 0;
}

/*
 * RFC 2617 §3.2.2.5: the digest "uri" names the same resource as the Request-URI.
 * Departure: a uri naming this server itself (no user part, one of our addresses) is
 * accepted too, since some clients (sipp 3.6, UAs behind an outbound proxy setting)
 * digest the address they sent to. The response stays bound to this server, and the
 * nonce (ours, signed) and nc table still stop replays.
 */
static bool
uri_matches(struct us_auth *ua, const struct sip_msg *msg, const char *duri)
{
    osip_uri_t *ru = sip_msg_ruri(msg);
    osip_uri_t *du = NULL;
    char *rs;
    bool eq = false;

    if (ru == NULL)
        return false;
    rs = sip_uri_str(ru);
    if (rs && strcasecmp(rs, duri) == 0)
        eq = true;
    free(rs);
    if (eq)
        return true;
    /* Not byte-equal: compare scheme, user, host and port (clients re-serialize). */
    if (osip_uri_init(&du) != 0)
        return false;
    if (osip_uri_parse(du, duri) == 0)
        eq = str_eq_ci(du->scheme, ru->scheme) && str_eq_ci(du->host, ru->host) &&
             ((du->username == NULL && ru->username == NULL) ||
              (du->username && ru->username && strcmp(du->username, ru->username) == 0)) &&
             sip_uri_port(du, 5060) == sip_uri_port(ru, 5060);
    if (!eq && ua->opts.px && du->username == NULL && du->host)
        eq = px_is_us(ua->opts.px, du->host, sip_uri_port(du, 5060));
    osip_uri_free(du);
    return eq;
}

/* Is the user@host of <u> equal to <aor> (lowercase)? */
static bool
uri_is_aor(const osip_uri_t *u, const char *aor)
{
    char buf[512];

    return u && sip_uri_aor(u, buf, sizeof buf) && strcmp(buf, aor) == 0;
}

static bool
host_is_realm(struct us_auth *ua, const osip_uri_t *u)
{
    return u && u->host && strcasecmp(u->host, ua->realm) == 0;
}

/* ------------------------------------------------------------------ the stage */

bool
us_auth_stage(struct us_auth *ua, struct px_req *req, const char **identity)
{
    struct sip_msg *msg = px_req_msg(req);
    bool is_reg = msg->method == SIP_REGISTER;
    bool proxy = !is_reg;
    struct auth_credentials c;
    struct auth_verify_params vp;
    const struct dir_user *u;
    const char *ha1, *why = NULL;
    int64_t now = clock_wall_s();
    osip_uri_t *from = msg->osip->from ? msg->osip->from->url : NULL;
    osip_uri_t *to = msg->osip->to ? msg->osip->to->url : NULL;
    enum auth_verdict v;
    char aor[AUTH_FIELD_MAX * 2 + 2];
    int rc;

    ua->identity[0] = '\0';
    if (identity)
        *identity = ua->identity;
    if (ua->opts.mode == US_AUTH_OFF || msg->method == SIP_ACK || msg->method == SIP_CANCEL)
        return true;
    if (ua->opts.mode == US_AUTH_REGISTER && !is_reg)
        return true;
    if (px_req_is_trusted(req) && !ua->opts.check_trusted)
        return true;
    /* Only requests to or from our domain: the rest is for the protocol stack. */
    if (!is_reg && !host_is_realm(ua, from) && !host_is_realm(ua, to) &&
        !host_is_realm(ua, sip_msg_ruri(msg)))
        return true;

    rc = find_credentials(ua, msg, proxy, &c);
    if (rc < 0) {
        refuse(ua, req, 400, "Malformed Credentials", FAIL_BAD_CREDENTIALS);
        return false;
    }
    if (rc == 0) {
        challenge(ua, req, proxy, false, false, CH_NO_CREDENTIALS);
        return false;
    }
    /* The digest username is the user part, the realm our domain (docs/internals/auth.md). */
    snprintf(aor, sizeof aor, "%s@%s", c.username, c.realm);
    for (char *p = aor; *p; p++)
        *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    u = dir_user_get(ua->dir, aor);
    if (u == NULL) {
        if (ua->opts.on_failure)
            ua->opts.on_failure(px_req_src(req), ua->opts.on_failure_arg);
        if (is_reg)
            refuse(ua, req, 404, "Unknown User", FAIL_UNKNOWN_USER);
        else
            refuse(ua, req, 403, "Unknown User", FAIL_UNKNOWN_USER);
        return false;
    }
    if (!u->enabled) {
        refuse(ua, req, 403, "User Disabled", FAIL_DISABLED);
        return false;
    }
    if (is_locked(ua, aor, px_req_src(req), now)) {
        refuse(ua, req, 403, "Too Many Failed Attempts", FAIL_TOO_MANY);
        return false;
    }
    if (!uri_matches(ua, msg, c.uri)) {
        refuse(ua, req, 400, "Digest URI Mismatch", FAIL_URI_MISMATCH);
        return false;
    }
    ha1 = c.algorithm == AUTH_ALG_SHA256 ? u->ha1_sha256 : u->ha1_md5;
    if (ha1 == NULL) {
        /* No SHA-256 hash stored for this user: offer MD5 only. */
        challenge(ua, req, proxy, false, true, CH_ALGORITHM);
        return false;
    }
    memset(&vp, 0, sizeof vp);
    vp.realm = ua->realm;
    vp.secret = &ua->secret;
    vp.now_s = (uint64_t)now;
    vp.nonce_lifetime_s = ua->opts.nonce_lifetime_s;
    vp.nc_table = ua->nc;
    vp.allow_no_qop = false;
    v = auth_verify(&c, sip_msg_method_str(msg), ha1, &vp, &why);
    switch (v) {
    case AUTH_OK:
        break;
    case AUTH_STALE:
        challenge(ua, req, proxy, true, u->ha1_sha256 == NULL, CH_STALE);
        return false;
    case AUTH_BAD_NONCE:
        challenge(ua, req, proxy, false, u->ha1_sha256 == NULL, CH_BAD_NONCE);
        return false;
    case AUTH_REPLAY:
        challenge(ua, req, proxy, false, u->ha1_sha256 == NULL, CH_REPLAY);
        return false;
    case AUTH_WRONG_RESPONSE:
        if (ua->opts.on_failure)
            ua->opts.on_failure(px_req_src(req), ua->opts.on_failure_arg);
        if (note_failure(ua, aor, px_req_src(req), now) >= ua->opts.max_failures) {
            log_info("%s: %u wrong responses in a row, refusing for %u s", aor, ua->opts.max_failures,
                     ua->opts.failure_window_s);
            refuse(ua, req, 403, "Too Many Failed Attempts", FAIL_TOO_MANY);
        } else {
            challenge(ua, req, proxy, false, u->ha1_sha256 == NULL, CH_WRONG_PASSWORD);
        }
        return false;
    case AUTH_INVALID:
    default:
        log_debug("%s: invalid credentials: %s", aor, why ? why : "?");
        refuse(ua, req, 400, "Invalid Credentials", FAIL_BAD_CREDENTIALS);
        return false;
    }
    clear_failures(ua, aor, px_req_src(req));
    /* The authenticated user must be the one the request speaks for (RFC 3261 §22.2). */
    if (!uri_is_aor(is_reg ? to : from, aor)) {
        refuse(ua, req, 403, is_reg ? "To Is Not The Authenticated User" : "From Is Not The Authenticated User",
               FAIL_IDENTITY);
        return false;
    }
    ua->stats.ok++;
    metrics_counter_inc(ua->m_ok);
    snprintf(ua->identity, sizeof ua->identity, "%s", aor);
    return true;
}
