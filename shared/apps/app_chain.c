#define LOG_MODULE "apps"
#include "apps/app_chain.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

struct app {
    struct app_manifest *m;
    struct scr_program *prog;
    struct app_stats st;
};

struct app_chain {
    unsigned refs;
    struct app apps[APP_MAX_APPS];
    size_t n;
    uint64_t resp_mask;           /* bit i: application i has a response filter */
};

struct app_chain *
app_chain_new(void)
{
    struct app_chain *c = calloc(1, sizeof *c);

    if (c)
        c->refs = 1;
    return c;
}

static void
chain_free(struct app_chain *c)
{
    for (size_t i = 0; i < c->n; i++) {
        scr_program_free(c->apps[i].prog);
        app_manifest_free(c->apps[i].m);
    }
    free(c);
}

void app_chain_ref(struct app_chain *c) { c->refs++; }

void
app_chain_unref(struct app_chain *c)
{
    if (c && --c->refs == 0)
        chain_free(c);
}

size_t app_chain_count(const struct app_chain *c) { return c->n; }
const struct app_manifest *app_chain_manifest(const struct app_chain *c, size_t i) { return c->apps[i].m; }
const struct app_stats *app_chain_stats(const struct app_chain *c, size_t i) { return &c->apps[i].st; }
bool app_chain_wants_responses(const struct app_chain *c) { return c->resp_mask != 0; }
bool app_chain_seen_wants_responses(const struct app_chain *c, uint64_t seen) { return (c->resp_mask & seen) != 0; }

int
app_chain_add(struct app_chain *c, struct app_manifest *m, struct app_err *err)
{
    struct scr_err se;
    struct scr_program *p;

    if (c->n >= APP_MAX_APPS) {
        if (err) {
            snprintf(err->file, sizeof err->file, "%s", m->file);
            err->line = err->col = 0;
            snprintf(err->msg, sizeof err->msg, "more than %d applications in the chain", APP_MAX_APPS);
        }
        app_manifest_free(m);
        return -1;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->apps[i].m->name, m->name) == 0) {
            if (err) {
                snprintf(err->file, sizeof err->file, "%s", m->file);
                err->line = 1;
                err->col = 0;
                snprintf(err->msg, sizeof err->msg, "application '%s' is already in the chain (%s)", m->name,
                         c->apps[i].m->file);
            }
            app_manifest_free(m);
            return -1;
        }
    }
    memset(&se, 0, sizeof se);
    p = scr_compile(m->script, m->script_len, m->file, &se);
    if (p == NULL) {
        if (err) {
            snprintf(err->file, sizeof err->file, "%s", m->file);
            err->line = se.line;
            err->col = se.col;
            snprintf(err->msg, sizeof err->msg, "%s", se.msg);
        }
        app_manifest_free(m);
        return -1;
    }
    if (m->max_steps)
        scr_program_set_limits(p, m->max_steps, 0);
    c->apps[c->n].m = m;
    c->apps[c->n].prog = p;
    memset(&c->apps[c->n].st, 0, sizeof c->apps[c->n].st);
    if (m->any_response)
        c->resp_mask |= (uint64_t)1 << c->n;
    c->n++;
    return 0;
}

int
app_chain_reorder(struct app_chain *c, const char *const *names, size_t n)
{
    struct app out[APP_MAX_APPS];
    bool taken[APP_MAX_APPS] = {false};
    size_t k = 0;

    if (c->refs != 1)
        return -1;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < c->n; j++)
            if (!taken[j] && strcmp(c->apps[j].m->name, names[i]) == 0) {
                taken[j] = true;
                out[k++] = c->apps[j];
                break;
            }
    for (size_t j = 0; j < c->n; j++)
        if (!taken[j])
            out[k++] = c->apps[j];
    c->resp_mask = 0;
    for (size_t j = 0; j < k; j++) {
        c->apps[j] = out[j];
        if (out[j].m->any_response)
            c->resp_mask |= (uint64_t)1 << j;
    }
    return 0;
}

struct app_chain *
app_chain_load(const char *path, struct app_err *err)
{
    FILE *f = fopen(path, "r");
    struct app_chain *c = NULL;
    char line[4096];
    int ln = 0;
    size_t dirlen = 0;
    const char *slash = strrchr(path, '/');

    if (slash)
        dirlen = (size_t)(slash - path) + 1;
    if (f == NULL) {
        if (err) {
            snprintf(err->file, sizeof err->file, "%s", path);
            err->line = err->col = 0;
            snprintf(err->msg, sizeof err->msg, "cannot open the chain file: %s", strerror(errno));
        }
        return NULL;
    }
    if ((c = app_chain_new()) == NULL)
        goto bad_oom;
    while (fgets(line, sizeof line, f)) {
        char full[4096 + 512];
        char *s = line, *e;
        struct app_manifest *m;
        ln++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            if (err) {
                snprintf(err->file, sizeof err->file, "%s", path);
                err->line = ln;
                err->col = 1;
                snprintf(err->msg, sizeof err->msg, "line too long");
            }
            goto bad;
        }
        while (*s == ' ' || *s == '\t')
            s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            *--e = '\0';
        if (*s == '\0' || *s == '#')
            continue;
        if (*s == '/' || dirlen == 0)
            snprintf(full, sizeof full, "%s", s);
        else
            snprintf(full, sizeof full, "%.*s%s", (int)dirlen, path, s);
        m = app_manifest_load(full, err);
        if (m == NULL) {
            if (err && err->line == 0) {
                /* The manifest could not be read: point at the chain file's line. */
                char why[128];
                snprintf(why, sizeof why, "%.120s", err->msg);
                snprintf(err->msg, sizeof err->msg, "%.100s: %s", s, why);
                snprintf(err->file, sizeof err->file, "%s", path);
                err->line = ln;
                err->col = (int)(s - line) + 1;
            }
            goto bad;
        }
        if (app_chain_add(c, m, err) != 0)
            goto bad;
    }
    if (ferror(f)) {
        if (err) {
            snprintf(err->file, sizeof err->file, "%s", path);
            err->line = err->col = 0;
            snprintf(err->msg, sizeof err->msg, "cannot read: %s", strerror(errno));
        }
        goto bad;
    }
    fclose(f);
    return c;
bad_oom:
    if (err) {
        snprintf(err->file, sizeof err->file, "%s", path);
        err->line = err->col = 0;
        snprintf(err->msg, sizeof err->msg, "out of memory");
    }
bad:
    fclose(f);
    app_chain_unref(c);
    return NULL;
}

enum scr_outcome
app_chain_request(struct app_chain *c, const char *method, bool strict, const struct app_chain_io *io,
                  struct app_chain_run *out)
{
    out->outcome = SCR_PASS;
    out->by = -1;
    out->seen = 0;
    out->errors = 0;
    for (size_t i = 0; i < c->n; i++) {
        struct app *a = &c->apps[i];
        struct scr_run_result res;
        enum scr_outcome o;

        if (strict && !a->m->strict_route)
            continue;   /* design §2: strict-routed requests only reach strict-route apps */
        if (!app_manifest_wants_request(a->m, method))
            continue;
        if (io->current)
            io->current(io->host->arg, a->m->name);
        out->seen |= (uint64_t)1 << i;
        a->st.runs++;
        o = scr_run(a->prog, io->host, &res);
        if (o == SCR_ERROR) {
            a->st.errors++;
            out->errors++;
            log_peer(LOG_WARN, "application %s: %s (message passed on)", a->m->name, res.msg);
            o = res.acted;   /* a terminal action taken before the error stands */
        }
        if (o == SCR_PASS) {
            a->st.passed++;
            continue;
        }
        if (o == SCR_PROXIED || o == SCR_DISPATCHED)
            a->st.proxied++;
        else
            a->st.answered++;
        out->outcome = o;
        out->by = (int)i;
        break;
    }
    if (io->current)
        io->current(io->host->arg, NULL);
    return out->outcome;
}

unsigned
app_chain_response(struct app_chain *c, uint64_t seen, int code, const struct app_chain_io *io)
{
    unsigned ran = 0;

    seen &= c->resp_mask;
    for (size_t k = c->n; k-- > 0;) {
        struct app *a = &c->apps[k];
        struct scr_run_result res;

        if (!(seen & ((uint64_t)1 << k)) || !app_manifest_wants_response(a->m, code))
            continue;
        if (io->current)
            io->current(io->host->arg, a->m->name);
        a->st.responses++;
        ran++;
        if (scr_run(a->prog, io->host, &res) == SCR_ERROR) {
            a->st.errors++;
            log_peer(LOG_WARN, "application %s: %s (response passed on)", a->m->name, res.msg);
        }
    }
    if (io->current)
        io->current(io->host->arg, NULL);
    return ran;
}
