/*
 * store-data: configuration objects stored in the ISD's profile area by
 * STORE DATA (GP Card Specification 2.3 §11.11; docs/se.md "STORE DATA"),
 * then each read back by GET DATA under R-MAC (§11.3) and compared byte for
 * byte: what the card can prove is that it now answers every object as
 * written.
 *
 * The data (a file given to `device queue`, its SHA-256 in op-queued) is a
 * sequence of BER-TLV objects (ISO/IEC 7816-4 §5.2) with one- or two-byte
 * tags. Objects are packed whole into blocks of at most TC_OTA_CMD_DATA_MAX
 * bytes: P1 b8 = last block, b5-b4 = '10' (BER-TLV), P2 = block number.
 * Storing is idempotent (an object replaces the one with its tag), so a run
 * interrupted anywhere simply starts over.
 */
#include <string.h>

#include <trustchain/ota_ops.h>

#include "ota/ops_internal.h"

enum { PC_START = 0, PC_AUTH, PC_STORE, PC_READ };

struct store_state {
    uint16_t off; /* next object to store or read back */
    uint16_t obj; /* object being read back */
    uint16_t obj_len;
    uint8_t block; /* STORE DATA block number */
};

/* One BER-TLV object at data[off]: its total length and its tag. */
static tc_err object_at(const uint8_t *data, size_t len, size_t off, size_t *obj_len, uint16_t *tag)
{
    struct tc_cursor c;
    uint8_t b = 0, l = 0;
    size_t vlen = 0;
    tc_cursor_init(&c, data + off, len - off);
    TC_GUARD(tc_cursor_u8(&c, &b));
    *tag = b;
    if ((b & 0x1F) == 0x1F) {
        uint8_t b2 = 0;
        TC_GUARD(tc_cursor_u8(&c, &b2));
        /* ISO/IEC 7816-4 §5.2.2.1: two-byte tags only (b8 of the second 0). */
        TC_ENSURE_MSG((b2 & 0x80) == 0 && b2 >= 0x1F, TC_ERR_FORMAT, "unsupported tag %02X%02X", b,
                      b2);
        *tag = (uint16_t)(b << 8 | b2);
    }
    TC_GUARD(tc_cursor_u8(&c, &l));
    if (l < 0x80) {
        vlen = l;
    } else if (l == 0x81) {
        uint8_t v = 0;
        TC_GUARD(tc_cursor_u8(&c, &v));
        TC_ENSURE_MSG(v >= 0x80, TC_ERR_FORMAT, "non-minimal length");
        vlen = v;
    } else {
        return TC_FAIL(TC_ERR_FORMAT, "object length form %02X unsupported", l);
    }
    const uint8_t *v = NULL;
    TC_GUARD(tc_cursor_view(&c, vlen, &v));
    *obj_len = (len - off) - tc_cursor_remaining(&c);
    return TC_OK;
}

tc_err ota_store_data_check(const uint8_t *data, size_t len)
{
    uint16_t tags[TC_OTA_DATA_MAX / 2];
    size_t ntags = 0, off = 0;
    TC_ENSURE_MSG(len > 0 && len <= TC_OTA_DATA_MAX, TC_ERR_ARG, "%zu bytes of data", len);
    while (off < len) {
        size_t ol = 0;
        uint16_t tag = 0;
        TC_GUARD(object_at(data, len, off, &ol, &tag));
        TC_ENSURE_MSG(ol <= TC_OTA_CMD_DATA_MAX, TC_ERR_ARG,
                      "object %04X of %zu bytes exceeds a STORE DATA block (%u)", tag, ol,
                      TC_OTA_CMD_DATA_MAX);
        for (size_t i = 0; i < ntags; i++)
            TC_ENSURE_MSG(tags[i] != tag, TC_ERR_ARG,
                          "object %04X appears twice (the second would replace the first)", tag);
        tags[ntags++] = tag;
        off += ol;
    }
    return TC_OK;
}

static void fail(struct tc_ota_act *a, uint16_t reason)
{
    a->kind = TC_OTA_ACT_FAIL;
    a->reason = reason;
}

/* The next block: as many whole objects as fit from st->off. */
static tc_err next_block(struct store_state *st, const uint8_t *data, size_t len,
                         struct tc_ota_act *a, bool *ok)
{
    size_t off = st->off, used = 0;
    *ok = false;
    while (off < len) {
        size_t ol = 0;
        uint16_t tag = 0;
        if (object_at(data, len, off, &ol, &tag) != TC_OK) {
            tc_error_clear();
            return TC_OK;
        }
        if (ol > sizeof a->data)
            return TC_OK; /* an object larger than a block */
        if (used + ol > sizeof a->data)
            break;
        memcpy(a->data + used, data + off, ol);
        used += ol;
        off += ol;
    }
    bool last = off == len;
    a->kind = TC_OTA_ACT_SEND;
    a->cmd = (struct tc_apdu){.cla = 0x80,
                              .ins = 0xE2,
                              .p1 = (uint8_t)((last ? 0x80u : 0x00u) | 0x10u),
                              .p2 = st->block,
                              .lc = used};
    a->intent = st->block == 0 ? 1 : 0;
    st->off = (uint16_t)off;
    st->block++;
    *ok = true;
    return TC_OK;
}

static void get_data(uint16_t tag, struct tc_ota_act *a)
{
    a->kind = TC_OTA_ACT_SEND;
    a->cmd = (struct tc_apdu){.cla = 0x80,
                              .ins = 0xCA,
                              .p1 = (uint8_t)(tag >> 8),
                              .p2 = (uint8_t)tag,
                              .has_le = true,
                              .le = 256};
}

static tc_err store_next(struct tc_ota_op_run *run, const struct tc_ota_result *res,
                         struct tc_ota_act *a)
{
    struct store_state *st = (struct store_state *)(void *)run->scratch;
    uint8_t data[TC_OTA_DATA_MAX];
    size_t len = 0;
    bool ok = false;
    tc_err ret = TC_ERR_INTERNAL;
    if (run->pc != PC_START) {
        ret = tc_ota_run_data(run, data, sizeof data, &len);
        if (ret != TC_OK)
            goto out;
    }
    switch (run->pc) {
    case PC_START:
        memset(st, 0, sizeof *st);
        if (!run->op->has_data) {
            fail(a, TC_OTA_FAIL_PARAMS);
            break;
        }
        a->kind = TC_OTA_ACT_AUTH;
        run->pc = PC_AUTH;
        break;
    case PC_AUTH:
        if (res->rc != TC_OK) {
            fail(a, TC_OTA_FAIL_AUTH);
            break;
        }
        TC_TRY(next_block(st, data, len, a, &ok));
        if (!ok)
            fail(a, TC_OTA_FAIL_PARAMS);
        else
            run->pc = PC_STORE;
        break;
    case PC_STORE:
        if (res->sw != 0x9000) {
            fail(a, TC_OTA_FAIL_CARD);
            break;
        }
        if (st->off < len) {
            TC_TRY(next_block(st, data, len, a, &ok));
            if (!ok)
                fail(a, TC_OTA_FAIL_PARAMS);
            break;
        }
        st->off = 0;
        /* FALLTHROUGH to the first read-back */
        {
            size_t ol = 0;
            uint16_t tag = 0;
            TC_TRY(object_at(data, len, 0, &ol, &tag));
            st->obj = 0;
            st->obj_len = (uint16_t)ol;
            get_data(tag, a);
            run->pc = PC_READ;
        }
        break;
    case PC_READ: {
        /* GET DATA answers the object as stored: tag, length, value. */
        if (res->sw != 0x9000 || res->len != st->obj_len ||
            memcmp(res->data, data + st->obj, st->obj_len) != 0) {
            fail(a, TC_OTA_FAIL_READBACK);
            break;
        }
        size_t next = (size_t)st->obj + st->obj_len;
        if (next == len) {
            struct tc_audit_event *ev = &a->events[0];
            memset(ev, 0, sizeof *ev);
            ev->type = TC_AUDIT_CONFIG_STORED;
            ev->fields = TC_AUDIT_HAS_DATA_SHA256;
            memcpy(ev->data_sha256, run->op->data_sha256, TC_AUDIT_HASH_LEN);
            a->nevents = 1;
            a->kind = TC_OTA_ACT_DONE;
            break;
        }
        size_t ol = 0;
        uint16_t tag = 0;
        TC_TRY(object_at(data, len, next, &ol, &tag));
        st->obj = (uint16_t)next;
        st->obj_len = (uint16_t)ol;
        get_data(tag, a);
        break;
    }
    default:
        TC_CHECK_MSG(false, TC_ERR_STATE, "store-data: bad state %d", run->pc);
    }
    ret = TC_OK;
out:
    tc_memzero(data, sizeof data);
    return ret;
}

const struct tc_ota_op_kind tc_ota_op_store_data = {
    .name = "store-data",
    .code = TC_OTA_OP_STORE_DATA,
    .params = TC_OTA_PARAM_DATA,
    .summary = "STORE DATA the BER-TLV objects of --file to the ISD, each read back by GET DATA",
    .next = store_next,
};
