#define LOG_MODULE "pidf"
#include "us_pidf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#include "util/log.h"

/* No network, no entity substitution, no DTD loading: hostile input stays inert. */
#define XML_OPTS (XML_PARSE_NONET | XML_PARSE_NOWARNING | XML_PARSE_NOERROR | XML_PARSE_NOCDATA)

static void
xml_quiet(void *ctx, const char *fmt, ...)
{
    (void)ctx;
    (void)fmt;   /* parse errors are reported to the client as a 400 reason instead */
}

void
us_pidf_init(void)
{
    xmlInitParser();
    xmlSetGenericErrorFunc(NULL, xml_quiet);
}

static bool
is_el(const xmlNode *n, const char *ns, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0 &&
           (ns == NULL || (n->ns && n->ns->href && strcmp((const char *)n->ns->href, ns) == 0));
}

static xmlNode *
child(const xmlNode *n, const char *ns, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (is_el(c, ns, name))
            return c;
    return NULL;
}

/* Text content, trimmed, into <out>. */
static void
text_of(const xmlNode *n, char *out, size_t outlen)
{
    xmlChar *t = xmlNodeGetContent(n);
    const char *s = (const char *)t, *e;

    out[0] = '\0';
    if (t == NULL)
        return;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    snprintf(out, outlen, "%.*s", (int)(e - s), s);
    xmlFree(t);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static xmlDoc *
read_doc(const char *xml, size_t len, char *err, size_t errlen)
{
    xmlDoc *doc;

    if (xml == NULL || len == 0 || len > 1024 * 1024) {
        set_err(err, errlen, "empty or oversized document");
        return NULL;
    }
    doc = xmlReadMemory(xml, (int)len, "pidf.xml", NULL, XML_OPTS);
    if (doc == NULL) {
        const xmlError *e = xmlGetLastError();
        set_err(err, errlen, "malformed XML%s%s", e && e->message ? ": " : "", e && e->message ? e->message : "");
        /* libxml2 messages end with a newline */
        if (err && errlen && strlen(err) && err[strlen(err) - 1] == '\n')
            err[strlen(err) - 1] = '\0';
        return NULL;
    }
    return doc;
}

/* First RPID activity below <n> (RFC 4480 §3.2: <rpid:activities><rpid:away/>...). */
static void
find_activity(const xmlNode *n, char *out, size_t outlen)
{
    for (const xmlNode *c = n ? n->children : NULL; c && !out[0]; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (is_el(c, US_PIDF_RPID_NS, "activities")) {
            for (const xmlNode *a = c->children; a; a = a->next) {
                if (a->type != XML_ELEMENT_NODE)
                    continue;
                if (is_el(a, US_PIDF_RPID_NS, "other"))
                    text_of(a, out, outlen);
                else if (!is_el(a, US_PIDF_RPID_NS, "note"))
                    snprintf(out, outlen, "%s", (const char *)a->name);
                if (out[0])
                    return;
            }
        } else {
            find_activity(c, out, outlen);
        }
    }
}

int
us_pidf_parse(const char *xml, size_t len, struct us_pidf_info *info, char *err, size_t errlen)
{
    struct us_pidf_info tmp;
    xmlDoc *doc = read_doc(xml, len, err, errlen);
    xmlNode *root;
    xmlChar *entity = NULL;
    int rc = -1;

    if (info == NULL)
        info = &tmp;
    memset(info, 0, sizeof *info);
    if (doc == NULL)
        return -1;
    root = xmlDocGetRootElement(doc);
    if (!is_el(root, US_PIDF_NS, "presence")) {
        set_err(err, errlen, "root element is not <presence> of %s", US_PIDF_NS);
        goto out;
    }
    entity = xmlGetProp(root, (const xmlChar *)"entity");
    if (entity == NULL || entity[0] == '\0') {
        set_err(err, errlen, "<presence> has no entity");
        goto out;
    }
    snprintf(info->entity, sizeof info->entity, "%s", (const char *)entity);
    for (xmlNode *c = root->children; c; c = c->next) {
        if (is_el(c, US_PIDF_NS, "tuple")) {
            xmlChar *id = xmlGetProp(c, (const xmlChar *)"id");
            xmlNode *st = child(c, US_PIDF_NS, "status"), *basic = child(st, US_PIDF_NS, "basic");
            xmlNode *note = child(c, US_PIDF_NS, "note");
            bool ok = id && id[0];
            xmlFree(id);
            if (!ok) {
                set_err(err, errlen, "<tuple> without id");
                goto out;
            }
            if (st == NULL) {
                set_err(err, errlen, "<tuple> without <status>");
                goto out;
            }
            if (basic) {
                char b[16];
                text_of(basic, b, sizeof b);
                if (strcmp(b, "open") == 0)
                    info->open++;
                else if (strcmp(b, "closed") != 0) {
                    set_err(err, errlen, "<basic> is neither open nor closed");
                    goto out;
                }
            }
            if (note && !info->note[0])
                text_of(note, info->note, sizeof info->note);
            info->tuples++;
        } else if (is_el(c, US_PIDF_DM_NS, "person")) {
            xmlNode *note = child(c, US_PIDF_DM_NS, "note");
            find_activity(c, info->activity, sizeof info->activity);
            if (note && !info->note[0])
                text_of(note, info->note, sizeof info->note);
        } else if (is_el(c, US_PIDF_NS, "note") && !info->note[0]) {
            text_of(c, info->note, sizeof info->note);
        }
    }
    rc = 0;
out:
    xmlFree(entity);
    xmlFreeDoc(doc);
    return rc;
}

static bool
id_taken(xmlNode *root, const char *id)
{
    for (xmlNode *c = root->children; c; c = c->next) {
        if (is_el(c, US_PIDF_NS, "tuple")) {
            xmlChar *v = xmlGetProp(c, (const xmlChar *)"id");
            bool same = v && strcmp((const char *)v, id) == 0;
            xmlFree(v);
            if (same)
                return true;
        }
    }
    return false;
}

/* Adds <node> (a copy, owned by <out>) as a tuple with an id unique in <root>. */
static void
add_tuple(xmlDoc *out, xmlNode *root, const xmlNode *tuple, unsigned k)
{
    xmlNode *copy = xmlDocCopyNode((xmlNode *)tuple, out, 1);
    xmlChar *id;

    if (copy == NULL)
        return;
    id = xmlGetProp(copy, (const xmlChar *)"id");
    if (id && id_taken(root, (const char *)id)) {
        char nid[300];
        snprintf(nid, sizeof nid, "%s-%u", (const char *)id, k);
        xmlSetProp(copy, (const xmlChar *)"id", (const xmlChar *)nid);
    }
    xmlFree(id);
    xmlAddChild(root, copy);
}

static xmlNode *
new_tuple(xmlNode *root, xmlNs *ns, const char *id, bool open, const char *contact)
{
    xmlNode *t = xmlNewChild(root, ns, (const xmlChar *)"tuple", NULL);
    xmlNode *st;

    if (t == NULL)
        return NULL;
    xmlSetProp(t, (const xmlChar *)"id", (const xmlChar *)id);
    st = xmlNewChild(t, ns, (const xmlChar *)"status", NULL);
    xmlNewChild(st, ns, (const xmlChar *)"basic", (const xmlChar *)(open ? "open" : "closed"));
    if (contact)
        xmlNewTextChild(t, ns, (const xmlChar *)"contact", (const xmlChar *)contact);
    return t;
}

char *
us_pidf_compose(const char *entity, const struct us_pidf_part *parts, size_t n, size_t *outlen)
{
    xmlDoc *out = xmlNewDoc((const xmlChar *)"1.0");
    xmlNode *root;
    xmlNs *ns;
    xmlChar *mem = NULL;
    int size = 0;
    bool have_person = false;
    char *res = NULL;

    if (out == NULL || entity == NULL)
        goto out;
    root = xmlNewNode(NULL, (const xmlChar *)"presence");
    if (root == NULL)
        goto out;
    xmlDocSetRootElement(out, root);
    ns = xmlNewNs(root, (const xmlChar *)US_PIDF_NS, NULL);
    xmlSetNs(root, ns);
    xmlNewNs(root, (const xmlChar *)US_PIDF_DM_NS, (const xmlChar *)"dm");
    xmlNewNs(root, (const xmlChar *)US_PIDF_RPID_NS, (const xmlChar *)"rpid");
    xmlSetProp(root, (const xmlChar *)"entity", (const xmlChar *)entity);
    if (n == 0)
        new_tuple(root, ns, "offline", false, NULL);
    for (size_t i = 0; i < n; i++) {
        const struct us_pidf_part *p = &parts[i];
        xmlDoc *in;
        xmlNode *r;

        if (p->doc == NULL) {
            char id[128];
            snprintf(id, sizeof id, "%s", p->tuple_id ? p->tuple_id : "endpoint");
            if (!id_taken(root, id))
                new_tuple(root, ns, id, true, p->contact);
            continue;
        }
        in = xmlReadMemory(p->doc, (int)p->len, "pidf.xml", NULL, XML_OPTS);
        r = in ? xmlDocGetRootElement(in) : NULL;
        if (!is_el(r, US_PIDF_NS, "presence")) {
            xmlFreeDoc(in);
            continue;
        }
        for (xmlNode *c = r->children; c; c = c->next) {
            if (is_el(c, US_PIDF_NS, "tuple")) {
                add_tuple(out, root, c, (unsigned)i);
            } else if (is_el(c, US_PIDF_DM_NS, "person") && !have_person) {
                xmlNode *copy = xmlDocCopyNode(c, out, 1);
                if (copy) {
                    xmlAddChild(root, copy);
                    have_person = true;
                }
            } else if (is_el(c, US_PIDF_NS, "note")) {
                xmlNode *copy = xmlDocCopyNode(c, out, 1);
                if (copy)
                    xmlAddChild(root, copy);
            }
        }
        xmlFreeDoc(in);
    }
    xmlReconciliateNs(out, root);
    xmlDocDumpMemoryEnc(out, &mem, &size, "UTF-8");
    if (mem == NULL || size <= 0)
        goto out;
    res = malloc((size_t)size + 1);
    if (res) {
        memcpy(res, mem, (size_t)size);
        res[size] = '\0';
        if (outlen)
            *outlen = (size_t)size;
    }
out:
    xmlFree(mem);
    xmlFreeDoc(out);
    return res;
}

char *
us_pidf_offline(const char *entity, size_t *outlen)
{
    return us_pidf_compose(entity, NULL, 0, outlen);
}
