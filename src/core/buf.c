/*
 * The capped buffer writer. Fixed buffers never allocate (card side); heap
 * buffers grow geometrically up to their declared cap. Errors are sticky.
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/core.h>

void tc_buf_init_fixed(struct tc_buf *b, uint8_t *mem, size_t size)
{
    b->data = mem;
    b->len = 0;
    b->cap = mem ? size : 0;
    b->max = b->cap;
    b->status = TC_OK;
    b->heap = false;
}

void tc_buf_init_heap(struct tc_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->status = TC_OK;
    b->heap = true;
}

void tc_buf_free(struct tc_buf *b)
{
    if (b == NULL)
        return;
    if (b->data != NULL)
        tc_memzero(b->data, b->cap);
    if (b->heap)
        free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void tc_buf_reset(struct tc_buf *b)
{
    if (b->data != NULL)
        tc_memzero(b->data, b->len);
    b->len = 0;
    b->status = TC_OK;
}

static bool grow(struct tc_buf *b, size_t n)
{
    if (b->status != TC_OK)
        return false;
    if (n <= b->cap - b->len)
        return true;
    if (!b->heap || n > b->max - b->len) {
        b->status =
            TC_FAIL(b->heap ? TC_ERR_NOMEM : TC_ERR_SPACE,
                    "buffer cap of %zu bytes reached (have %zu, adding %zu)", b->max, b->len, n);
        return false;
    }
    size_t want = b->cap ? b->cap : 64;
    while (want - b->len < n)
        want = (want > b->max / 2) ? b->max : want * 2;
    uint8_t *p = malloc(want);
    if (p == NULL) {
        b->status = TC_FAIL(TC_ERR_NOMEM, "cannot allocate %zu bytes", want);
        return false;
    }
    /* Copy and wipe rather than realloc: the old block may hold secrets. */
    if (b->len > 0)
        memcpy(p, b->data, b->len);
    if (b->data != NULL) {
        tc_memzero(b->data, b->cap);
        free(b->data);
    }
    b->data = p;
    b->cap = want;
    return true;
}

uint8_t *tc_buf_reserve(struct tc_buf *b, size_t n)
{
    /* Nothing to reserve: no pointer arithmetic on a buffer that may not
     * have memory yet; the status is untouched. */
    if (n == 0)
        return (b->status == TC_OK && b->data != NULL) ? b->data + b->len : NULL;
    if (!grow(b, n))
        return NULL;
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

void tc_buf_put(struct tc_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    uint8_t *dst = tc_buf_reserve(b, n);
    if (dst != NULL && n > 0)
        memcpy(dst, p, n);
}

void tc_buf_put_u8(struct tc_buf *b, uint8_t v)
{
    tc_buf_put(b, &v, 1);
}

void tc_buf_put_u16be(struct tc_buf *b, uint16_t v)
{
    uint8_t t[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    tc_buf_put(b, t, sizeof t);
}

void tc_buf_put_u32be(struct tc_buf *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    tc_buf_put(b, t, sizeof t);
}

tc_err tc_buf_status(const struct tc_buf *b)
{
    return b->status;
}
