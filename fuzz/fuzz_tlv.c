/*
 * libFuzzer target for BER-TLV: validate, walk every object with the
 * cursor, look up the tag path through the first object of each level, and
 * re-encode each primitive object (its tag, its length when the input used
 * the minimal form, and its value must come back byte for byte).
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/codec.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t scratch[1u << 17];

/* The minimal length field for len has this many bytes. */
static size_t min_len_bytes(size_t len)
{
    return len < 0x80 ? 1 : len <= 0xFF ? 2 : len <= 0xFFFF ? 3 : len <= 0xFFFFFF ? 4 : 5;
}

static void check_primitive(const struct tc_tlv *t)
{
    if (t->len + 8 > sizeof scratch)
        return;
    struct tc_buf b;
    tc_buf_init_fixed(&b, scratch, sizeof scratch);
    tc_tlv_put(&b, t->tag, t->value, t->len);
    if (tc_buf_status(&b) != TC_OK)
        abort();
    const uint8_t *orig = t->value - t->header_len;
    size_t enc_hdr = t->tag_len + min_len_bytes(t->len);
    if (b.len != enc_hdr + t->len || memcmp(b.data, orig, t->tag_len) != 0 ||
        (t->len > 0 && memcmp(b.data + enc_hdr, t->value, t->len) != 0))
        abort();
    if (t->header_len == enc_hdr && memcmp(b.data, orig, b.len) != 0)
        abort();
}

/* Walk a validated level: every read succeeds, depth stays bounded. */
static void walk(const uint8_t *p, size_t len, unsigned depth)
{
    struct tc_cursor c;
    tc_cursor_init(&c, p, len);
    while (tc_cursor_remaining(&c) > 0) {
        struct tc_tlv t;
        if (tc_tlv_next(&c, &t) != TC_OK || depth > TC_TLV_MAX_DEPTH)
            abort();
        if (t.constructed)
            walk(t.value, t.len, depth + 1);
        else
            check_primitive(&t);
    }
}

/* The path through the first object of each level. */
static size_t first_path(const uint8_t *p, size_t len, uint32_t *path)
{
    size_t n = 0;
    while (len > 0 && n < TC_TLV_MAX_DEPTH) {
        struct tc_cursor c;
        struct tc_tlv t;
        tc_cursor_init(&c, p, len);
        if (tc_tlv_next(&c, &t) != TC_OK)
            abort();
        path[n++] = t.tag;
        if (!t.constructed)
            break;
        p = t.value;
        len = t.len;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (tc_tlv_validate(data, size) != TC_OK) {
        /* A failed parse must leave the cursor where it was. */
        struct tc_cursor c;
        tc_cursor_init(&c, data, size);
        struct tc_tlv t;
        while (tc_cursor_remaining(&c) > 0) {
            size_t pos = c.pos;
            if (tc_tlv_next(&c, &t) != TC_OK) {
                if (c.pos != pos)
                    abort();
                break;
            }
        }
        return 0;
    }
    walk(data, size, 1);
    uint32_t path[TC_TLV_MAX_DEPTH];
    size_t plen = first_path(data, size, path);
    if (plen > 0) {
        struct tc_tlv t;
        if (tc_tlv_find_path(data, size, path, plen, &t) != TC_OK || t.tag != path[plen - 1])
            abort();
        if (tc_tlv_find(data, size, path[0], &t) != TC_OK)
            abort();
        /* Rebuilding the first object with begin/end reproduces it when
         * its length field is minimal. */
        struct tc_tlv top;
        struct tc_cursor c;
        tc_cursor_init(&c, data, size);
        if (tc_tlv_next(&c, &top) != TC_OK)
            abort();
        if (top.constructed && top.len + 8 <= sizeof scratch &&
            top.header_len == top.tag_len + min_len_bytes(top.len)) {
            struct tc_buf b;
            tc_buf_init_fixed(&b, scratch, sizeof scratch);
            size_t m = tc_tlv_begin(&b, top.tag);
            tc_buf_put(&b, top.value, top.len);
            tc_tlv_end(&b, m);
            if (tc_buf_status(&b) != TC_OK || b.len != top.header_len + top.len ||
                memcmp(b.data, data, b.len) != 0)
                abort();
        }
    }
    return 0;
}
