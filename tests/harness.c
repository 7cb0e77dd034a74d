#include "harness.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>

int tc_test_failures_in_case;
static const char *current_case;

void tc_test_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)fprintf(stderr, "FAIL %s: %s:%d: ", current_case ? current_case : "?", file, line);
    (void)vfprintf(stderr, fmt, ap);
    (void)fputc('\n', stderr);
    va_end(ap);
    tc_test_failures_in_case++;
}

void tc_test_dump_hex(const char *label, const uint8_t *p, size_t n)
{
    (void)fprintf(stderr, "%s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 512; i++)
        (void)fprintf(stderr, "%s%02X", (i % 32 == 0) ? "\n    " : "", p[i]);
    (void)fputc('\n', stderr);
}

int tc_test_run(const char *suite, const struct tc_test_case *cases, size_t n, int argc,
                char **argv)
{
    int passed = 0;
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && strstr(cases[i].name, argv[1]) == NULL)
            continue;
        current_case = cases[i].name;
        tc_test_failures_in_case = 0;
        tc_error_clear();
        cases[i].fn();
        if (tc_test_failures_in_case == 0) {
            passed++;
            (void)printf("ok   %s.%s\n", suite, cases[i].name);
        } else {
            failed++;
            (void)printf("FAIL %s.%s (%d check(s))\n", suite, cases[i].name,
                         tc_test_failures_in_case);
        }
    }
    (void)printf("%s: %d passed, %d failed\n", suite, passed, failed);
    (void)fflush(stdout);
    return failed == 0 && passed > 0 ? 0 : 1;
}

/* ------------------------------------------------------------- vectors */

static void free_fields(struct tc_vec_field *f, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free(f[i].value);
    *n = 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t l = strlen(s);
    while (l > 0 && isspace((unsigned char)s[l - 1]))
        s[--l] = '\0';
    return s;
}

static void set_field(struct tc_vec *v, struct tc_vec_field *arr, size_t *n, const char *key,
                      const char *value)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(arr[i].key, key) == 0) {
            free(arr[i].value);
            arr[i].value = strdup(value);
            return;
        }
    }
    if (*n >= TC_VEC_MAX_FIELDS || strlen(key) >= sizeof arr[0].key) {
        tc_test_fail_at(v->path, v->line, "vector file: too many fields or key too long");
        return;
    }
    (void)snprintf(arr[*n].key, sizeof arr[*n].key, "%s", key);
    arr[*n].value = strdup(value);
    (*n)++;
}

bool tc_vec_open(struct tc_vec *v, const char *rel)
{
    memset(v, 0, sizeof *v);
    static char path[512];
    (void)snprintf(path, sizeof path, "vectors/%s", rel);
    v->path = path;
    v->f = fopen(path, "r");
    if (v->f == NULL) {
        tc_test_fail_at(__FILE__, __LINE__, "cannot open vector file %s", path);
        return false;
    }
    return true;
}

bool tc_vec_next(struct tc_vec *v)
{
    free_fields(v->field, &v->nfield);
    if (v->f == NULL)
        return false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, v->f)) >= 0) {
        v->line++;
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0') {
            if (v->nfield > 0)
                break;
            continue;
        }
        bool attr = false;
        if (*s == '[') {
            size_t l = strlen(s);
            if (s[l - 1] != ']') {
                tc_test_fail_at(v->path, v->line, "vector file: unterminated [");
                continue;
            }
            s[l - 1] = '\0';
            s++;
            attr = true;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            if (!attr) /* CAVP section headers like [CMAC] carry no value */
                tc_test_fail_at(v->path, v->line, "vector file: line without '='");
            continue;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        if (attr) {
            set_field(v, v->attr, &v->nattr, key, value);
        } else {
            if (v->nfield == 0)
                v->record_line = v->line;
            set_field(v, v->field, &v->nfield, key, value);
        }
    }
    free(line);
    return v->nfield > 0;
}

void tc_vec_close(struct tc_vec *v)
{
    free_fields(v->field, &v->nfield);
    free_fields(v->attr, &v->nattr);
    if (v->f != NULL)
        (void)fclose(v->f);
    v->f = NULL;
}

const char *tc_vec_get(const struct tc_vec *v, const char *key)
{
    for (size_t i = 0; i < v->nfield; i++)
        if (strcmp(v->field[i].key, key) == 0)
            return v->field[i].value;
    for (size_t i = 0; i < v->nattr; i++)
        if (strcmp(v->attr[i].key, key) == 0)
            return v->attr[i].value;
    return NULL;
}

uint8_t *tc_vec_hex(const struct tc_vec *v, const char *key, size_t *len)
{
    *len = 0;
    const char *s = tc_vec_get(v, key);
    if (s == NULL) {
        tc_test_fail_at(v->path, v->record_line, "vector record lacks %s", key);
        return NULL;
    }
    size_t sl = strlen(s);
    uint8_t *out = malloc(sl / 2 + 1);
    if (out == NULL)
        return NULL;
    if (tc_hex_decode(s, sl, TC_HEX_ALLOW_SEP, out, sl / 2 + 1, len) != TC_OK) {
        char msg[300];
        tc_error_format(msg, sizeof msg);
        tc_test_fail_at(v->path, v->record_line, "%s: %s", key, msg);
        free(out);
        *len = 0;
        return NULL;
    }
    return out;
}

uint8_t *tc_test_read_file(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0;
    size_t n = 0;
    for (;;) {
        if (cap - n < 4096) {
            size_t ncap = cap ? cap * 2 : 8192;
            uint8_t *p = realloc(buf, ncap + 1);
            if (p == NULL) {
                free(buf);
                (void)fclose(f);
                return NULL;
            }
            buf = p;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    (void)fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}
