/*
 * msglog: an example agent that appends every MESSAGE it is given to a file, one line
 * per message: "<unix time>\t<From>\t<To>\t<body with \n and \t escaped>", then
 * passes the request on unchanged. Other methods are passed on as they are.
 *
 *   msglog --socket /run/parley/agents.sock --app msglog --file /var/log/parley/im.log
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "example.h"

struct msglog {
    FILE *out;
};

static void
on_request(struct pagent *a, const struct pagent_msg *m, void *arg)
{
    struct msglog *ml = arg;
    const char *from = pagent_msg_header(m, "From", 0), *to = pagent_msg_header(m, "To", 0);
    size_t len = 0;
    const char *body = pagent_msg_body(m, &len);

    if (strcmp(pagent_msg_method(m), "MESSAGE") == 0) {
        fprintf(ml->out, "%lld\t%s\t%s\t", (long long)time(NULL), from ? from : "", to ? to : "");
        for (size_t i = 0; i < len; i++) {
            if (body[i] == '\n')
                fputs("\\n", ml->out);
            else if (body[i] == '\t')
                fputs("\\t", ml->out);
            else if (body[i] == '\\')
                fputs("\\\\", ml->out);
            else if (body[i] != '\r')
                fputc(body[i], ml->out);
        }
        fputc('\n', ml->out);
        fflush(ml->out);
    }
    if (pagent_proxy(a, pagent_msg_id(m), NULL, NULL, 0) != 0)
        fprintf(stderr, "msglog: %s\n", pagent_error(a));
}

int
main(int argc, char **argv)
{
    struct pagent_opts o = {0};
    struct msglog ml = {0};
    const char *file = NULL;
    int rc;

    o.app = "msglog";
    for (int i = 1; i < argc; i++) {
        if (example_common_opt(&o, argc, argv, &i))
            continue;
        if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
            file = argv[++i];
            continue;
        }
        fprintf(stderr, "usage: msglog --socket PATH [--secret S] [--app NAME] --file LOG\n");
        return 2;
    }
    if (file == NULL || (ml.out = fopen(file, "a")) == NULL) {
        fprintf(stderr, "msglog: --file: cannot open %s\n", file ? file : "(none)");
        return 2;
    }
    o.on_request = on_request;
    o.arg = &ml;
    rc = example_run(&o, "msglog");
    fclose(ml.out);
    return rc;
}
