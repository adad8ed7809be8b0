/*
 * voicemail: an example after-hours router. The office hours come from a sqlite
 * database; outside them, a call (INVITE) is redirected to the voicemail URI with a
 * 302 (Contact: <voicemail>); inside them, and for other methods, it is passed on.
 *
 * Schedule database (read at every call, so it can be edited live):
 *     CREATE TABLE hours (dow INTEGER,        -- 0 = Sunday .. 6 = Saturday
 *                         open_min INTEGER,   -- minutes after midnight, local time
 *                         close_min INTEGER); -- exclusive
 * An empty table means "always after hours".
 *
 *   voicemail --socket PATH --app voicemail --db hours.db --voicemail sip:vm@example.com
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "example.h"

struct voicemail {
    sqlite3 *db;
    const char *uri;
};

/* 1 = open now, 0 = after hours, -1 = the database cannot be read (pass the call on). */
static int
open_now(struct voicemail *v)
{
    sqlite3_stmt *st = NULL;
    time_t now = time(NULL);
    struct tm tm;
    int rc = -1;

    localtime_r(&now, &tm);
    if (sqlite3_prepare_v2(v->db, "SELECT count(*) FROM hours WHERE dow = ? AND open_min <= ? AND ? < close_min",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int(st, 1, tm.tm_wday);
    sqlite3_bind_int(st, 2, tm.tm_hour * 60 + tm.tm_min);
    sqlite3_bind_int(st, 3, tm.tm_hour * 60 + tm.tm_min);
    if (sqlite3_step(st) == SQLITE_ROW)
        rc = sqlite3_column_int(st, 0) > 0;
out:
    sqlite3_finalize(st);
    return rc;
}

static void
on_request(struct pagent *a, const struct pagent_msg *m, void *arg)
{
    struct voicemail *v = arg;
    int open;

    if (strcmp(pagent_msg_method(m), "INVITE") == 0 && (open = open_now(v)) == 0) {
        char contact[600];
        const char *hdr[] = {contact};
        snprintf(contact, sizeof contact, "Contact: <%s>", v->uri);
        pagent_respond(a, pagent_msg_id(m), 302, "After Hours: Voicemail", hdr, 1);
        return;
    }
    pagent_proxy(a, pagent_msg_id(m), NULL, NULL, 0);
}

int
main(int argc, char **argv)
{
    struct pagent_opts o = {0};
    struct voicemail v = {0};
    const char *db = NULL;
    int rc;

    o.app = "voicemail";
    for (int i = 1; i < argc; i++) {
        if (example_common_opt(&o, argc, argv, &i))
            continue;
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            db = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--voicemail") == 0 && i + 1 < argc) {
            v.uri = argv[++i];
            continue;
        }
        fprintf(stderr, "usage: voicemail --socket PATH [--secret S] [--app NAME] --db FILE --voicemail URI\n");
        return 2;
    }
    if (db == NULL || v.uri == NULL || strpbrk(v.uri, "<>\r\n") != NULL) {
        fprintf(stderr, "voicemail: --db and a plain --voicemail URI are required\n");
        return 2;
    }
    if (sqlite3_open_v2(db, &v.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "voicemail: cannot open %s\n", db);
        sqlite3_close(v.db);
        return 2;
    }
    o.on_request = on_request;
    o.arg = &v;
    rc = example_run(&o, "voicemail");
    sqlite3_close(v.db);
    return rc;
}
