/*
 * cfg_ini: lexer and parser for the config file format (internal to cfg.c, exported
 * for tests and tools). Grammar, one construct per line:
 *
 *     file     := { line }
 *     line     := ws [ section | pair ] ws [ comment ] ( "\n" | "\r\n" | EOF )
 *     section  := "[" ws ident ws "]"
 *     pair     := ident ws "=" ws [ value ]
 *     value    := quoted | bare
 *     quoted   := '"' { char | "\\" ( '\\' | '"' | "n" | "t" | "r" | "x" hex hex ) } '"'
 *     bare     := text up to end of line or a comment; trailing blanks dropped
 *     comment  := ( "#" | ";" ) text      (inside a bare value only after a blank)
 *     ident    := [A-Za-z0-9_.-]+
 *
 * The lexer is a state machine over bytes with line/column tracking; the parser
 * consumes its tokens and calls back once per section header and per pair.
 */
#ifndef PARLEY_UTIL_CFG_INI_H
#define PARLEY_UTIL_CFG_INI_H

#include <stddef.h>

#include "util/cfg.h"

/* Largest config file accepted (bytes). */
#define CFG_INI_MAX_SIZE (1024 * 1024)

/*
 * Called for "[section]" with <key> == NULL and <value> == NULL, and for each pair with
 * the current <section> (NULL before any header). Strings are borrowed for the call.
 * Returns 0 to go on, or -1 after filling err->msg (without the "file:line: " prefix;
 * cfg_ini_parse() adds it and sets err->line/col).
 */
typedef int cfg_ini_fn(void *arg, const char *section, const char *key, const char *value,
                       int line, int col, struct cfg_error *err);

/*
 * Parses <text>[<len>] (not necessarily NUL-terminated) named <fname> in messages.
 * Returns 0, or -1 with <err> set to "<fname>:<line>: <message>".
 */
int cfg_ini_parse(const char *fname, const char *text, size_t len, cfg_ini_fn *fn, void *arg,
                  struct cfg_error *err);

#endif
