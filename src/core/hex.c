/* Strict hex codec; the policy is documented in core.h and docs/cli.md. */
#include <trustchain/core.h>

static int hex_val(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool is_sep(char ch)
{
    return ch == ' ' || ch == '\t' || ch == ':' || ch == '\n' || ch == '\r';
}

tc_err tc_hex_decode(const char *s, size_t slen, unsigned flags, uint8_t *out, size_t out_size,
                     size_t *out_len)
{
    TC_ENSURE(s != NULL && out_len != NULL, TC_ERR_ARG);
    TC_ENSURE(out != NULL || out_size == 0, TC_ERR_ARG);
    size_t n = 0;
    size_t i = 0;
    *out_len = 0;
    while (i < slen) {
        if ((flags & TC_HEX_ALLOW_SEP) && is_sep(s[i])) {
            i++;
            continue;
        }
        int hi = hex_val(s[i]);
        if (hi < 0)
            return TC_FAIL(TC_ERR_FORMAT, "hex: character %zu ('%c') is not a hex digit", i + 1,
                           (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?');
        if (i + 1 >= slen)
            return TC_FAIL(TC_ERR_FORMAT,
                           "hex: odd number of digits (byte at character %zu is incomplete)",
                           i + 1);
        int lo = hex_val(s[i + 1]);
        if (lo < 0)
            return TC_FAIL(TC_ERR_FORMAT, "hex: character %zu ('%c') is not a hex digit%s", i + 2,
                           (s[i + 1] >= 0x20 && s[i + 1] < 0x7f) ? s[i + 1] : '?',
                           is_sep(s[i + 1]) ? " (separators only between whole bytes)" : "");
        if (n >= out_size)
            return TC_FAIL(TC_ERR_SPACE, "hex: more than %zu bytes", out_size);
        out[n++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    *out_len = n;
    return TC_OK;
}

tc_err tc_hex_encode(const uint8_t *p, size_t len, char *out, size_t out_size)
{
    static const char digits[] = "0123456789ABCDEF";
    TC_ENSURE(out != NULL && (p != NULL || len == 0), TC_ERR_ARG);
    TC_ENSURE_MSG(len < (SIZE_MAX - 1) / 2 && out_size >= 2 * len + 1, TC_ERR_SPACE,
                  "hex: %zu bytes need %zu characters of output", len, 2 * len + 1);
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * len] = '\0';
    return TC_OK;
}
