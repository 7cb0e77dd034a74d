/*
 * trustchain core: status codes with a recorded cause, guard macros, the
 * bounded cursor through which every untrusted byte passes, the capped buffer
 * writer, strict hex, secret hygiene and logging.
 *
 * Must never: allocate on a path the card side uses (cursor, fixed buffers,
 * hex, secret helpers are allocation-free), or print secret material.
 */
#ifndef TRUSTCHAIN_CORE_H
#define TRUSTCHAIN_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TC_MUST_CHECK   __attribute__((warn_unused_result))
#define TC_PRINTF(f, a) __attribute__((format(printf, f, a)))
/* An intended fall-through between switch labels (GCC and clang). */
#define TC_FALLTHROUGH __attribute__((fallthrough))

/* ------------------------------------------------------------------ status */

typedef enum tc_err {
    TC_OK = 0,
    TC_ERR_INTERNAL,    /* a bug: an invariant did not hold */
    TC_ERR_ARG,         /* caller passed something out of contract */
    TC_ERR_NOMEM,       /* allocation failed or a cap was reached */
    TC_ERR_TRUNCATED,   /* input ended before a complete item */
    TC_ERR_FORMAT,      /* input is malformed */
    TC_ERR_RANGE,       /* a value is outside what is allowed */
    TC_ERR_SPACE,       /* output buffer too small */
    TC_ERR_CRYPTO,      /* the crypto library failed */
    TC_ERR_VERIFY,      /* a MAC, cryptogram, signature or KCV did not match */
    TC_ERR_STATE,       /* operation not allowed in the current state */
    TC_ERR_NOT_FOUND,   /* a looked-up item does not exist */
    TC_ERR_UNSUPPORTED, /* valid but not implemented/allowed here */
    TC_ERR_IO,          /* file, socket or device I/O failed */
    TC_ERR_CARD,        /* the card answered with an error status word */
    TC_ERR_HSM,         /* the PKCS#11 module failed */
    TC_ERR_DB,          /* the database failed */
    TC_ERR_AUTH,        /* authentication refused (PIN, keys) */
    TC_ERR_COUNT_
} tc_err;

/* A short name for a status ("truncated input"). Never NULL. */
const char *tc_err_name(tc_err e);

/*
 * The last failure on this thread: which status, where (file:line) and why.
 * tc_fail() records it and returns the code so it can be returned directly.
 * Guard macros that merely propagate a status never record, so what stays
 * recorded is the deepest cause. A caller that adds context calls tc_fail()
 * again with a message that includes tc_error_last()->msg.
 */
struct tc_error {
    tc_err code;
    const char *file;
    int line;
    char msg[256];
};

tc_err tc_fail(tc_err code, const char *file, int line, const char *fmt, ...) TC_PRINTF(4, 5);
tc_err tc_failv(tc_err code, const char *file, int line, const char *fmt, va_list ap)
    TC_PRINTF(4, 0);
const struct tc_error *tc_error_last(void);
void tc_error_clear(void);
/* One human sentence: "<msg> (<name>, file:line)"; writes a NUL-terminated
 * string, truncating if needed. */
void tc_error_format(char *out, size_t out_size);

/* Evaluates to `code` itself (not tc_fail's return value), so that the
 * compiler knows a failing path never yields TC_OK. `code` must be free of
 * side effects. */
#define TC_FAIL(code, ...) ((void)tc_fail((code), __FILE__, __LINE__, __VA_ARGS__), (tc_err)(code))

/* Return on failure (functions with nothing to clean up). */
#define TC_ENSURE(cond, code)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return TC_FAIL((code), "check failed: %s", #cond);                                     \
    } while (0)
#define TC_ENSURE_MSG(cond, code, ...)                                                             \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return TC_FAIL((code), __VA_ARGS__);                                                   \
    } while (0)
#define TC_GUARD(call)                                                                             \
    do {                                                                                           \
        tc_err tc_guard_rc_ = (call);                                                              \
        if (tc_guard_rc_ != TC_OK)                                                                 \
            return tc_guard_rc_;                                                                   \
    } while (0)
/* OpenSSL convention: 1 is success. */
#define TC_GUARD_OSSL(call)                                                                        \
    do {                                                                                           \
        if ((call) != 1)                                                                           \
            return tc_fail_ossl(__FILE__, __LINE__, #call);                                        \
    } while (0)

/* Jump to the function's single exit label `out` with `ret` set (functions
 * that free or wipe). The function declares `tc_err ret = TC_ERR_INTERNAL;`. */
#define TC_TRY(call)                                                                               \
    do {                                                                                           \
        if ((ret = (call)) != TC_OK)                                                               \
            goto out;                                                                              \
    } while (0)
#define TC_CHECK(cond, code)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ret = TC_FAIL((code), "check failed: %s", #cond);                                      \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
#define TC_CHECK_MSG(cond, code, ...)                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ret = TC_FAIL((code), __VA_ARGS__);                                                    \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)
#define TC_TRY_OSSL(call)                                                                          \
    do {                                                                                           \
        if ((call) != 1) {                                                                         \
            ret = tc_fail_ossl(__FILE__, __LINE__, #call);                                         \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* Records TC_ERR_CRYPTO with OpenSSL's error queue text; drains the queue. */
tc_err tc_fail_ossl(const char *file, int line, const char *what);

#define TC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ cursor */

/*
 * A read-only view over untrusted bytes. Every read checks what remains; a
 * failed read returns TC_ERR_TRUNCATED and leaves the position unchanged.
 */
struct tc_cursor {
    const uint8_t *data;
    size_t len;
    size_t pos;
};

void tc_cursor_init(struct tc_cursor *c, const uint8_t *data, size_t len);
size_t tc_cursor_remaining(const struct tc_cursor *c);
TC_MUST_CHECK tc_err tc_cursor_u8(struct tc_cursor *c, uint8_t *v);
TC_MUST_CHECK tc_err tc_cursor_u16be(struct tc_cursor *c, uint16_t *v);
TC_MUST_CHECK tc_err tc_cursor_u24be(struct tc_cursor *c, uint32_t *v);
TC_MUST_CHECK tc_err tc_cursor_u32be(struct tc_cursor *c, uint32_t *v);
/* Copy n bytes out. */
TC_MUST_CHECK tc_err tc_cursor_copy(struct tc_cursor *c, void *out, size_t n);
/* Borrow a pointer to the next n bytes (valid while the data lives). */
TC_MUST_CHECK tc_err tc_cursor_view(struct tc_cursor *c, size_t n, const uint8_t **out);
/* Split off the next n bytes as their own cursor. */
TC_MUST_CHECK tc_err tc_cursor_sub(struct tc_cursor *c, size_t n, struct tc_cursor *sub);
TC_MUST_CHECK tc_err tc_cursor_skip(struct tc_cursor *c, size_t n);
/* Look at the next byte without consuming it. */
TC_MUST_CHECK tc_err tc_cursor_peek(const struct tc_cursor *c, uint8_t *v);
/* TC_ERR_FORMAT unless everything was consumed. */
TC_MUST_CHECK tc_err tc_cursor_expect_end(const struct tc_cursor *c);

/* ------------------------------------------------------------------ buffer */

/*
 * An append-only writer with a declared cap. Fixed mode writes into caller
 * memory and never allocates (card side). Heap mode grows up to `max`.
 * Errors are sticky: after one failed put every later put fails too, and
 * tc_buf_status() reports the first failure (BearSSL style).
 */
struct tc_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max;
    tc_err status;
    bool heap;
};

void tc_buf_init_fixed(struct tc_buf *b, uint8_t *mem, size_t size);
void tc_buf_init_heap(struct tc_buf *b, size_t max);
/* Wipes the contents (they may be secret), frees heap memory; NULL is fine. */
void tc_buf_free(struct tc_buf *b);
void tc_buf_reset(struct tc_buf *b);
void tc_buf_put_u8(struct tc_buf *b, uint8_t v);
void tc_buf_put_u16be(struct tc_buf *b, uint16_t v);
void tc_buf_put_u32be(struct tc_buf *b, uint32_t v);
void tc_buf_put(struct tc_buf *b, const void *p, size_t n);
/* Reserve n bytes and return a pointer to them (NULL after failure; for
 * n == 0, NULL when nothing is allocated yet, without an error). */
uint8_t *tc_buf_reserve(struct tc_buf *b, size_t n);
TC_MUST_CHECK tc_err tc_buf_status(const struct tc_buf *b);

/* ------------------------------------------------------------------ hex */

/*
 * Hex policy. Strict (flags 0): an even number of hex digits, either case,
 * nothing else. TC_HEX_ALLOW_SEP additionally accepts spaces, tabs, colons
 * and newlines between whole bytes (as traces are pasted), never inside a
 * byte. Errors name the offending character position.
 */
#define TC_HEX_ALLOW_SEP 0x1u

TC_MUST_CHECK tc_err tc_hex_decode(const char *s, size_t slen, unsigned flags, uint8_t *out,
                                   size_t out_size, size_t *out_len);
/* Upper-case hex, NUL-terminated; out_size must be at least 2*len+1. */
TC_MUST_CHECK tc_err tc_hex_encode(const uint8_t *p, size_t len, char *out, size_t out_size);

/* ------------------------------------------------------------------ secrets */

/* Wipe memory in a way the compiler cannot elide (OPENSSL_cleanse). */
void tc_memzero(void *p, size_t n);
/* Constant-time equality of two n-byte regions: true if equal. */
bool tc_ct_equal(const void *a, const void *b, size_t n);

/* ------------------------------------------------------------------ numbers */

/* Parse an unsigned integer in decimal or 0x hex; whole string, <= max. */
TC_MUST_CHECK tc_err tc_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* ------------------------------------------------------------------ logging */

enum tc_log_level {
    TC_LOG_ERROR = 0,
    TC_LOG_WARN = 1,
    TC_LOG_INFO = 2,
    TC_LOG_DEBUG = 3,
    TC_LOG_TRACE = 4
};

/* Level from TRUSTCHAIN_LOG (error|warn|info|debug|trace) unless set. */
void tc_log_set_level(enum tc_log_level level);
enum tc_log_level tc_log_get_level(void);
bool tc_log_enabled(enum tc_log_level level);
void tc_log(enum tc_log_level level, const char *fmt, ...) TC_PRINTF(2, 3);

#define TC_LOG_ERR(...)     tc_log(TC_LOG_ERROR, __VA_ARGS__)
#define TC_LOG_WARNING(...) tc_log(TC_LOG_WARN, __VA_ARGS__)
#define TC_LOG_INF(...)     tc_log(TC_LOG_INFO, __VA_ARGS__)
#define TC_LOG_DBG(...)     tc_log(TC_LOG_DEBUG, __VA_ARGS__)

const char *tc_version(void);

#endif
