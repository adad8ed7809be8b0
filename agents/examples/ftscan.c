/*
 * ftscan: an example agent that screens file transfers. An INVITE whose SDP offers a
 * file (RFC 5547: an m=message line with a=file-selector) is refused with 488 when the
 * file's name or hash is on the blocklist; anything else is passed on.
 *
 * Blocklist file, one entry per line ('#' comments):
 *     name:setup.exe                 the file-selector name (case-insensitive)
 *     sha-1:72:24:5F:E8:65:3D:...    the file-selector hash (RFC 5547 §6, hex pairs)
 *
 *   ftscan --socket PATH --app ftscan --blocklist /etc/parley/ft-blocklist
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "example.h"

#define MAX_ENTRIES 4096

struct ftscan {
    char *names[MAX_ENTRIES];
    unsigned nnames;
    char *hashes[MAX_ENTRIES];    /* "sha-1:AA:BB..." upper case */
    unsigned nhashes;
};

static int
load_blocklist(struct ftscan *f, const char *path)
{
    FILE *in = fopen(path, "r");
    char line[1024];

    if (in == NULL)
        return -1;
    while (fgets(line, sizeof line, in)) {
        char *e = line + strlen(line);
        while (e > line && isspace((unsigned char)e[-1]))
            *--e = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (strncasecmp(line, "name:", 5) == 0 && f->nnames < MAX_ENTRIES) {
            f->names[f->nnames++] = strdup(line + 5);
        } else if (f->nhashes < MAX_ENTRIES) {
            for (char *c = line; *c; c++)
                *c = (char)toupper((unsigned char)*c);
            f->hashes[f->nhashes++] = strdup(line);
        }
    }
    fclose(in);
    return 0;
}

/*
 * RFC 5547 §5: a=file-selector:name:"x.pdf" type:... size:... hash:sha-1:AB:CD...
 * Copies the name and hash of the first file-selector in <sdp> (empty when absent).
 */
static bool
file_selector(const char *sdp, size_t len, char *name, size_t nlen, char *hash, size_t hlen)
{
    const char *p = sdp, *end = sdp + len, *line = NULL;

    name[0] = hash[0] = '\0';
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
        if (n > 16 && strncmp(p, "a=file-selector:", 16) == 0) {
            line = p;
            end = p + n;
            break;
        }
        p = eol ? eol + 1 : end;
    }
    if (line == NULL)
        return false;
    for (p = line + 16; p < end;) {
        while (p < end && (*p == ' ' || *p == '\r'))
            p++;
        if ((size_t)(end - p) > 5 && strncmp(p, "name:", 5) == 0) {
            const char *s = p + 5, *q;
            size_t n;
            if (s < end && *s == '"') {
                s++;
                for (q = s; q < end && *q != '"'; q++)
                    ;
            } else {
                for (q = s; q < end && *q != ' ' && *q != '\r'; q++)
                    ;
            }
            n = (size_t)(q - s) < nlen - 1 ? (size_t)(q - s) : nlen - 1;
            memcpy(name, s, n);
            name[n] = '\0';
            p = q < end ? q + 1 : end;
            continue;
        }
        if ((size_t)(end - p) > 5 && strncmp(p, "hash:", 5) == 0) {
            const char *s = p + 5, *q;
            size_t n;
            for (q = s; q < end && *q != ' ' && *q != '\r'; q++)
                ;
            n = (size_t)(q - s) < hlen - 1 ? (size_t)(q - s) : hlen - 1;
            for (size_t i = 0; i < n; i++)
                hash[i] = (char)toupper((unsigned char)s[i]);
            hash[n] = '\0';
            p = q;
            continue;
        }
        while (p < end && *p != ' ')
            p++;
    }
    return true;
}

static void
on_request(struct pagent *a, const struct pagent_msg *m, void *arg)
{
    struct ftscan *f = arg;
    char name[256], hash[256];
    size_t len = 0;
    const char *body = pagent_msg_body(m, &len);
    const char *reason = NULL;

    if (strcmp(pagent_msg_method(m), "INVITE") == 0 && file_selector(body, len, name, sizeof name, hash, sizeof hash)) {
        for (unsigned i = 0; i < f->nnames && reason == NULL; i++)
            if (name[0] && strcasecmp(name, f->names[i]) == 0)
                reason = "File Name Blocked";
        for (unsigned i = 0; i < f->nhashes && reason == NULL; i++)
            if (hash[0] && strcmp(hash, f->hashes[i]) == 0)
                reason = "File Hash Blocked";
    }
    if (reason) {
        const char *hdr[] = {"Warning: 399 parley-ftscan \"file transfer refused by policy\""};
        fprintf(stderr, "ftscan: refused file transfer \"%s\" (%s)\n", name, reason);
        pagent_respond(a, pagent_msg_id(m), 488, reason, hdr, 1);
    } else {
        pagent_proxy(a, pagent_msg_id(m), NULL, NULL, 0);
    }
}

int
main(int argc, char **argv)
{
    struct pagent_opts o = {0};
    static struct ftscan f;
    const char *list = NULL;

    o.app = "ftscan";
    for (int i = 1; i < argc; i++) {
        if (example_common_opt(&o, argc, argv, &i))
            continue;
        if (strcmp(argv[i], "--blocklist") == 0 && i + 1 < argc) {
            list = argv[++i];
            continue;
        }
        fprintf(stderr, "usage: ftscan --socket PATH [--secret S] [--app NAME] --blocklist FILE\n");
        return 2;
    }
    if (list == NULL || load_blocklist(&f, list) != 0) {
        fprintf(stderr, "ftscan: --blocklist: cannot read %s\n", list ? list : "(none)");
        return 2;
    }
    o.on_request = on_request;
    o.arg = &f;
    return example_run(&o, "ftscan");
}
