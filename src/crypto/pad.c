/* ISO/IEC 9797-1 padding method 2 (GP Amendment D §6.2.6 uses it for C-DEC). */
#include <string.h>

#include <trustchain/crypto.h>

tc_err tc_pad_m2(uint8_t *buf, size_t len, size_t cap, size_t *out_len)
{
    TC_ENSURE(buf != NULL && out_len != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(len <= cap, TC_ERR_ARG, "data length %zu exceeds buffer capacity %zu", len, cap);
    /* ISO/IEC 9797-1 §6.1.2 method 2: add one 0x80 byte, then as few 0x00
     * bytes as make the length a multiple of the block size. */
    size_t padded = (len / TC_AES_BLOCK + 1) * TC_AES_BLOCK;
    TC_ENSURE_MSG(padded > len && padded <= cap, TC_ERR_SPACE,
                  "padding %zu bytes needs %zu bytes of space, have %zu", len, padded, cap);
    buf[len] = 0x80;
    memset(buf + len + 1, 0, padded - len - 1);
    *out_len = padded;
    return TC_OK;
}

tc_err tc_unpad_m2(const uint8_t *buf, size_t len, size_t *out_len)
{
    TC_ENSURE(out_len != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(len > 0 && len % TC_AES_BLOCK == 0, TC_ERR_FORMAT,
                  "padded data must be a non-zero multiple of 16 bytes (got %zu)", len);
    TC_ENSURE(buf != NULL, TC_ERR_ARG);
    /* The marker is the last non-zero byte and lies in the last block:
     * method 2 never adds a whole block of padding beyond one. */
    size_t i = len;
    const size_t floor = len - TC_AES_BLOCK;
    while (i > floor && buf[i - 1] == 0x00)
        i--;
    TC_ENSURE_MSG(i > floor && buf[i - 1] == 0x80, TC_ERR_FORMAT,
                  "ISO/IEC 9797-1 method 2 padding is malformed");
    *out_len = i - 1;
    return TC_OK;
}
