/*
 * Base64 as RFC 4648 §4 defines it, strictly: signed notes and checkpoints
 * must have one encoding per value, so decoding refuses whitespace, missing
 * or surplus padding and non-zero unused bits.
 */
#include "audit/internal.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t tc_b64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

tc_err tc_b64_encode(const uint8_t *in, size_t n, char *out, size_t out_size, size_t *out_len)
{
    size_t need = tc_b64_encoded_len(n);
    TC_ENSURE_MSG(need < out_size, TC_ERR_SPACE, "base64 needs %zu bytes", need + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    *out_len = o;
    return TC_OK;
}

static int sym(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

tc_err tc_b64_decode(const char *in, size_t n, uint8_t *out, size_t out_size, size_t *out_len)
{
    TC_ENSURE_MSG(n % 4 == 0, TC_ERR_FORMAT, "base64 length %zu is not a multiple of 4", n);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int s[4];
        size_t pad = 0;
        for (size_t j = 0; j < 4; j++) {
            char c = in[i + j];
            if (c == '=' && last && j >= 2) {
                s[j] = 0;
                pad++;
                continue;
            }
            TC_ENSURE_MSG(pad == 0, TC_ERR_FORMAT, "base64 symbol after padding");
            s[j] = sym(c);
            TC_ENSURE_MSG(s[j] >= 0, TC_ERR_FORMAT, "invalid base64 character at %zu", i + j);
        }
        /* "==" must be the last two symbols; "x=y=" is refused above. */
        uint32_t v =
            (uint32_t)s[0] << 18 | (uint32_t)s[1] << 12 | (uint32_t)s[2] << 6 | (uint32_t)s[3];
        size_t bytes = 3 - pad;
        /* RFC 4648 §3.5: pad bits must be zero for a canonical encoding. */
        if (pad == 1)
            TC_ENSURE_MSG((v & 0xFFu) == 0, TC_ERR_FORMAT, "non-zero base64 pad bits");
        if (pad == 2)
            TC_ENSURE_MSG((v & 0xFFFFu) == 0, TC_ERR_FORMAT, "non-zero base64 pad bits");
        TC_ENSURE_MSG(o + bytes <= out_size, TC_ERR_SPACE, "base64 value too long");
        out[o++] = (uint8_t)(v >> 16);
        if (bytes > 1)
            out[o++] = (uint8_t)(v >> 8);
        if (bytes > 2)
            out[o++] = (uint8_t)v;
    }
    *out_len = o;
    return TC_OK;
}
