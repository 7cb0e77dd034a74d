/*
 * Minimal test harness. Each test binary lists its cases in a table and ends
 * with the line "N passed, N failed"; the exit status is non-zero on failure.
 *
 * Vector files (tests/vectors/<module>/<name>.txt) hold records of
 * `KEY = value` lines separated by blank lines; `#` starts a comment and a
 * `[KEY = value]` line sets an attribute inherited by the records after it
 * (the NIST CAVP .rsp layout). Each file names its source in a comment.
 */
#ifndef TC_TESTS_HARNESS_H
#define TC_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <trustchain/core.h>

struct tc_test_case {
    const char *name;
    void (*fn)(void);
};

extern int tc_test_failures_in_case;

void tc_test_fail_at(const char *file, int line, const char *fmt, ...) TC_PRINTF(3, 4);
int tc_test_run(const char *suite, const struct tc_test_case *cases, size_t n, int argc,
                char **argv);
void tc_test_dump_hex(const char *label, const uint8_t *p, size_t n);

#define TC_TEST_MAIN(suite, cases)                                                                 \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return tc_test_run(suite, cases, TC_ARRAY_LEN(cases), argc, argv);                         \
    }

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            tc_test_fail_at(__FILE__, __LINE__, "expected: %s", #cond);                            \
    } while (0)

#define EXPECT_OK(call)                                                                            \
    do {                                                                                           \
        tc_err tc_t_rc_ = (call);                                                                  \
        if (tc_t_rc_ != TC_OK) {                                                                   \
            char tc_t_msg_[400];                                                                   \
            tc_error_format(tc_t_msg_, sizeof tc_t_msg_);                                          \
            tc_test_fail_at(__FILE__, __LINE__, "%s failed: %s", #call, tc_t_msg_);                \
        }                                                                                          \
    } while (0)

#define EXPECT_ERR(call, code)                                                                     \
    do {                                                                                           \
        tc_err tc_t_rc_ = (call);                                                                  \
        if (tc_t_rc_ != (code))                                                                    \
            tc_test_fail_at(__FILE__, __LINE__, "%s returned '%s', expected '%s'", #call,          \
                            tc_err_name(tc_t_rc_), tc_err_name(code));                             \
    } while (0)

#define EXPECT_EQ_U(a, b)                                                                          \
    do {                                                                                           \
        unsigned long long tc_t_a_ = (unsigned long long)(a);                                      \
        unsigned long long tc_t_b_ = (unsigned long long)(b);                                      \
        if (tc_t_a_ != tc_t_b_)                                                                    \
            tc_test_fail_at(__FILE__, __LINE__, "%s == %llu, expected %s == %llu", #a, tc_t_a_,    \
                            #b, tc_t_b_);                                                          \
    } while (0)

#define EXPECT_STR(a, b)                                                                           \
    do {                                                                                           \
        const char *tc_t_a_ = (a);                                                                 \
        const char *tc_t_b_ = (b);                                                                 \
        if (tc_t_a_ == NULL || tc_t_b_ == NULL || strcmp(tc_t_a_, tc_t_b_) != 0)                   \
            tc_test_fail_at(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", #a,               \
                            tc_t_a_ ? tc_t_a_ : "(null)", tc_t_b_ ? tc_t_b_ : "(null)");           \
    } while (0)

#define EXPECT_MEM(a, alen, b, blen)                                                               \
    do {                                                                                           \
        size_t tc_t_al_ = (alen), tc_t_bl_ = (blen);                                               \
        if (tc_t_al_ != tc_t_bl_ || memcmp((a), (b), tc_t_al_) != 0) {                             \
            tc_test_fail_at(__FILE__, __LINE__, "%s differs from %s", #a, #b);                     \
            tc_test_dump_hex("  got     ", (const uint8_t *)(a), tc_t_al_);                        \
            tc_test_dump_hex("  expected", (const uint8_t *)(b), tc_t_bl_);                        \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------- vectors */

#define TC_VEC_MAX_FIELDS 48

struct tc_vec_field {
    char key[48];
    char *value; /* heap */
};

struct tc_vec {
    FILE *f;
    const char *path;
    int line;
    int record_line;
    size_t nattr;
    struct tc_vec_field attr[TC_VEC_MAX_FIELDS];
    size_t nfield;
    struct tc_vec_field field[TC_VEC_MAX_FIELDS];
};

/* Opens tests/vectors/<rel>; a missing file fails the current test. */
bool tc_vec_open(struct tc_vec *v, const char *rel);
/* Reads the next record; false at end of file. */
bool tc_vec_next(struct tc_vec *v);
void tc_vec_close(struct tc_vec *v);
/* A field of the record, else an inherited [attribute], else NULL. */
const char *tc_vec_get(const struct tc_vec *v, const char *key);
/* Hex field into a heap buffer (caller frees); a missing or bad field fails
 * the test and returns NULL with *len = 0. Empty value gives a 1-byte buffer
 * and *len = 0. */
uint8_t *tc_vec_hex(const struct tc_vec *v, const char *key, size_t *len);
/* Whole file into a heap buffer (caller frees), NUL-terminated. */
uint8_t *tc_test_read_file(const char *path, size_t *len);

#endif
