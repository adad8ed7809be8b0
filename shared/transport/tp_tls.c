/*
 * tp_tls: the OpenSSL half of the TLS transport — context building and reload, the
 * TLS bufferevent of a stream connection, and the peer identity read after the
 * handshake. Everything else about a TLS stream (framing, queues, timers, failure
 * reports) is the shared stream code of tp_tcp.c.
 *
 * Profile (RFC 3261 §26.2.1, RFC 5630 §3.1.3, RFC 9325 §4): TLS 1.2 and 1.3 only,
 * ECDHE with AEAD for 1.2 (1.3 suites are AEAD by definition), no compression, no
 * renegotiation, no session resumption (long-lived SIP connections gain little, and a
 * resumed session would skip the certificate check of a reloaded CA). One SSL_CTX
 * serves both roles: pool servers connect to each other with the same certificate
 * they serve (mutual TLS).
 */
#define LOG_MODULE "tp"
#include "transport/tp_int.h"

#include "util/log.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* TLS 1.2 suites: forward secrecy and AEAD only (RFC 9325 §4.2). */
#define TP_TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
#define TP_TLS_VERIFY_DEPTH 8

static bool
is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Formats "<what>: <reason of the oldest OpenSSL error>" and clears the error queue. */
static void
ssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[256];

    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof reason);
        snprintf(err, errlen, "%s: %s", what, reason);
    } else {
        snprintf(err, errlen, "%s", what);
    }
    ERR_clear_error();
}

/* Builds a context from <o>; NULL with <err> filled on failure. */
static SSL_CTX *
ctx_build(const struct tp_tls_opts *o, char *err, size_t errlen)
{
    char what[512];
    SSL_CTX *ctx;
    const char *key;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        ssl_err(err, errlen, "cannot create TLS context");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        ssl_err(err, errlen, "cannot set minimum TLS version 1.2");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_TICKET);
    if (SSL_CTX_set_cipher_list(ctx, TP_TLS12_CIPHERS) != 1) {
        ssl_err(err, errlen, "cannot set TLS 1.2 cipher list");
        goto fail;
    }
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"parley", 6);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);   /* thousands of idle client conns */

    if (o->cert_file != NULL) {
        key = o->key_file != NULL ? o->key_file : o->cert_file;
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
            snprintf(what, sizeof what, "TLS certificate '%s'", o->cert_file);
            ssl_err(err, errlen, what);
            goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
            snprintf(what, sizeof what, "TLS private key '%s'", key);
            ssl_err(err, errlen, what);
            goto fail;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(what, sizeof what, "TLS private key '%s' does not match certificate '%s'",
                     key, o->cert_file);
            ssl_err(err, errlen, what);
            goto fail;
        }
    } else if (o->key_file != NULL) {
        snprintf(err, errlen, "TLS private key '%s' given without a certificate", o->key_file);
        goto fail;
    }

    if (o->verify_peer) {
        STACK_OF(X509_NAME) *names;
        int mode = SSL_VERIFY_PEER;

        if (o->ca_file == NULL) {
            snprintf(err, errlen, "TLS peer verification needs a CA file");
            goto fail;
        }
        if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
            snprintf(what, sizeof what, "TLS CA file '%s'", o->ca_file);
            ssl_err(err, errlen, what);
            goto fail;
        }
        /* CertificateRequest lists our CAs so a client picks the right certificate */
        names = SSL_load_client_CA_file(o->ca_file);
        if (names == NULL) {
            snprintf(what, sizeof what, "TLS CA file '%s' has no usable CA name", o->ca_file);
            ssl_err(err, errlen, what);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);   /* takes ownership */
        /* Server role: ask for a client certificate; one that is presented must
         * verify, none at all is fine unless required (outside users have none).
         * FAIL_IF_NO_PEER_CERT is ignored in the client role. */
        if (o->require_client_cert)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        SSL_CTX_set_verify_depth(ctx, TP_TLS_VERIFY_DEPTH);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    ERR_clear_error();
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

static void
opts_free(struct tp_tls_opts *o)
{
    free((char *)o->cert_file);
    free((char *)o->key_file);
    free((char *)o->ca_file);
    memset(o, 0, sizeof *o);
}

static int
opts_copy(struct tp_tls_opts *dst, const struct tp_tls_opts *src)
{
    memset(dst, 0, sizeof *dst);
    dst->require_client_cert = src->require_client_cert;
    dst->verify_peer = src->verify_peer;
    if ((src->cert_file != NULL && (dst->cert_file = strdup(src->cert_file)) == NULL) ||
        (src->key_file != NULL && (dst->key_file = strdup(src->key_file)) == NULL) ||
        (src->ca_file != NULL && (dst->ca_file = strdup(src->ca_file)) == NULL)) {
        opts_free(dst);
        return -1;
    }
    return 0;
}

int
tp_tls_configure(struct tp *tp, const struct tp_tls_opts *opts, char *err, size_t errlen)
{
    struct tp_tls_opts copy;
    SSL_CTX *ctx;

    if (err == NULL)
        errlen = 0;
    else if (errlen > 0)
        err[0] = '\0';
    if (tp == NULL || opts == NULL) {
        snprintf(err, errlen, "tp_tls_configure: no transport or no options");
        return -1;
    }
    ctx = ctx_build(opts, err, errlen);
    if (ctx == NULL)
        return -1;
    if (opts_copy(&copy, opts) != 0) {
        snprintf(err, errlen, "tp_tls_configure: out of memory");
        SSL_CTX_free(ctx);
        return -1;
    }
    SSL_CTX_free(tp->tls_ctx);   /* open connections hold their own references */
    tp->tls_ctx = ctx;
    opts_free(&tp->tls_opts);
    tp->tls_opts = copy;
    log_info("TLS configured: certificate %s, CA %s, peer verification %s%s",
             copy.cert_file ? copy.cert_file : "(none)", copy.ca_file ? copy.ca_file : "(none)",
             copy.verify_peer ? "on" : "OFF",
             copy.require_client_cert ? ", client certificate required" : "");
    return 0;
}

int
tp_tls_reload(struct tp *tp, char *err, size_t errlen)
{
    SSL_CTX *ctx;

    if (err == NULL)
        errlen = 0;
    else if (errlen > 0)
        err[0] = '\0';
    if (tp == NULL || tp->tls_ctx == NULL) {
        snprintf(err, errlen, "TLS reload: TLS is not configured");
        return -1;
    }
    ctx = ctx_build(&tp->tls_opts, err, errlen);
    if (ctx == NULL)
        return -1;
    SSL_CTX_free(tp->tls_ctx);
    tp->tls_ctx = ctx;
    log_info("TLS reloaded: certificate %s, CA %s (open connections keep the old ones)",
             tp->tls_opts.cert_file ? tp->tls_opts.cert_file : "(none)",
             tp->tls_opts.ca_file ? tp->tls_opts.ca_file : "(none)");
    return 0;
}

bool
tp_tls_enabled(const struct tp *tp)
{
    return tp != NULL && tp->tls_ctx != NULL;
}

void
tp_tls_cleanup(struct tp *tp)
{
    SSL_CTX_free(tp->tls_ctx);
    tp->tls_ctx = NULL;
    opts_free(&tp->tls_opts);
}

/* ---- connections ------------------------------------------------------------------- */

struct bufferevent *
tp_tls_bev_new(struct tp_conn *conn, evutil_socket_t fd, bool connecting, const char *tls_name)
{
    struct tp *tp = conn->tp;
    struct bufferevent *bev;
    char host[INET6_ADDRSTRLEN];
    SSL *ssl;

    if (tp->tls_ctx == NULL)
        return NULL;
    ssl = SSL_new(tp->tls_ctx);   /* takes a reference on the context */
    if (ssl == NULL)
        goto fail;
    if (connecting) {
        const char *name = tls_name;

        if (name != NULL && (conn->tls_name = strdup(name)) == NULL)
            goto fail;
        if (name == NULL)
            name = tp_addr_host(&conn->peer, host, sizeof host);
        /* RFC 6066 §3: SNI carries host names only, never address literals */
        if (!is_ip_literal(name) && SSL_set_tlsext_host_name(ssl, name) != 1)
            goto fail;
        if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
            /* RFC 5922 §7.1 / RFC 6125: the server's certificate must name what we dialled */
            if (is_ip_literal(name)) {
                if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1)
                    goto fail;
            } else {
                SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                if (SSL_set1_host(ssl, name) != 1)
                    goto fail;
            }
        }
    }
    bev = bufferevent_openssl_socket_new(tp->base, fd, ssl,
                                         connecting ? BUFFEREVENT_SSL_CONNECTING
                                                    : BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);   /* frees the SSL too */
    if (bev == NULL) {
        ssl = NULL;   /* with BEV_OPT_CLOSE_ON_FREE libevent freed it on failure too */
        goto fail;
    }
    /* a peer that closes without close_notify is an EOF, not an error */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    ERR_clear_error();
    return bev;
fail:
    SSL_free(ssl);
    ERR_clear_error();
    return NULL;
}

/* Subject CN as UTF-8, or NULL (none, or one with an embedded NUL). */
static char *
cert_cn(X509 *cert)
{
    X509_NAME *subj = X509_get_subject_name(cert);
    int idx = subj != NULL ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
    unsigned char *utf8 = NULL;
    char *cn = NULL;
    int n;

    if (idx < 0)
        return NULL;
    n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
    if (n < 0)
        return NULL;
    if (memchr(utf8, '\0', (size_t)n) == NULL)
        cn = strndup((const char *)utf8, (size_t)n);
    OPENSSL_free(utf8);
    return cn;
}

int
tp_tls_capture_peer(struct tp_conn *conn)
{
    SSL *ssl = bufferevent_openssl_get_ssl(conn->bev);
    X509 *cert;
    uint32_t xf, xku;

    if (ssl == NULL)
        return 0;
    cert = SSL_get1_peer_certificate(ssl);   /* +1 reference */
    if (cert == NULL)
        return 0;
    /* only a certificate that verified is an identity */
    if (!(SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) || SSL_get_verify_result(ssl) != X509_V_OK) {
        X509_free(cert);
        return 0;
    }
    xf = X509_get_extension_flags(cert);
    xku = X509_get_extended_key_usage(cert);   /* UINT32_MAX when there is no EKU at all */
    conn->peer_server_auth = (xf & EXFLAG_XKUSAGE) != 0 && (xku & XKU_SSL_SERVER) != 0;
    conn->peer_cert = cert;
    conn->peer_cn = cert_cn(cert);
    log_debug("conn=%llu TLS %s %s, peer CN=%s%s", (unsigned long long)conn->id,
              SSL_get_version(ssl), SSL_get_cipher_name(ssl),
              conn->peer_cn ? conn->peer_cn : "(none)",
              conn->peer_server_auth ? " serverAuth" : "");
    return 0;
}

bool
tp_tls_error_str(struct tp_conn *conn, char *out, size_t outlen)
{
    SSL *ssl = conn->bev != NULL ? bufferevent_openssl_get_ssl(conn->bev) : NULL;
    unsigned long e, first = 0;
    long vr;

    /* libevent keeps the OpenSSL errors of the bufferevent; it also adds a bogus
     * error:00000001 entry after each real one (dependencies.md §4.2) */
    while (conn->bev != NULL && (e = bufferevent_get_openssl_error(conn->bev)) != 0) {
        if (first == 0 && ERR_GET_LIB(e) != 0)
            first = e;
    }
    vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    ERR_clear_error();
    if (vr != X509_V_OK) {
        snprintf(out, outlen, "TLS certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
        return true;
    }
    if (first != 0) {
        snprintf(out, outlen, "TLS: %s",
                 ERR_reason_error_string(first) ? ERR_reason_error_string(first) : "error");
        return true;
    }
    snprintf(out, outlen, "TLS: connection closed");
    return false;
}

static bool
name_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcasecmp(a, b) == 0;
}

bool
tp_tls_conn_fits(const struct tp_conn *conn, const char *tls_name)
{
    if (conn->outgoing)
        return name_eq(conn->tls_name, tls_name);
    if (tls_name == NULL)
        return true;   /* back to the source of an accepted connection (RFC 3261 §18.2.2) */
    return tp_conn_peer_name_matches(conn, tls_name);
}

void
tp_tls_conn_close(struct tp_conn *conn)
{
    SSL *ssl;

    if (conn->proto != TP_TLS || conn->bev == NULL || !conn->connected || conn->peer_gone)
        return;
    ssl = bufferevent_openssl_get_ssl(conn->bev);
    /* close_notify (RFC 8446 §6.1), written straight to the non-blocking socket */
    if (ssl != NULL && SSL_is_init_finished(ssl))
        SSL_shutdown(ssl);
    ERR_clear_error();
}

void
tp_tls_conn_free(struct tp_conn *conn)
{
    struct tp_qmsg *q;

    X509_free(conn->peer_cert);
    conn->peer_cert = NULL;
    free(conn->peer_cn);
    conn->peer_cn = NULL;
    free(conn->tls_name);
    conn->tls_name = NULL;
    while ((q = conn->sent_head) != NULL) {
        conn->sent_head = q->next;
        free(q);
    }
    conn->sent_tail = NULL;
    conn->sent_bytes = 0;
}

/* ---- peer identity ------------------------------------------------------------------ */

bool
tp_conn_peer_has_cert(const struct tp_conn *conn)
{
    return conn != NULL && conn->peer_cert != NULL;
}

bool
tp_conn_peer_server_auth(const struct tp_conn *conn)
{
    return conn != NULL && conn->peer_cert != NULL && conn->peer_server_auth;
}

const char *
tp_conn_peer_subject(const struct tp_conn *conn)
{
    return conn != NULL && conn->peer_cert != NULL ? conn->peer_cn : NULL;
}

bool
tp_conn_peer_name_matches(const struct tp_conn *conn, const char *name)
{
    if (conn == NULL || conn->peer_cert == NULL || name == NULL || name[0] == '\0')
        return false;
    if (is_ip_literal(name))
        return X509_check_ip_asc(conn->peer_cert, name, 0) == 1;
    return X509_check_host(conn->peer_cert, name, strlen(name),
                           X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
}
