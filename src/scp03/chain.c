/*
 * ISO/IEC 7816-4 §5.3.3 command chaining, card side: the segments of one
 * logical command are collected in caller memory so that a command wrapped
 * once by the host is unwrapped once by the card.
 *
 * Must never: allocate, or join segments whose INS P1 P2 or channel differ.
 */
#include <string.h>

#include "scp03/internal.h"

/* Room in front of the data for CLA INS P1 P2 and an extended Lc. */
#define CHAIN_HDR 7u
/* Room behind it for an extended Le (00 Le1 Le2 without data). */
#define CHAIN_TAIL 3u

void tc_scp03_chain_init(struct tc_scp03_chain *ch, uint8_t *buf, size_t cap)
{
    if (ch == NULL)
        return;
    memset(ch, 0, sizeof *ch);
    ch->buf = buf;
    ch->cap = cap;
}

static void chain_reset(struct tc_scp03_chain *ch)
{
    ch->active = false;
    ch->data_len = 0;
    memset(ch->hdr, 0, sizeof ch->hdr);
}

tc_err tc_scp03_chain_feed(struct tc_scp03_chain *ch, const uint8_t *apdu, size_t len,
                           bool *complete, const uint8_t **out, size_t *out_len)
{
    struct tc_apdu a;
    struct tc_cla_info ci;
    TC_ENSURE(ch != NULL && ch->buf != NULL && complete != NULL && out != NULL && out_len != NULL,
              TC_ERR_ARG);
    *complete = false;
    *out = NULL;
    *out_len = 0;
    tc_err rc = tc_apdu_decode(apdu, len, &a);
    if (rc == TC_OK)
        rc = tc_cla_decode(a.cla, &ci);
    if (rc != TC_OK) {
        chain_reset(ch);
        return rc;
    }
    const uint8_t cla = (uint8_t)(a.cla & ~0x10u);
    if (!ch->active && !ci.chained) {
        *complete = true;
        *out = apdu;
        *out_len = len;
        return TC_OK;
    }
    if (ch->active &&
        (ch->hdr[0] != cla || ch->hdr[1] != a.ins || ch->hdr[2] != a.p1 || ch->hdr[3] != a.p2)) {
        chain_reset(ch);
        return TC_FAIL(TC_ERR_FORMAT, "chained command changed its header (ISO/IEC 7816-4 "
                                      "§5.3.3: one INS P1 P2 and channel per chain)");
    }
    if (!ch->active) {
        ch->hdr[0] = cla;
        ch->hdr[1] = a.ins;
        ch->hdr[2] = a.p1;
        ch->hdr[3] = a.p2;
        ch->active = true;
        ch->data_len = 0;
    }
    if (ch->cap < CHAIN_HDR + CHAIN_TAIL ||
        a.lc > ch->cap - CHAIN_HDR - CHAIN_TAIL - ch->data_len ||
        ch->data_len + a.lc > TC_APDU_MAX_EXT_LC) {
        chain_reset(ch);
        return TC_FAIL(TC_ERR_SPACE, "chained command exceeds %zu bytes", ch->cap);
    }
    if (a.lc > 0)
        memcpy(ch->buf + CHAIN_HDR + ch->data_len, a.data, a.lc);
    ch->data_len += a.lc;
    if (ci.chained)
        return TC_OK;

    /* The last segment: lay the logical command out in front of the data.
     * Extended form when the data or Le needs it. */
    const size_t n = ch->data_len;
    const bool ext = tc_scp03_need_extended(n, a.has_le, a.le) || a.extended;
    size_t start = 0;
    if (n == 0) {
        start = CHAIN_HDR - 4u;
    } else if (ext) {
        start = 0;
        ch->buf[4] = 0;
        ch->buf[5] = (uint8_t)(n >> 8);
        ch->buf[6] = (uint8_t)n;
    } else {
        start = 2;
        ch->buf[6] = (uint8_t)n;
    }
    memcpy(ch->buf + start, ch->hdr, 4);
    size_t pos = CHAIN_HDR + n;
    if (a.has_le) {
        if (ext) {
            if (n == 0)
                ch->buf[pos++] = 0;
            uint32_t le = a.le == 65536u ? 0u : a.le;
            ch->buf[pos++] = (uint8_t)(le >> 8);
            ch->buf[pos++] = (uint8_t)le;
        } else {
            ch->buf[pos++] = (uint8_t)(a.le == 256u ? 0u : a.le);
        }
    }
    *complete = true;
    *out = ch->buf + start;
    *out_len = pos - start;
    ch->active = false;
    ch->data_len = 0;
    return TC_OK;
}
