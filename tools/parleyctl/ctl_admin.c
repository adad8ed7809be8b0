/*
 * parleyctl and the servers' admin endpoints (homeserver/us_admin.h): the one HTTP
 * request (libcurl), the URL, and where a user's home server announces its endpoint.
 * Used by registrations (ctl_server.c), contacts and acl (ctl_admin_call below) and
 * app show/reload (ctl_app.c); each words its own errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ctl.h"

struct body {
    char *p;
    size_t n;
    size_t max;
};

static size_t
on_body(char *d, size_t sz, size_t nm, void *arg)
{
    struct body *b = arg;
    size_t n = sz * nm;
    char *np;

    if (b->n + n > b->max)
        return 0;
    np = realloc(b->p, b->n + n + 1);
    if (np == NULL)
        return 0;
    b->p = np;
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

int
ctl_http(const char *url, const char *post, const char *ctype, const char *token, size_t max,
         struct ctl_http_answer *ans, char *err, size_t errlen)
{
    struct body b = {NULL, 0, max};
    struct curl_slist *hdrs = NULL;
    char *auth = NULL, *ct = NULL;
    CURL *c;
    CURLcode cr;
    int rc = CTL_HTTP_SETUP;

    memset(ans, 0, sizeof *ans);
    err[0] = '\0';
    if ((c = curl_easy_init()) == NULL) {
        snprintf(err, errlen, "curl_easy_init failed");
        return CTL_HTTP_SETUP;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (token && *token) {
        size_t n = strlen(token) + 32;

        if ((auth = malloc(n)) == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        snprintf(auth, n, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (post) {
        if (ctype) {
            size_t n = strlen(ctype) + 16;

            if ((ct = malloc(n)) == NULL) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            snprintf(ct, n, "Content-Type: %s", ctype);
            hdrs = curl_slist_append(hdrs, ct);
        }
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);   /* a POST, even of "" */
    }
    if (hdrs)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    cr = curl_easy_perform(c);
    if (cr != CURLE_OK) {
        snprintf(err, errlen, "%s", curl_easy_strerror(cr));
        rc = CTL_HTTP_UNREACHABLE;
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &ans->status);
    ans->json = json_loadb(b.p ? b.p : "", b.n, 0, NULL);
    ans->body = b.p;
    ans->len = b.n;
    b.p = NULL;
    rc = CTL_HTTP_OK;
out:
    curl_slist_free_all(hdrs);
    free(auth);
    free(ct);
    free(b.p);
    curl_easy_cleanup(c);
    return rc;
}

void
ctl_http_answer_free(struct ctl_http_answer *ans)
{
    json_decref(ans->json);
    free(ans->body);
    memset(ans, 0, sizeof *ans);
}

char *
ctl_admin_url(const char *admin, const char *path, const char *qname, const char *qval)
{
    size_t alen = strlen(admin);
    const char *sep = alen > 0 && admin[alen - 1] == '/' ? "" : "/";
    char *q = NULL, *url;
    size_t n;

    if (qname && (q = curl_easy_escape(NULL, qval, 0)) == NULL)
        return NULL;
    n = alen + strlen(path) + (q ? strlen(qname) + strlen(q) : 0) + 4;
    if ((url = malloc(n)) != NULL)
        snprintf(url, n, "%s%s%s%s%s%s%s", admin, sep, path, q ? "?" : "", q ? qname : "", q ? "=" : "",
                 q ? q : "");
    curl_free(q);
    return url;
}

int
ctl_record_field(struct ctl *ctl, const char *key, const char *field, const char *what, char **out)
{
    char *val = NULL;
    json_t *rec;
    const char *s;
    int r = ctl_etcd_get(&ctl->etcd, key, &val, NULL);

    *out = NULL;
    if (r < 0)
        return ctl_fail(CTL_RUNTIME, "%s", ctl->etcd.err);
    if (r == 1)
        return ctl_fail(CTL_RUNTIME, "no such %s", what);
    rec = json_loads(val, 0, NULL);
    free(val);
    s = json_string_value(json_object_get(rec, field));
    if (s == NULL || *s == '\0') {
        json_decref(rec);
        return ctl_fail(CTL_RUNTIME, "%s has no \"%s\"", what, field);
    }
    *out = strdup(s);
    json_decref(rec);
    return *out ? CTL_OK : ctl_fail(CTL_RUNTIME, "out of memory");
}

int
ctl_user_admin(struct ctl *ctl, const char *user, const char *what, char **home, char **admin)
{
    char key[300], swhat[512];
    int rc;

    *home = *admin = NULL;
    if ((rc = ctl_open(ctl)) != CTL_OK)
        return rc;
    snprintf(key, sizeof(key), "%s%s", CTL_USERS_PREFIX, user);
    if ((rc = ctl_record_field(ctl, key, "home", what, home)) != CTL_OK)
        return rc;
    if (!ctl_valid_name(*home)) {
        rc = ctl_fail(CTL_RUNTIME, "user %s has an invalid home '%s'", user, *home);
        free(*home);
        *home = NULL;
        return rc;
    }
    snprintf(key, sizeof(key), "%s%s", CTL_SERVERS_PREFIX, *home);
    snprintf(swhat, sizeof(swhat), "server '%s' (home of %s) in the directory", *home, user);
    if ((rc = ctl_record_field(ctl, key, "admin", swhat, admin)) != CTL_OK) {
        free(*home);
        *home = NULL;
    }
    return rc;
}

int
ctl_admin_call(struct ctl *ctl, const char *user, const char *token, const char *method,
               const char *path, const json_t *body, json_t **out)
{
    char what[512], err[256];
    char *home = NULL, *admin = NULL, *url = NULL, *text = NULL;
    struct ctl_http_answer ans = {0};
    const char *msg;
    int rc;

    *out = NULL;
    snprintf(what, sizeof(what), "user %s", user);
    if ((rc = ctl_user_admin(ctl, user, what, &home, &admin)) != CTL_OK)
        return rc;
    rc = CTL_RUNTIME;
    if ((url = ctl_admin_url(admin, path[0] == '/' ? path + 1 : path, "user", user)) == NULL) {
        ctl_fail(CTL_RUNTIME, "out of memory");
        goto out;
    }
    if (strcmp(method, "POST") == 0 && (text = json_dumps(body, JSON_COMPACT)) == NULL) {
        ctl_fail(CTL_RUNTIME, "out of memory");
        goto out;
    }
    switch (ctl_http(url, text, text ? "application/json" : NULL, token, CTL_ADMIN_BODY_MAX, &ans, err,
                     sizeof err)) {
    case CTL_HTTP_OK:
        break;
    case CTL_HTTP_UNREACHABLE:
        ctl_fail(CTL_RUNTIME, "cannot reach the admin endpoint of home server %s (%s): %s", home, admin, err);
        goto out;
    default:
        ctl_fail(CTL_RUNTIME, "%s", err);
        goto out;
    }
    if (ans.status != 200) {
        msg = json_string_value(json_object_get(ans.json, "error"));
        if (ans.status == 401)
            ctl_fail(CTL_RUNTIME, "the admin endpoint of home server %s wants a token "
                     "(--admin-token or PARLEY_ADMIN_TOKEN)%s", home, token && *token ? ": refused" : "");
        else if (msg)
            rc = ctl_fail(ans.status == 400 ? CTL_USAGE : CTL_RUNTIME, "%s", msg);
        else
            ctl_fail(CTL_RUNTIME, "%s answered HTTP %ld%s%.200s", url, ans.status, ans.len ? ": " : "",
                     ans.len ? ans.body : "");
        goto out;
    }
    if (!json_is_object(ans.json)) {
        ctl_fail(CTL_RUNTIME, "%s did not answer a JSON object", url);
        goto out;
    }
    *out = ans.json;
    ans.json = NULL;
    rc = CTL_OK;
out:
    ctl_http_answer_free(&ans);
    free(text);
    free(url);
    free(home);
    free(admin);
    return rc;
}
