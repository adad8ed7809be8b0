/*
 * ctl_etcd: blocking etcd v3 JSON-gateway client for parleyctl.
 * Request bodies follow dependencies.md §3.2 exactly.
 */
#include "ctl_etcd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define RESP_MAX (256u * 1024 * 1024)   /* a range page never comes close */

static void
seterr(struct ctl_etcd *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
seterr(struct ctl_etcd *e, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e->err, sizeof(e->err), fmt, ap);
    va_end(ap);
}

int
ctl_etcd_init(struct ctl_etcd *e, const char *urls)
{
    const char *p = urls;

    memset(e, 0, sizeof(*e));
    if (urls == NULL || *urls == '\0') {
        seterr(e, "empty etcd endpoint list");
        return -1;
    }
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char *u;

        while (n > 0 && (*p == ' ')) {
            p++;
            n--;
        }
        while (n > 0 && (p[n - 1] == '/' || p[n - 1] == ' '))
            n--;
        if (n == 0 || (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0)) {
            seterr(e, "bad etcd endpoint '%.*s' (want http://host:port)", (int)(comma ? comma - p : (long)strlen(p)), p);
            ctl_etcd_cleanup(e);
            return -1;
        }
        if (e->n_urls == CTL_ETCD_MAX_URLS) {
            seterr(e, "too many etcd endpoints (max %d)", CTL_ETCD_MAX_URLS);
            ctl_etcd_cleanup(e);
            return -1;
        }
        u = strndup(p, n);
        if (u == NULL) {
            seterr(e, "out of memory");
            ctl_etcd_cleanup(e);
            return -1;
        }
        e->urls[e->n_urls++] = u;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (e->n_urls == 0) {
        seterr(e, "empty etcd endpoint list");
        return -1;
    }
    e->curl = curl_easy_init();
    if (e->curl == NULL) {
        seterr(e, "curl_easy_init failed");
        ctl_etcd_cleanup(e);
        return -1;
    }
    return 0;
}

void
ctl_etcd_cleanup(struct ctl_etcd *e)
{
    for (size_t i = 0; i < e->n_urls; i++)
        free(e->urls[i]);
    e->n_urls = 0;
    if (e->curl != NULL)
        curl_easy_cleanup(e->curl);
    e->curl = NULL;
    free(e->resp);
    e->resp = NULL;
    e->resp_len = e->resp_cap = 0;
}

static size_t
on_body(char *d, size_t sz, size_t nm, void *arg)
{
    struct ctl_etcd *e = arg;
    size_t n = sz * nm;

    if (e->resp_len + n + 1 > e->resp_cap) {
        size_t cap = e->resp_cap ? e->resp_cap : 16384;
        char *np;

        while (cap < e->resp_len + n + 1)
            cap *= 2;
        if (cap > RESP_MAX)
            return 0;                  /* aborts the transfer */
        np = realloc(e->resp, cap);
        if (np == NULL)
            return 0;
        e->resp = np;
        e->resp_cap = cap;
    }
    memcpy(e->resp + e->resp_len, d, n);
    e->resp_len += n;
    e->resp[e->resp_len] = '\0';
    return n;
}

/* Errors where the request surely did not reach etcd, so another endpoint may take it. */
static int
is_connect_failure(CURL *c, CURLcode rc)
{
    curl_off_t connect_us = 0;

    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
        return 1;
    if (rc == CURLE_OPERATION_TIMEDOUT &&
        curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &connect_us) == CURLE_OK && connect_us == 0)
        return 1;
    return 0;
}

json_t *
ctl_etcd_call(struct ctl_etcd *e, const char *path, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    struct curl_slist *hdrs = NULL;
    json_t *ans = NULL;
    char url[1024];
    CURLcode rc = CURLE_OK;
    long status = 0;
    size_t tried;

    if (text == NULL) {
        seterr(e, "out of memory");
        return NULL;
    }
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    for (tried = 0; tried < e->n_urls; tried++) {
        size_t i = (e->cur + tried) % e->n_urls;

        snprintf(url, sizeof(url), "%s%s", e->urls[i], path);
        e->resp_len = 0;
        curl_easy_reset(e->curl);
        curl_easy_setopt(e->curl, CURLOPT_URL, url);
        curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(e->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(text));
        curl_easy_setopt(e->curl, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, e);
        curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
        curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
        rc = curl_easy_perform(e->curl);
        if (rc == CURLE_OK) {
            e->cur = i;
            break;
        }
        if (!is_connect_failure(e->curl, rc)) {
            seterr(e, "etcd request to %s failed: %s", url, curl_easy_strerror(rc));
            goto out;
        }
    }
    if (rc != CURLE_OK) {
        char list[512] = "";
        size_t pos = 0;

        for (size_t i = 0; i < e->n_urls && pos < sizeof(list); i++)
            pos += (size_t)snprintf(list + pos, sizeof(list) - pos, "%s%s", i ? "," : "",
                                    e->urls[i]);
        seterr(e, "cannot reach etcd at %s: %s", list, curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &status);
    ans = json_loadb(e->resp ? e->resp : "", e->resp_len, 0, NULL);
    if (status != 200) {
        const char *msg = ans ? json_string_value(json_object_get(ans, "message")) : NULL;

        if (msg == NULL && ans != NULL)
            msg = json_string_value(json_object_get(ans, "error"));
        seterr(e, "etcd %s: HTTP %ld: %s", path, status,
               msg ? msg : (e->resp_len ? e->resp : "(empty answer)"));
        json_decref(ans);
        ans = NULL;
        goto out;
    }
    if (!json_is_object(ans)) {
        seterr(e, "etcd %s: answer is not a JSON object", path);
        json_decref(ans);
        ans = NULL;
    }
out:
    curl_slist_free_all(hdrs);
    free(text);
    return ans;
}

char *
ctl_b64(const void *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);

    if (out == NULL)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

char *
ctl_unb64(const json_t *j, size_t *len)
{
    const char *s = json_string_value(j);
    size_t n, pad = 0;
    char *out;
    int r;

    if (s == NULL) {
        /* etcd omits empty values */
        out = calloc(1, 1);
        if (len)
            *len = 0;
        return j == NULL ? out : (free(out), NULL);
    }
    n = strlen(s);
    if (n % 4 != 0)
        return NULL;
    out = malloc(n / 4 * 3 + 1);
    if (out == NULL)
        return NULL;
    r = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    if (r < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts '=' padding as bytes (dependencies.md §3.4) */
    if (n >= 1 && s[n - 1] == '=')
        pad++;
    if (n >= 2 && s[n - 2] == '=')
        pad++;
    out[r - (int)pad] = '\0';
    if (len)
        *len = (size_t)r - pad;
    return out;
}

int64_t
ctl_json_i64(const json_t *obj, const char *field, int64_t def)
{
    json_t *v = json_object_get(obj, field);

    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return def;
}

/* json_pack with base64-encoded key (and value). Returns NULL on OOM. */
static json_t *
kv_obj(const char *key, size_t klen, const char *val)
{
    char *k = ctl_b64(key, klen);
    char *v = val ? ctl_b64(val, strlen(val)) : NULL;
    json_t *o = NULL;

    if (k == NULL || (val != NULL && v == NULL))
        goto out;
    o = v ? json_pack("{s:s,s:s}", "key", k, "value", v) : json_pack("{s:s}", "key", k);
out:
    free(k);
    free(v);
    return o;
}

int
ctl_etcd_get(struct ctl_etcd *e, const char *key, char **val, int64_t *mod_rev)
{
    json_t *req = kv_obj(key, strlen(key), NULL);
    json_t *ans = NULL, *kv;
    int rc = -1;

    *val = NULL;
    if (req == NULL) {
        seterr(e, "out of memory");
        goto out;
    }
    ans = ctl_etcd_call(e, "/v3/kv/range", req);
    if (ans == NULL)
        goto out;
    kv = json_array_get(json_object_get(ans, "kvs"), 0);
    if (kv == NULL) {
        rc = 1;
        goto out;
    }
    *val = ctl_unb64(json_object_get(kv, "value"), NULL);
    if (*val == NULL) {
        seterr(e, "etcd returned a value that is not base64 for %s", key);
        goto out;
    }
    if (mod_rev)
        *mod_rev = ctl_json_i64(kv, "mod_revision", 0);
    rc = 0;
out:
    json_decref(req);
    json_decref(ans);
    return rc;
}

/* Runs a txn of one compare and one put; returns 0 succeeded, 1 compare failed, -1 error. */
static int
txn_one(struct ctl_etcd *e, json_t *compare, const char *key, const char *val)
{
    json_t *put = kv_obj(key, strlen(key), val);
    json_t *req = NULL, *ans = NULL;
    int rc = -1;

    if (put == NULL || compare == NULL) {
        seterr(e, "out of memory");
        json_decref(compare);
        goto out;
    }
    req = json_pack("{s:[o],s:[{s:O}]}", "compare", compare, "success", "request_put", put);
    if (req == NULL) {
        seterr(e, "out of memory");
        goto out;
    }
    ans = ctl_etcd_call(e, "/v3/kv/txn", req);
    if (ans == NULL)
        goto out;
    /* a failed txn has no "succeeded" key (dependencies.md §3.1) */
    rc = json_is_true(json_object_get(ans, "succeeded")) ? 0 : 1;
out:
    json_decref(put);
    json_decref(req);
    json_decref(ans);
    return rc;
}

int
ctl_etcd_create(struct ctl_etcd *e, const char *key, const char *val)
{
    char *k = ctl_b64(key, strlen(key));
    json_t *cmp;

    if (k == NULL) {
        seterr(e, "out of memory");
        return -1;
    }
    cmp = json_pack("{s:s,s:s,s:s,s:s}", "key", k, "target", "CREATE", "result", "EQUAL",
                    "create_revision", "0");
    free(k);
    return txn_one(e, cmp, key, val);
}

int
ctl_etcd_cas(struct ctl_etcd *e, const char *key, const char *val, int64_t mod_rev)
{
    char *k = ctl_b64(key, strlen(key));
    char rev[32];
    json_t *cmp;

    if (k == NULL) {
        seterr(e, "out of memory");
        return -1;
    }
    snprintf(rev, sizeof(rev), "%lld", (long long)mod_rev);
    cmp = json_pack("{s:s,s:s,s:s,s:s}", "key", k, "target", "MOD", "result", "EQUAL",
                    "mod_revision", rev);
    free(k);
    return txn_one(e, cmp, key, val);
}

int
ctl_etcd_delete(struct ctl_etcd *e, const char *key)
{
    json_t *req = kv_obj(key, strlen(key), NULL);
    json_t *ans = NULL;
    int rc = -1;

    if (req == NULL) {
        seterr(e, "out of memory");
        goto out;
    }
    ans = ctl_etcd_call(e, "/v3/kv/deleterange", req);
    if (ans == NULL)
        goto out;
    rc = ctl_json_i64(ans, "deleted", 0) > 0 ? 0 : 1;
out:
    json_decref(req);
    json_decref(ans);
    return rc;
}

int
ctl_etcd_range_each(struct ctl_etcd *e, const char *prefix, size_t page, ctl_etcd_kv_fn *cb,
                     void *arg)
{
    size_t plen = strlen(prefix);
    char *start = NULL, *end = NULL, *end64 = NULL;
    size_t start_len = plen;
    int rc = -1;

    if (plen == 0) {
        seterr(e, "empty prefix");
        return -1;
    }
    start = malloc(plen + 1);
    end = strdup(prefix);
    if (start == NULL || end == NULL) {
        seterr(e, "out of memory");
        goto out;
    }
    memcpy(start, prefix, plen + 1);
    /* range_end = prefix with its last byte + 1 (dependencies.md §3.1) */
    end[plen - 1] = (char)(end[plen - 1] + 1);
    end64 = ctl_b64(end, plen);
    if (end64 == NULL) {
        seterr(e, "out of memory");
        goto out;
    }
    for (;;) {
        char *k64 = ctl_b64(start, start_len);
        json_t *req, *ans, *kvs, *kv;
        size_t i;
        int more;

        if (k64 == NULL) {
            seterr(e, "out of memory");
            goto out;
        }
        req = json_pack("{s:s,s:s,s:I}", "key", k64, "range_end", end64, "limit",
                        (json_int_t)page);
        free(k64);
        if (req == NULL) {
            seterr(e, "out of memory");
            goto out;
        }
        ans = ctl_etcd_call(e, "/v3/kv/range", req);
        json_decref(req);
        if (ans == NULL)
            goto out;
        kvs = json_object_get(ans, "kvs");
        more = json_is_true(json_object_get(ans, "more"));
        json_array_foreach(kvs, i, kv) {
            size_t klen = 0;
            char *key = ctl_unb64(json_object_get(kv, "key"), &klen);
            char *val = ctl_unb64(json_object_get(kv, "value"), NULL);
            int r = -1;

            if (key == NULL || val == NULL) {
                seterr(e, "etcd returned a key or value that is not base64");
            } else {
                r = cb(arg, key, val, ctl_json_i64(kv, "lease", 0));
                if (i + 1 == json_array_size(kvs)) {
                    /* next page starts right after the last key: key + "\0" */
                    char *ns = realloc(start, klen + 1);

                    if (ns == NULL) {
                        seterr(e, "out of memory");
                        r = -1;
                    } else {
                        start = ns;
                        memcpy(start, key, klen);
                        start[klen] = '\0';
                        start_len = klen + 1;
                    }
                }
            }
            free(key);
            free(val);
            if (r != 0) {
                json_decref(ans);
                goto out;
            }
        }
        if (!more || json_array_size(kvs) == 0) {
            json_decref(ans);
            break;
        }
        json_decref(ans);
    }
    rc = 0;
out:
    free(start);
    free(end);
    free(end64);
    return rc;
}

int64_t
ctl_etcd_lease_ttl(struct ctl_etcd *e, int64_t lease)
{
    char id[32];
    json_t *req, *ans;
    int64_t ttl;

    snprintf(id, sizeof(id), "%lld", (long long)lease);
    req = json_pack("{s:s}", "ID", id);
    if (req == NULL) {
        seterr(e, "out of memory");
        return -2;
    }
    ans = ctl_etcd_call(e, "/v3/lease/timetolive", req);
    json_decref(req);
    if (ans == NULL)
        return -2;
    /* an expired lease answers TTL -1 (or omits it) */
    ttl = ctl_json_i64(ans, "TTL", -1);
    json_decref(ans);
    return ttl;
}
