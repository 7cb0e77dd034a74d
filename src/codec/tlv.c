/*
 * BER-TLV as ISO/IEC 7816-4 §5.2.2 and GlobalPlatform
 * use it, with the encoding rules of ITU-T X.690 §8.1.
 *
 * What is accepted (docs/tlv.md has the table): tags of 1 to 4 bytes,
 * definite lengths in short form or long form with 1 to 4 length bytes,
 * including non-minimal long forms (81 05), which ISO/IEC 7816-4 does not
 * forbid and GlobalPlatform cards send. Rejected: a first tag byte 00,
 * a first subsequent tag byte 80, tags longer than 4 bytes, indefinite
 * length, more than 4 length bytes, values running past the input or the
 * enclosing data object, nesting deeper than TC_TLV_MAX_DEPTH.
 *
 * Errors name the byte (1-based) from the start of the buffer handed in.
 */
#include <stdio.h>
#include <string.h>

#include <trustchain/codec.h>

/* " inside 6F" or "" for messages. */
struct tlv_ctx {
    size_t base; /* offset of the cursor's data in the caller's buffer */
    char where[24];
};

/* Tag octets in hex, as they appear on the wire ("9F7F"). */
struct tag_str {
    char s[2 * TC_TLV_MAX_TAG_BYTES + 1];
};

static struct tag_str tag_hex(uint32_t tag, uint8_t tag_len)
{
    static const char digits[] = "0123456789ABCDEF";
    struct tag_str r;
    unsigned n = tag_len >= 1 && tag_len <= TC_TLV_MAX_TAG_BYTES ? tag_len : 4u;
    for (unsigned i = 0; i < 2 * n; i++)
        r.s[i] = digits[(tag >> (4u * (2 * n - 1u - i))) & 0xFu];
    r.s[2 * n] = '\0';
    return r;
}

static void ctx_init(struct tlv_ctx *x, size_t base, const struct tc_tlv *parent)
{
    x->base = base;
    x->where[0] = '\0';
    if (parent != NULL)
        (void)snprintf(x->where, sizeof x->where, " inside %s",
                       tag_hex(parent->tag, parent->tag_len).s);
}

/* Parse one data object at c's position; c moves only on success. */
static tc_err parse_one(struct tc_cursor *c, const struct tlv_ctx *x, struct tc_tlv *out)
{
    struct tc_cursor k = *c;
    size_t start = k.pos;
    size_t at = x->base + start + 1; /* 1-based byte number of the tag */
    struct tc_tlv t = {0};
    uint8_t b = 0;

    /* Tag (X.690 §8.1.2). */
    if (tc_cursor_u8(&k, &b) != TC_OK)
        return TC_FAIL(TC_ERR_TRUNCATED, "byte %zu: input ends where a tag was expected%s", at,
                       x->where);
    /* ISO/IEC 7816-4 §5.2.2.1: 00 is not a valid first tag byte (it may
     * only pad between data objects, which this codec does not accept). */
    if (b == 0x00)
        return TC_FAIL(TC_ERR_FORMAT,
                       "byte %zu: 00 is not a valid first tag byte (padding between data objects "
                       "is not accepted)%s",
                       at, x->where);
    t.tag = b;
    t.tag_len = 1;
    t.constructed = (b & 0x20u) != 0; /* X.690 §8.1.2.5: b6 */
    if ((b & 0x1Fu) == 0x1Fu) {
        /* X.690 §8.1.2.4: subsequent bytes, b8 set on all but the last. */
        for (;;) {
            if (t.tag_len == TC_TLV_MAX_TAG_BYTES)
                return TC_FAIL(TC_ERR_FORMAT,
                               "byte %zu: tag starting at byte %zu is longer than 4 bytes%s",
                               at + 4, at, x->where);
            if (tc_cursor_u8(&k, &b) != TC_OK)
                return TC_FAIL(TC_ERR_TRUNCATED,
                               "byte %zu: input ends inside the tag starting at byte %zu%s",
                               at + t.tag_len, at, x->where);
            /* X.690 §8.1.2.4.2 c: bits 7-1 of the first subsequent
             * octet shall not all be zero. */
            if (t.tag_len == 1 && b == 0x80)
                return TC_FAIL(TC_ERR_FORMAT,
                               "byte %zu: first subsequent tag byte is 80 (X.690 §8.1.2.4.2 c)%s",
                               at + 1, x->where);
            t.tag = t.tag << 8 | b;
            t.tag_len++;
            if ((b & 0x80u) == 0)
                break;
        }
    }

    /* Length (X.690 §8.1.3, ISO/IEC 7816-4 §5.2.2.2). */
    size_t lat = x->base + k.pos + 1;
    const struct tag_str th = tag_hex(t.tag, t.tag_len);
    if (tc_cursor_u8(&k, &b) != TC_OK)
        return TC_FAIL(TC_ERR_TRUNCATED, "byte %zu: input ends before the length of tag %s%s", lat,
                       th.s, x->where);
    size_t len = 0;
    if (b < 0x80u) {
        len = b;
    } else if (b == 0x80u) {
        return TC_FAIL(TC_ERR_FORMAT,
                       "byte %zu: indefinite length (80) of tag %s is not allowed (ISO/IEC "
                       "7816-4 §5.2.2.2)%s",
                       lat, th.s, x->where);
    } else {
        unsigned n = b & 0x7Fu;
        if (n > TC_TLV_MAX_LEN_BYTES)
            return TC_FAIL(TC_ERR_FORMAT,
                           "byte %zu: length field %02X of tag %s announces %u length bytes, at "
                           "most 4 are allowed%s",
                           lat, b, th.s, n, x->where);
        if (tc_cursor_remaining(&k) < n)
            return TC_FAIL(TC_ERR_TRUNCATED,
                           "byte %zu: length field %02X of tag %s needs %u more byte(s) but "
                           "only %zu remain%s",
                           lat, b, th.s, n, tc_cursor_remaining(&k), x->where);
        uint64_t v = 0;
        for (unsigned i = 0; i < n; i++) {
            TC_GUARD(tc_cursor_u8(&k, &b));
            v = v << 8 | b;
        }
        if (v > SIZE_MAX)
            return TC_FAIL(TC_ERR_RANGE, "byte %zu: length %llu does not fit in memory%s", lat,
                           (unsigned long long)v, x->where);
        len = (size_t)v;
    }
    t.header_len = k.pos - start;
    if (tc_cursor_remaining(&k) < len)
        return TC_FAIL(TC_ERR_TRUNCATED,
                       "byte %zu: tag %s has a value of %zu byte(s) but only %zu remain%s",
                       x->base + k.pos + 1, th.s, len, tc_cursor_remaining(&k), x->where);
    TC_GUARD(tc_cursor_view(&k, len, &t.value));
    t.len = len;
    *c = k;
    *out = t;
    return TC_OK;
}

tc_err tc_tlv_next(struct tc_cursor *c, struct tc_tlv *out)
{
    TC_ENSURE(c != NULL && out != NULL, TC_ERR_ARG);
    struct tlv_ctx x;
    ctx_init(&x, 0, NULL);
    return parse_one(c, &x, out);
}

/* One level: every data object well formed, constructed ones recursively;
 * `depth` is the level of the objects in p (1 at the top). */
static tc_err validate_level(const uint8_t *p, size_t len, size_t base, const struct tc_tlv *parent,
                             unsigned depth)
{
    struct tlv_ctx x;
    ctx_init(&x, base, parent);
    struct tc_cursor c;
    tc_cursor_init(&c, p, len);
    while (tc_cursor_remaining(&c) > 0) {
        size_t at = c.pos;
        struct tc_tlv t;
        TC_GUARD(parse_one(&c, &x, &t));
        if (!t.constructed || t.len == 0)
            continue;
        if (depth >= TC_TLV_MAX_DEPTH)
            return TC_FAIL(TC_ERR_RANGE,
                           "byte %zu: tag %s at level %u holds data objects nested deeper than "
                           "%u levels",
                           base + at + 1, tag_hex(t.tag, t.tag_len).s, depth, TC_TLV_MAX_DEPTH);
        TC_GUARD(validate_level(t.value, t.len, base + at + t.header_len, &t, depth + 1));
    }
    return TC_OK;
}

tc_err tc_tlv_validate(const uint8_t *p, size_t len)
{
    TC_ENSURE(p != NULL || len == 0, TC_ERR_ARG);
    return validate_level(p, len, 0, NULL, 1);
}

/* The first `tag` in one level; every object of the level must parse. */
static tc_err find_level(const uint8_t *p, size_t len, size_t base, const struct tc_tlv *parent,
                         uint32_t tag, struct tc_tlv *out)
{
    struct tlv_ctx x;
    ctx_init(&x, base, parent);
    struct tc_cursor c;
    tc_cursor_init(&c, p, len);
    bool found = false;
    while (tc_cursor_remaining(&c) > 0) {
        struct tc_tlv t;
        TC_GUARD(parse_one(&c, &x, &t));
        if (!found && t.tag == tag) {
            *out = t;
            found = true;
        }
    }
    if (!found)
        return TC_FAIL(TC_ERR_NOT_FOUND, "tag %02lX not found%s", (unsigned long)tag, x.where);
    return TC_OK;
}

tc_err tc_tlv_find(const uint8_t *p, size_t len, uint32_t tag, struct tc_tlv *out)
{
    TC_ENSURE(out != NULL && (p != NULL || len == 0), TC_ERR_ARG);
    struct tc_tlv t = {0};
    TC_GUARD(find_level(p, len, 0, NULL, tag, &t));
    *out = t;
    return TC_OK;
}

tc_err tc_tlv_find_path(const uint8_t *p, size_t len, const uint32_t *path, size_t depth,
                        struct tc_tlv *out)
{
    TC_ENSURE(out != NULL && path != NULL && (p != NULL || len == 0), TC_ERR_ARG);
    TC_ENSURE_MSG(depth >= 1 && depth <= TC_TLV_MAX_DEPTH, TC_ERR_ARG,
                  "a tag path has 1 to %u tags, got %zu", TC_TLV_MAX_DEPTH, depth);
    const uint8_t *cur = p;
    size_t cur_len = len;
    size_t base = 0;
    struct tc_tlv t = {0};
    for (size_t i = 0; i < depth; i++) {
        const struct tc_tlv *parent = i > 0 ? &t : NULL;
        struct tc_tlv next = {0};
        TC_GUARD(find_level(cur, cur_len, base, parent, path[i], &next));
        if (i + 1 < depth && !next.constructed)
            return TC_FAIL(TC_ERR_FORMAT,
                           "byte %zu: tag %s on the path is primitive, so it holds no tag %02lX",
                           base + (size_t)(next.value - cur) - next.header_len + 1,
                           tag_hex(next.tag, next.tag_len).s, (unsigned long)path[i + 1]);
        base += (size_t)(next.value - cur);
        t = next;
        cur = t.value;
        cur_len = t.len;
    }
    *out = t;
    return TC_OK;
}

/* ------------------------------------------------------------------ encoder */

static void buf_fail(struct tc_buf *b, tc_err code, const char *msg, unsigned long v)
{
    if (b->status == TC_OK)
        b->status = TC_FAIL(code, "%s (%lX)", msg, v);
}

/* Number of bytes of a well-formed tag as stored in tc_tlv.tag, else 0. */
static unsigned tag_size(uint32_t tag)
{
    unsigned n = tag > 0xFFFFFFu ? 4u : tag > 0xFFFFu ? 3u : tag > 0xFFu ? 2u : 1u;
    uint8_t o[4];
    for (unsigned i = 0; i < n; i++)
        o[i] = (uint8_t)(tag >> (8u * (n - 1u - i)));
    if (o[0] == 0x00)
        return 0;
    if (n == 1)
        return (o[0] & 0x1Fu) == 0x1Fu ? 0 : 1;
    if ((o[0] & 0x1Fu) != 0x1Fu || o[1] == 0x80)
        return 0;
    for (unsigned i = 1; i + 1 < n; i++)
        if ((o[i] & 0x80u) == 0)
            return 0;
    return (o[n - 1] & 0x80u) == 0 ? n : 0;
}

void tc_tlv_put_tag(struct tc_buf *b, uint32_t tag)
{
    unsigned n = tag_size(tag);
    if (n == 0) {
        buf_fail(b, TC_ERR_ARG, "not a well-formed BER-TLV tag", (unsigned long)tag);
        return;
    }
    for (unsigned i = 0; i < n; i++)
        tc_buf_put_u8(b, (uint8_t)(tag >> (8u * (n - 1u - i))));
}

/* Bytes of the minimal length field for len: 1 (short form) to 5. */
static unsigned len_size(size_t len)
{
    uint64_t v = len;
    if (v < 0x80u)
        return 1;
    unsigned n = 1;
    while (v > 0) {
        n++;
        v >>= 8;
    }
    return n;
}

static void write_len(uint8_t *dst, size_t len, unsigned n)
{
    if (n == 1) {
        dst[0] = (uint8_t)len;
        return;
    }
    dst[0] = (uint8_t)(0x80u | (n - 1u));
    for (unsigned i = 1; i < n; i++)
        dst[i] = (uint8_t)((uint64_t)len >> (8u * (n - 1u - i)));
}

void tc_tlv_put_len(struct tc_buf *b, size_t len)
{
    unsigned n = len_size(len);
    if (n > 1 + TC_TLV_MAX_LEN_BYTES) {
        buf_fail(b, TC_ERR_RANGE, "length needs more than 4 length bytes", (unsigned long)len);
        return;
    }
    uint8_t *dst = tc_buf_reserve(b, n);
    if (dst != NULL)
        write_len(dst, len, n);
}

void tc_tlv_put(struct tc_buf *b, uint32_t tag, const void *value, size_t len)
{
    if (len > 0 && value == NULL) {
        buf_fail(b, TC_ERR_ARG, "value of a data object is NULL", (unsigned long)tag);
        return;
    }
    tc_tlv_put_tag(b, tag);
    tc_tlv_put_len(b, len);
    tc_buf_put(b, value, len);
}

size_t tc_tlv_begin(struct tc_buf *b, uint32_t tag)
{
    tc_tlv_put_tag(b, tag);
    size_t mark = b->len;
    tc_buf_put_u8(b, 0); /* one length byte for now; tc_tlv_end widens it */
    return mark;
}

void tc_tlv_end(struct tc_buf *b, size_t mark)
{
    if (b->status != TC_OK)
        return;
    if (mark >= b->len) {
        buf_fail(b, TC_ERR_ARG, "tc_tlv_end: mark is past the end of the buffer",
                 (unsigned long)mark);
        return;
    }
    size_t content = b->len - mark - 1;
    unsigned n = len_size(content);
    if (n > 1 + TC_TLV_MAX_LEN_BYTES) {
        buf_fail(b, TC_ERR_RANGE, "length needs more than 4 length bytes", (unsigned long)content);
        return;
    }
    if (n > 1) {
        /* Widen the length field: move the content up by n-1 bytes. */
        if (tc_buf_reserve(b, n - 1) == NULL)
            return;
        memmove(b->data + mark + n, b->data + mark + 1, content);
    }
    write_len(b->data + mark, content, n);
}
