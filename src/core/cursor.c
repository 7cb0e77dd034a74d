/*
 * The bounded cursor: the only way untrusted bytes are read. Each read checks
 * the remaining length first; a failed read leaves the position unchanged.
 */
#include <string.h>

#include <trustchain/core.h>

void tc_cursor_init(struct tc_cursor *c, const uint8_t *data, size_t len)
{
    c->data = data;
    c->len = data ? len : 0;
    c->pos = 0;
}

size_t tc_cursor_remaining(const struct tc_cursor *c)
{
    return c->len - c->pos;
}

static tc_err need(const struct tc_cursor *c, size_t n)
{
    if (n > c->len - c->pos)
        return TC_FAIL(TC_ERR_TRUNCATED, "need %zu byte(s) at offset %zu but only %zu remain", n,
                       c->pos, c->len - c->pos);
    return TC_OK;
}

tc_err tc_cursor_u8(struct tc_cursor *c, uint8_t *v)
{
    TC_GUARD(need(c, 1));
    *v = c->data[c->pos];
    c->pos += 1;
    return TC_OK;
}

tc_err tc_cursor_u16be(struct tc_cursor *c, uint16_t *v)
{
    TC_GUARD(need(c, 2));
    const uint8_t *p = c->data + c->pos;
    *v = (uint16_t)((unsigned)p[0] << 8 | p[1]);
    c->pos += 2;
    return TC_OK;
}

tc_err tc_cursor_u24be(struct tc_cursor *c, uint32_t *v)
{
    TC_GUARD(need(c, 3));
    const uint8_t *p = c->data + c->pos;
    *v = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    c->pos += 3;
    return TC_OK;
}

tc_err tc_cursor_u32be(struct tc_cursor *c, uint32_t *v)
{
    TC_GUARD(need(c, 4));
    const uint8_t *p = c->data + c->pos;
    *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    c->pos += 4;
    return TC_OK;
}

tc_err tc_cursor_copy(struct tc_cursor *c, void *out, size_t n)
{
    TC_GUARD(need(c, n));
    if (n > 0)
        memcpy(out, c->data + c->pos, n);
    c->pos += n;
    return TC_OK;
}

tc_err tc_cursor_view(struct tc_cursor *c, size_t n, const uint8_t **out)
{
    TC_GUARD(need(c, n));
    *out = c->data + c->pos;
    c->pos += n;
    return TC_OK;
}

tc_err tc_cursor_sub(struct tc_cursor *c, size_t n, struct tc_cursor *sub)
{
    TC_GUARD(need(c, n));
    tc_cursor_init(sub, c->data + c->pos, n);
    c->pos += n;
    return TC_OK;
}

tc_err tc_cursor_skip(struct tc_cursor *c, size_t n)
{
    TC_GUARD(need(c, n));
    c->pos += n;
    return TC_OK;
}

tc_err tc_cursor_peek(const struct tc_cursor *c, uint8_t *v)
{
    TC_GUARD(need(c, 1));
    *v = c->data[c->pos];
    return TC_OK;
}

tc_err tc_cursor_expect_end(const struct tc_cursor *c)
{
    if (c->pos != c->len)
        return TC_FAIL(TC_ERR_FORMAT, "%zu unexpected trailing byte(s) at offset %zu",
                       c->len - c->pos, c->pos);
    return TC_OK;
}
