/*
 * Status names and the per-thread record of the last failure (s2n style):
 * the code that failed, where, and one human sentence.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include <trustchain/core.h>

static _Thread_local struct tc_error tc_last_error;

static const char *const tc_err_names[TC_ERR_COUNT_] = {
    [TC_OK] = "success",
    [TC_ERR_INTERNAL] = "internal error",
    [TC_ERR_ARG] = "invalid argument",
    [TC_ERR_NOMEM] = "out of memory or over a size cap",
    [TC_ERR_TRUNCATED] = "truncated input",
    [TC_ERR_FORMAT] = "malformed input",
    [TC_ERR_RANGE] = "value out of range",
    [TC_ERR_SPACE] = "output buffer too small",
    [TC_ERR_CRYPTO] = "cryptographic library failure",
    [TC_ERR_VERIFY] = "verification failed",
    [TC_ERR_STATE] = "not allowed in this state",
    [TC_ERR_NOT_FOUND] = "not found",
    [TC_ERR_UNSUPPORTED] = "not supported",
    [TC_ERR_IO] = "I/O error",
    [TC_ERR_CARD] = "card returned an error",
    [TC_ERR_HSM] = "HSM error",
    [TC_ERR_DB] = "database error",
    [TC_ERR_AUTH] = "authentication failed",
};

const char *tc_err_name(tc_err e)
{
    if ((unsigned)e >= TC_ERR_COUNT_ || tc_err_names[e] == NULL)
        return "unknown error";
    return tc_err_names[e];
}

tc_err tc_failv(tc_err code, const char *file, int line, const char *fmt, va_list ap)
{
    /* Format into a local first: callers that add context pass the previous
     * message (tc_error_last()->msg) as an argument. */
    char msg[sizeof tc_last_error.msg];
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        msg[0] = '\0';
    memcpy(tc_last_error.msg, msg, sizeof msg);
    tc_last_error.code = code;
    tc_last_error.file = file;
    tc_last_error.line = line;
    return code;
}

tc_err tc_fail(tc_err code, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tc_err rc = tc_failv(code, file, line, fmt, ap);
    va_end(ap);
    return rc;
}

tc_err tc_fail_ossl(const char *file, int line, const char *what)
{
    char detail[160] = "no detail from OpenSSL";
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, detail, sizeof detail);
    ERR_clear_error();
    return tc_fail(TC_ERR_CRYPTO, file, line, "%s failed: %s", what, detail);
}

const struct tc_error *tc_error_last(void)
{
    return &tc_last_error;
}

void tc_error_clear(void)
{
    memset(&tc_last_error, 0, sizeof tc_last_error);
}

void tc_error_format(char *out, size_t out_size)
{
    const struct tc_error *e = &tc_last_error;
    if (out == NULL || out_size == 0)
        return;
    if (e->code == TC_OK) {
        (void)snprintf(out, out_size, "no error");
        return;
    }
    const char *file = e->file ? e->file : "?";
    const char *base = strrchr(file, '/');
    /* Keep "module/file.c" so the location is meaningful but short. */
    if (base != NULL && base != file) {
        const char *p = base - 1;
        while (p > file && *p != '/')
            p--;
        file = (*p == '/') ? p + 1 : p;
    }
    if (e->msg[0] != '\0')
        (void)snprintf(out, out_size, "%s (%s, %s:%d)", e->msg, tc_err_name(e->code), file,
                       e->line);
    else
        (void)snprintf(out, out_size, "%s (%s:%d)", tc_err_name(e->code), file, e->line);
}
