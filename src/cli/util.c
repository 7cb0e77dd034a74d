#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char *tc_cli_default_workspace(void)
{
    const char *ws = getenv("TRUSTCHAIN_WORKSPACE");
    return (ws != NULL && ws[0] != '\0') ? ws : "./trustchain-work";
}

/* Join the HEX arguments (argv entries flagged in `hex`) and decode them
 * with separators allowed. The result is heap memory the caller frees. */
int tc_cli_read_hex_args(const char *what, int argc, char **argv, const bool *hex, size_t max,
                         uint8_t **out, size_t *out_len)
{
    size_t total = 0;
    for (int i = 0; i < argc; i++)
        if (hex[i])
            total += strlen(argv[i]) + 1;
    if (total == 0)
        return tc_cli_usage_error("%s: no hex bytes given (see --help)", what);
    char *joined = malloc(total);
    uint8_t *bytes = malloc(total / 2 + 1);
    if (joined == NULL || bytes == NULL) {
        free(joined);
        free(bytes);
        return tc_cli_usage_error("%s: out of memory", what);
    }
    size_t n = 0;
    for (int i = 0; i < argc; i++) {
        if (!hex[i])
            continue;
        size_t l = strlen(argv[i]);
        if (n > 0)
            joined[n++] = ' ';
        memcpy(joined + n, argv[i], l);
        n += l;
    }
    size_t blen = 0;
    tc_err rc = tc_hex_decode(joined, n, TC_HEX_ALLOW_SEP, bytes, total / 2 + 1, &blen);
    free(joined);
    if (rc != TC_OK) {
        free(bytes);
        return tc_cli_error(rc, what);
    }
    if (blen == 0) {
        free(bytes);
        return tc_cli_usage_error("%s: no hex bytes given (see --help)", what);
    }
    if (blen > max) {
        free(bytes);
        return tc_cli_usage_error("%s: %zu bytes is more than the largest accepted (%zu bytes)",
                                  what, blen, max);
    }
    *out = bytes;
    *out_len = blen;
    return TC_EXIT_OK;
}

int tc_cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)fputs("trustchain: ", stderr);
    (void)vfprintf(stderr, fmt, ap);
    (void)fputc('\n', stderr);
    va_end(ap);
    return TC_EXIT_USAGE;
}

int tc_cli_error(tc_err rc, const char *what)
{
    const struct tc_error *e = tc_error_last();
    const char *msg = (e->code == rc && e->msg[0] != '\0') ? e->msg : tc_err_name(rc);
    (void)fprintf(stderr, "trustchain: %s: %s\n", what, msg);
    switch (rc) {
    case TC_ERR_ARG:
    case TC_ERR_FORMAT:
    case TC_ERR_TRUNCATED:
    case TC_ERR_RANGE:
    case TC_ERR_SPACE:
        return TC_EXIT_USAGE;
    default:
        return TC_EXIT_FAIL;
    }
}

int tc_cli_parse_opts(const char *group, const char *cmd, const struct tc_cli_opt *table, size_t n,
                      int argc, char **argv, void *opts, struct tc_cli_args *args)
{
    const struct tc_cli_parser p = {.group = group, .cmd = cmd, .table = table, .n = n};
    return tc_cli_parse_opts_with(&p, argc, argv, opts, args);
}

int tc_cli_parse_opts_with(const struct tc_cli_parser *p, int argc, char **argv, void *opts,
                           struct tc_cli_args *args)
{
    char who[96];
    (void)snprintf(who, sizeof who, "%s%s%s", p->group, p->cmd != NULL ? " " : "",
                   p->cmd != NULL ? p->cmd : "");
    const char *help = p->help != NULL ? p->help : p->group;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const struct tc_cli_opt *o = NULL;
        for (size_t k = 0; k < p->n && o == NULL; k++)
            if (strcmp(a, p->table[k].name) == 0)
                o = &p->table[k];
        if (o == NULL) {
            bool option = a[0] == '-' && a[1] != '\0';
            if (option || args == NULL || args->max == 0)
                return tc_cli_usage_error("%s: unknown option '%s' (see 'trustchain %s --help')",
                                          who, a, help);
            if (args->n >= args->max)
                return tc_cli_usage_error("%s: too many arguments", who);
            args->pos[args->n++] = a;
            continue;
        }
        void *member = (char *)opts + o->off;
        size_t *count =
            o->kind == TC_CLI_OPT_LIST ? (size_t *)(void *)((char *)opts + o->count_off) : NULL;
        /* A full list is refused before its value is looked at. */
        if (count != NULL && *count >= o->max) {
            if (o->why != NULL)
                return tc_cli_usage_error("%s: at most %zu %s", who, o->max, o->why);
            return tc_cli_usage_error("%s: at most %zu values of %s", who, o->max, a);
        }
        bool value = o->kind == TC_CLI_OPT_VALUE || o->kind == TC_CLI_OPT_LIST;
        if (value && (i + 1 >= argc || (argv[i + 1][0] == '\0' && !p->empty_values)))
            return tc_cli_usage_error("%s: %s needs a value", who, a);
        switch (o->kind) {
        case TC_CLI_OPT_FLAG:
            *(bool *)member = true;
            break;
        case TC_CLI_OPT_VALUE:
            *(const char **)member = argv[++i];
            break;
        case TC_CLI_OPT_LIST:
            ((const char **)member)[(*count)++] = argv[++i];
            break;
        case TC_CLI_OPT_REFUSED:
            return tc_cli_usage_error("%s: %s", who, o->why);
        default:
            return tc_cli_usage_error("%s: bad option table", who);
        }
    }
    return TC_EXIT_OK;
}

bool tc_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return true;
    }
    return false;
}

void tc_cli_list(FILE *f, const char *prefix, const struct tc_cli_cmd *table, size_t n)
{
    (void)fprintf(f, "usage: %s <command> [options]\n\ncommands:\n", prefix);
    for (size_t i = 0; i < n; i++)
        (void)fprintf(f, "  %-12s %s\n", table[i].name, table[i].summary);
    (void)fprintf(f, "\nRun '%s <command> --help' for a command's options.\n", prefix);
}

int tc_cli_dispatch(const char *prefix, const struct tc_cli_cmd *table, size_t n, int argc,
                    char **argv)
{
    if (argc < 1 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0 ||
        strcmp(argv[0], "help") == 0) {
        tc_cli_list(stdout, prefix, table, n);
        return argc < 1 ? TC_EXIT_USAGE : TC_EXIT_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[0], table[i].name) == 0)
            return table[i].run(argc, argv);
    }
    return tc_cli_usage_error("'%s' is not a command of '%s' (see '%s --help')", argv[0], prefix,
                              prefix);
}

int tc_cli_group(const char *group, const char *usage, const struct tc_cli_cmd *table, size_t n,
                 int argc, char **argv)
{
    char prefix[64];
    (void)snprintf(prefix, sizeof prefix, "trustchain %s", group);
    if (argc < 2)
        return tc_cli_usage_error("%s: no command given (see '%s --help')", group, prefix);
    const char *cmd = argv[1];
    bool help_cmd =
        strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0;
    if (help_cmd || (usage != NULL && tc_cli_wants_help(argc - 1, argv + 1))) {
        if (usage != NULL)
            (void)fputs(usage, stdout);
        else
            tc_cli_list(stdout, prefix, table, n);
        return TC_EXIT_OK;
    }
    return tc_cli_dispatch(prefix, table, n, argc - 1, argv + 1);
}

/* ------------------------------------------------------------------ JSON */

void tc_json_init(struct tc_json *j, FILE *f)
{
    memset(j, 0, sizeof *j);
    j->f = f;
}

static void pre_value(struct tc_json *j)
{
    if (j->after_key) {
        j->after_key = false;
        return;
    }
    if (j->depth > 0 && j->need_comma[j->depth])
        (void)fputc(',', j->f);
    if (j->depth > 0)
        j->need_comma[j->depth] = true;
}

static void open_scope(struct tc_json *j, char ch)
{
    pre_value(j);
    (void)fputc(ch, j->f);
    if (j->depth < (int)TC_ARRAY_LEN(j->need_comma) - 1)
        j->depth++;
    j->need_comma[j->depth] = false;
}

static void close_scope(struct tc_json *j, char ch)
{
    (void)fputc(ch, j->f);
    if (j->depth > 0)
        j->depth--;
}

void tc_json_begin_object(struct tc_json *j)
{
    open_scope(j, '{');
}
void tc_json_end_object(struct tc_json *j)
{
    close_scope(j, '}');
}
void tc_json_begin_array(struct tc_json *j)
{
    open_scope(j, '[');
}
void tc_json_end_array(struct tc_json *j)
{
    close_scope(j, ']');
}

static void put_string(FILE *f, const char *s)
{
    (void)fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            (void)fputs("\\\"", f);
            break;
        case '\\':
            (void)fputs("\\\\", f);
            break;
        case '\n':
            (void)fputs("\\n", f);
            break;
        case '\t':
            (void)fputs("\\t", f);
            break;
        case '\r':
            (void)fputs("\\r", f);
            break;
        default:
            if (*p < 0x20)
                (void)fprintf(f, "\\u%04x", *p);
            else
                (void)fputc(*p, f);
            break;
        }
    }
    (void)fputc('"', f);
}

void tc_json_key(struct tc_json *j, const char *key)
{
    pre_value(j);
    put_string(j->f, key);
    (void)fputc(':', j->f);
    j->after_key = true;
}

void tc_json_string(struct tc_json *j, const char *s)
{
    pre_value(j);
    put_string(j->f, s);
}

void tc_json_uint(struct tc_json *j, uint64_t v)
{
    pre_value(j);
    (void)fprintf(j->f, "%llu", (unsigned long long)v);
}

void tc_json_bool(struct tc_json *j, bool v)
{
    pre_value(j);
    (void)fputs(v ? "true" : "false", j->f);
}

void tc_json_null(struct tc_json *j)
{
    pre_value(j);
    (void)fputs("null", j->f);
}

void tc_json_hex(struct tc_json *j, const uint8_t *p, size_t n)
{
    pre_value(j);
    (void)fputc('"', j->f);
    for (size_t i = 0; i < n; i++)
        (void)fprintf(j->f, "%02X", p[i]);
    (void)fputc('"', j->f);
}

void tc_json_finish(struct tc_json *j)
{
    (void)fputc('\n', j->f);
    (void)fflush(j->f);
}

tc_err tc_cli_read_file(const char *path, struct tc_buf *b)
{
    FILE *f = fopen(path, "rb");
    TC_ENSURE_MSG(f != NULL, TC_ERR_NOT_FOUND, "cannot read %s: %s", path, strerror(errno));
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        tc_buf_put(b, chunk, n);
    bool err = ferror(f) != 0;
    (void)fclose(f);
    TC_ENSURE_MSG(!err, TC_ERR_IO, "cannot read %s", path);
    return tc_buf_status(b);
}
