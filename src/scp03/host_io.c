/*
 * SCP03 host side over a transport: opening the channel (SELECT, INITIALIZE
 * UPDATE, EXTERNAL AUTHENTICATE), sending wrapped commands with extended
 * length or command chaining, following 61xx / 6Cxx, BEGIN / END R-MAC
 * SESSION, PUT KEY and DELETE KEY.
 *
 * Must never: show key material to the trace callback (it sees APDUs, and
 * PUT KEY data only as wrapped blocks), or leave an open session after a
 * failed opening.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "scp03/internal.h"

/* Enough for any response: 65536 data + R-MAC + padding + SW. */
#define RESP_CAP (TC_TRANSPORT_MAX_RESPONSE + TC_SCP03_RESP_OVERHEAD)
/* GET RESPONSE rounds before giving up on a card that keeps saying 61xx. */
#define MAX_GET_RESPONSE 300u

/*
 * Response buffers: two of RESP_CAP per thread (the raw answer and its
 * unwrapped plaintext), allocated at the thread's first exchange and freed
 * by a pthread key destructor when it ends, rather than 128 KiB allocated
 * and freed per APDU (a request that large also makes glibc consolidate
 * every thread's fast bins). The bytes used are wiped after every exchange,
 * as before. A buffer already in use on this thread (an exchange nested in
 * a transport callback) is replaced by a heap one.
 */
enum { SCRATCH_RAW, SCRATCH_PLAIN };
struct scratch {
    bool busy[2];
    uint8_t buf[2][RESP_CAP];
};
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static bool scratch_ok;

static void scratch_free(void *p)
{
    free(p);
}

static void scratch_init(void)
{
    scratch_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

static uint8_t *scratch_take(unsigned which)
{
    struct scratch *s = NULL;
    if (pthread_once(&scratch_once, scratch_init) == 0 && scratch_ok) {
        s = pthread_getspecific(scratch_key);
        if (s == NULL) {
            s = calloc(1, sizeof *s);
            if (s != NULL && pthread_setspecific(scratch_key, s) != 0) {
                free(s);
                s = NULL;
            }
        }
    }
    if (s != NULL && !s->busy[which]) {
        s->busy[which] = true;
        return s->buf[which];
    }
    return malloc(RESP_CAP);
}

/* Give back a buffer scratch_take returned; its used bytes are wiped. */
static void scratch_give(unsigned which, uint8_t *p)
{
    if (p == NULL)
        return;
    struct scratch *s = scratch_ok ? pthread_getspecific(scratch_key) : NULL;
    if (s != NULL && p == s->buf[which]) {
        s->busy[which] = false;
        return;
    }
    free(p);
}

static void trace(const struct tc_scp03_host *h, enum tc_scp03_trace_kind k, const uint8_t *p,
                  size_t n)
{
    if (h->cfg.trace != NULL)
        h->cfg.trace(h->cfg.trace_ctx, k, p, n);
}

static tc_err card_error(struct tc_scp03_host *h, const char *what, uint16_t sw)
{
    char d[96];
    tc_sw_describe(sw, d, sizeof d);
    h->last_sw = sw;
    h->outcome = TC_SCP03_HOST_CARD_STATUS;
    return TC_FAIL(TC_ERR_CARD, "%s: card answered %s", what, d);
}

/* A failed exchange: the link (TC_ERR_IO) or what came back. */
static enum tc_scp03_host_outcome exchange_outcome(tc_err rc)
{
    switch (rc) {
    case TC_OK:
        return TC_SCP03_HOST_OK;
    case TC_ERR_IO:
        return TC_SCP03_HOST_LINK;
    case TC_ERR_VERIFY:
    case TC_ERR_FORMAT:
    case TC_ERR_TRUNCATED:
        return TC_SCP03_HOST_RESPONSE;
    default:
        return TC_SCP03_HOST_OTHER;
    }
}

/* One APDU out, one response in. */
static tc_err raw_exchange(struct tc_scp03_host *h, const uint8_t *cmd, size_t len, uint8_t *resp,
                           size_t resp_size, size_t *resp_len)
{
    TC_ENSURE_MSG(h->t != NULL && h->t->transmit != NULL, TC_ERR_STATE, "no transport");
    trace(h, TC_SCP03_TRACE_CMD_WRAPPED, cmd, len);
    TC_GUARD(h->t->transmit(h->t->ctx, cmd, len, resp, resp_size, resp_len));
    TC_ENSURE_MSG(*resp_len >= 2 && *resp_len <= resp_size, TC_ERR_IO,
                  "transport returned a response of %zu bytes", *resp_len);
    trace(h, TC_SCP03_TRACE_RESP_RAW, resp, *resp_len);
    return TC_OK;
}

/*
 * Send an encoded command (splitting it into chained segments when it is
 * extended and the configuration asks for short APDUs), follow 61xx with GET
 * RESPONSE, and collect data || SW into acc.
 */
static tc_err send_apdu(struct tc_scp03_host *h, const uint8_t *cmd, size_t len, struct tc_buf *acc)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_apdu a;
    uint8_t *r = scratch_take(SCRATCH_RAW);
    uint8_t seg[5 + 255 + 1];
    size_t rlen = 0, used = 0;
    uint16_t sw = 0;
    TC_CHECK(r != NULL, TC_ERR_NOMEM);
    TC_TRY(tc_apdu_decode(cmd, len, &a));
    if (a.extended && !h->cfg.extended) {
        /* ISO/IEC 7816-4 §5.3.3: the command, protected once, travels as a
         * chain of short commands; b5 of CLA marks all but the last. */
        TC_CHECK_MSG(!a.has_le || a.le <= 256u, TC_ERR_ARG, "Le of %lu needs extended length",
                     (unsigned long)a.le);
        /* ISO/IEC 7816-4 §5.4.1: CLA FF is invalid, which is what a chained
         * secure GlobalPlatform command on channel 19 would need. */
        TC_CHECK_MSG((a.cla | 0x10u) != 0xFFu, TC_ERR_UNSUPPORTED,
                     "channel 19 cannot chain a secure command (CLA would be FF); use "
                     "extended length");
        size_t off = 0;
        do {
            size_t n = a.lc - off > 255u ? 255u : a.lc - off;
            bool last = off + n == a.lc;
            size_t p = 0;
            seg[p++] = last ? a.cla : (uint8_t)(a.cla | 0x10u);
            seg[p++] = a.ins;
            seg[p++] = a.p1;
            seg[p++] = a.p2;
            seg[p++] = (uint8_t)n;
            if (n > 0)
                memcpy(seg + p, a.data + off, n);
            p += n;
            if (last && a.has_le)
                seg[p++] = (uint8_t)(a.le == 256u ? 0u : a.le);
            TC_TRY(raw_exchange(h, seg, p, r, RESP_CAP, &rlen));
            used = rlen > used ? rlen : used;
            off += n;
            if (!last) {
                sw = (uint16_t)((r[rlen - 2] << 8) | r[rlen - 1]);
                if (sw != 0x9000u || rlen != 2) {
                    /* The card stopped the chain: its answer is final. */
                    tc_buf_put(acc, r, rlen);
                    ret = tc_buf_status(acc);
                    goto out;
                }
            }
        } while (off < a.lc);
    } else {
        TC_TRY(raw_exchange(h, cmd, len, r, RESP_CAP, &rlen));
        used = rlen;
    }
    /* ISO/IEC 7816-4 §5.3.4 / 7816-3 §10.3.4: 61xx means xx more bytes wait
     * for GET RESPONSE; the data pieces join into one response. */
    for (unsigned round = 0;; round++) {
        sw = (uint16_t)((r[rlen - 2] << 8) | r[rlen - 1]);
        if (rlen > 2)
            tc_buf_put(acc, r, rlen - 2);
        if ((sw >> 8) != 0x61u)
            break;
        TC_CHECK_MSG(round < MAX_GET_RESPONSE, TC_ERR_IO, "card keeps answering 61xx");
        uint8_t gr[5];
        TC_TRY(tc_cla_encode(false, h->cfg.channel, false, false, &gr[0]));
        gr[1] = 0xC0;
        gr[2] = 0x00;
        gr[3] = 0x00;
        gr[4] = (uint8_t)sw;
        TC_TRY(raw_exchange(h, gr, sizeof gr, r, RESP_CAP, &rlen));
        used = rlen > used ? rlen : used;
    }
    tc_buf_put_u16be(acc, sw);
    ret = tc_buf_status(acc);
out:
    if (r != NULL) {
        /* The answers filled at most `used` bytes; after a failed exchange
         * the transport may have written any part of the buffer. */
        tc_memzero(r, ret == TC_OK ? used : RESP_CAP);
        scratch_give(SCRATCH_RAW, r);
    }
    return ret;
}

/* Wrap, send, unwrap. `raise` is ORed into the level once the command is
 * wrapped (BEGIN R-MAC SESSION: its response is already R-MACed);
 * `lower_after` drops R-MAC / R-ENC once the response is unwrapped (END). */
static tc_err xfer(struct tc_scp03_host *h, const struct tc_apdu *cmd_in, uint8_t raise,
                   bool lower_after, uint8_t *resp, size_t resp_size, size_t *resp_len,
                   uint16_t *sw)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_buf w, acc, plain;
    struct tc_apdu cmd = *cmd_in;
    tc_buf_init_heap(&w, TC_APDU_MAX_ENCODED);
    tc_buf_init_heap(&acc, RESP_CAP);
    tc_buf_init_heap(&plain, TC_APDU_MAX_ENCODED);
    uint8_t *out = NULL;
    size_t out_len = 0, out_used = 0;
    bool in_flight = false; /* wrapped, answer not yet verified */
    TC_CHECK(h != NULL && cmd_in != NULL && resp_len != NULL && sw != NULL, TC_ERR_ARG);
    TC_CHECK(resp != NULL || resp_size == 0, TC_ERR_ARG);
    *resp_len = 0;
    TC_CHECK_MSG(h->s.state == TC_SCP03_STATE_AUTHENTICATED, TC_ERR_STATE,
                 "no open secure channel");
    /* Short APDUs only: a larger Le would force the extended form, and a
     * command decoded in extended form is re-encoded short (the C-MAC covers
     * the Lc as sent, so the form must be settled before wrapping). */
    if (!h->cfg.extended) {
        if (cmd.has_le && cmd.le > 256u)
            cmd.le = 256u;
        cmd.extended = false;
    }
    if (!h->cfg.extended && (h->s.level & TC_SCP03_SL_CMAC) != 0) {
        /* Refuse before wrapping (the chaining value must not move for a
         * command that is never sent): a chained secure command on channel
         * 19 needs CLA FF, which ISO/IEC 7816-4 §5.4.1 forbids. */
        size_t dlen = cmd.lc;
        if ((h->s.level & TC_SCP03_SL_CDEC) != 0 && cmd.lc > 0)
            dlen = (cmd.lc / TC_AES_BLOCK + 1u) * TC_AES_BLOCK;
        uint8_t sm_cla = 0;
        TC_TRY(tc_scp03_cla_secure(cmd.cla, &sm_cla));
        TC_CHECK_MSG(dlen + h->s.s_len <= TC_APDU_MAX_SHORT_LC || (sm_cla | 0x10u) != 0xFFu,
                     TC_ERR_UNSUPPORTED,
                     "channel 19 cannot chain a secure command (CLA would be FF); use "
                     "extended length");
    }
    out = scratch_take(SCRATCH_PLAIN);
    TC_CHECK(out != NULL, TC_ERR_NOMEM);
    for (int attempt = 0; attempt < 2; attempt++) {
        tc_buf_reset(&w);
        tc_buf_reset(&acc);
        if (h->cfg.trace != NULL) {
            tc_buf_reset(&plain);
            TC_TRY(tc_apdu_encode(&cmd, &plain));
            trace(h, TC_SCP03_TRACE_CMD_PLAIN, plain.data, plain.len);
        }
        TC_TRY(tc_scp03_host_wrap(h, &cmd, &w));
        in_flight = true;
        h->s.level = (uint8_t)(h->s.level | raise);
        TC_TRY(send_apdu(h, w.data, w.len, &acc));
        /* Unwrapping writes no more than the response it is given. */
        out_used = acc.len > out_used ? acc.len : out_used;
        TC_TRY(tc_scp03_host_unwrap(h, acc.data, acc.len, out, RESP_CAP, &out_len, sw));
        in_flight = false;
        /* ISO/IEC 7816-4 §5.1: 6Cxx = wrong Le, xx is right; send again,
         * wrapped anew (the chaining value and counter moved on). */
        if ((*sw >> 8) == 0x6Cu && attempt == 0 && cmd.has_le) {
            cmd.le = (*sw & 0xFFu) == 0 ? 256u : (*sw & 0xFFu);
            continue;
        }
        break;
    }
    if (lower_after)
        h->s.level = (uint8_t)(h->s.level & ~(TC_SCP03_SL_RMAC | TC_SCP03_SL_RENC));
    if (h->cfg.trace != NULL) {
        tc_buf_reset(&plain);
        if (out_len > 0)
            tc_buf_put(&plain, out, out_len);
        tc_buf_put_u16be(&plain, *sw);
        TC_TRY(tc_buf_status(&plain));
        trace(h, TC_SCP03_TRACE_RESP_PLAIN, plain.data, plain.len);
    }
    TC_CHECK_MSG(out_len <= resp_size, TC_ERR_SPACE,
                 "response of %zu bytes does not fit the caller's %zu", out_len, resp_size);
    if (out_len > 0)
        memcpy(resp, out, out_len);
    *resp_len = out_len;
    h->last_sw = *sw;
    ret = TC_OK;
out:
    if (h != NULL)
        h->outcome = exchange_outcome(ret);
    /* A command sent without a verified answer leaves the two ends out of
     * step (or the channel tampered with): the session ends. */
    if (in_flight && ret != TC_OK)
        tc_scp03_host_wipe(h);
    tc_buf_free(&w);
    tc_buf_free(&acc);
    tc_buf_free(&plain);
    if (out != NULL) {
        tc_memzero(out, out_used < RESP_CAP ? out_used : RESP_CAP);
        scratch_give(SCRATCH_PLAIN, out);
    }
    return ret;
}

tc_err tc_scp03_host_transmit(struct tc_scp03_host *h, const struct tc_apdu *cmd, uint8_t *resp,
                              size_t resp_size, size_t *resp_len, uint16_t *sw)
{
    return xfer(h, cmd, 0, false, resp, resp_size, resp_len, sw);
}

/* A plain exchange outside the secure channel (SELECT, the handshake). */
static tc_err plain_exchange(struct tc_scp03_host *h, const uint8_t *cmd, size_t len,
                             struct tc_buf *acc, uint16_t *sw)
{
    trace(h, TC_SCP03_TRACE_CMD_PLAIN, cmd, len);
    TC_GUARD(send_apdu(h, cmd, len, acc));
    TC_ENSURE(acc->len >= 2, TC_ERR_INTERNAL);
    *sw = (uint16_t)((acc->data[acc->len - 2] << 8) | acc->data[acc->len - 1]);
    trace(h, TC_SCP03_TRACE_RESP_PLAIN, acc->data, acc->len);
    return TC_OK;
}

tc_err tc_scp03_host_open(struct tc_scp03_host *h, struct tc_transport *t,
                          const struct tc_scp03_key_provider *keys,
                          const struct tc_scp03_host_config *cfg)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_buf cmd, acc;
    uint16_t sw = 0;
    tc_buf_init_heap(&cmd, 512);
    tc_buf_init_heap(&acc, RESP_CAP);
    tc_err rc = TC_ERR_INTERNAL;
    TC_CHECK(h != NULL && t != NULL, TC_ERR_ARG);
    h->outcome = TC_SCP03_HOST_OTHER;
    TC_TRY(tc_scp03_host_init(h, keys, cfg));
    h->outcome = TC_SCP03_HOST_OTHER;
    h->t = t;
    if (cfg->select) {
        /* GP CS 2.3 §11.9: SELECT the security domain by AID. */
        uint8_t cla = 0;
        TC_TRY(tc_cla_encode(false, cfg->channel, false, false, &cla));
        const struct tc_apdu sel = {.cla = cla,
                                    .ins = 0xA4,
                                    .p1 = 0x04,
                                    .p2 = 0x00,
                                    .data = cfg->aid,
                                    .lc = cfg->aid_len,
                                    .le = 256,
                                    .has_le = true};
        TC_TRY(tc_apdu_encode(&sel, &cmd));
        if ((rc = plain_exchange(h, cmd.data, cmd.len, &acc, &sw)) != TC_OK) {
            h->outcome = exchange_outcome(rc);
            ret = rc;
            goto out;
        }
        /* GP CS 2.3 §11.9.3: 6283 selects the ISD of a CARD_LOCKED card; the
         * secure channel may still be opened (to unlock it). */
        h->last_sw = sw;
        if (sw != 0x9000u && sw != 0x6283u) {
            ret = card_error(h, "SELECT of the security domain", sw);
            goto out;
        }
    }
    tc_buf_reset(&cmd);
    tc_buf_reset(&acc);
    TC_TRY(tc_scp03_host_initialize_update(h, &cmd));
    if ((rc = plain_exchange(h, cmd.data, cmd.len, &acc, &sw)) != TC_OK) {
        h->outcome = exchange_outcome(rc);
        ret = rc;
        goto out;
    }
    if (sw != 0x9000u) {
        ret = card_error(h, "INITIALIZE UPDATE", sw);
        /* GP CS 2.3 §11.1.4 / Amendment D §7.1.1.5: 6A88, referenced data
         * (the keyset named by P1) not found. */
        if (sw == 0x6A88u)
            h->outcome = TC_SCP03_HOST_NO_KEYSET;
        goto out;
    }
    h->last_sw = sw;
    tc_buf_reset(&cmd);
    /* Sets the outcome of a card that does not authenticate itself. */
    TC_TRY(tc_scp03_host_external_authenticate(h, acc.data, acc.len - 2, &cmd));
    h->outcome = TC_SCP03_HOST_OTHER;
    tc_buf_reset(&acc);
    if ((rc = plain_exchange(h, cmd.data, cmd.len, &acc, &sw)) != TC_OK) {
        h->outcome = exchange_outcome(rc);
        ret = rc;
        goto out;
    }
    /* Sets the outcome of a refused host cryptogram. */
    TC_TRY(tc_scp03_host_authenticated(h, sw));
    ret = TC_OK;
out:
    tc_buf_free(&cmd);
    tc_buf_free(&acc);
    if (h != NULL && ret == TC_OK)
        h->outcome = TC_SCP03_HOST_OK;
    if (ret != TC_OK && h != NULL)
        tc_scp03_host_wipe(h);
    return ret;
}

static tc_err expect_ok(struct tc_scp03_host *h, const char *what, uint16_t sw)
{
    if (sw != 0x9000u)
        return card_error(h, what, sw);
    return TC_OK;
}

static tc_err gp_cla(const struct tc_scp03_host *h, uint8_t *cla)
{
    return tc_cla_encode(true, h->s.channel, false, false, cla);
}

tc_err tc_scp03_host_begin_rmac(struct tc_scp03_host *h, bool renc)
{
    uint8_t cla = 0, resp[64];
    size_t rlen = 0;
    uint16_t sw = 0;
    TC_ENSURE(h != NULL, TC_ERR_ARG);
    h->outcome = TC_SCP03_HOST_OTHER;
    TC_ENSURE_MSG(h->s.state == TC_SCP03_STATE_AUTHENTICATED, TC_ERR_STATE,
                  "no open secure channel");
    const uint8_t p1 = renc ? (uint8_t)(TC_SCP03_SL_RMAC | TC_SCP03_SL_RENC) : TC_SCP03_SL_RMAC;
    /* The host refuses what the card's i-parameter does not offer, and
     * R-ENC without C-DEC (levels 13 / 33 only). */
    TC_GUARD(tc_scp03_level_check((uint8_t)(p1 | TC_SCP03_LEVEL_ENC), h->s.i_param));
    TC_ENSURE_MSG((h->s.level & TC_SCP03_SL_RMAC) == 0, TC_ERR_STATE,
                  "R-MAC is already on (level %02X)", h->s.level);
    TC_ENSURE_MSG(!renc || (h->s.level & TC_SCP03_SL_CDEC) != 0, TC_ERR_STATE,
                  "R-ENC needs C-DEC (level %02X)", h->s.level);
    TC_GUARD(gp_cla(h, &cla));
    const struct tc_apdu a = {
        .cla = cla, .ins = TC_SCP03_INS_BEGIN_RMAC_SESSION, .p1 = p1, .p2 = 0x01};
    TC_GUARD(xfer(h, &a, p1, false, resp, sizeof resp, &rlen, &sw));
    if (sw != 0x9000u) {
        h->s.level = (uint8_t)(h->s.level & ~p1);
        return card_error(h, "BEGIN R-MAC SESSION", sw);
    }
    return TC_OK;
}

tc_err tc_scp03_host_end_rmac(struct tc_scp03_host *h)
{
    uint8_t cla = 0, resp[64];
    size_t rlen = 0;
    uint16_t sw = 0;
    TC_ENSURE(h != NULL, TC_ERR_ARG);
    h->outcome = TC_SCP03_HOST_OTHER;
    TC_ENSURE_MSG(h->s.state == TC_SCP03_STATE_AUTHENTICATED &&
                      (h->s.level & TC_SCP03_SL_RMAC) != 0 &&
                      (h->s.auth_level & TC_SCP03_SL_RMAC) == 0,
                  TC_ERR_STATE, "no R-MAC session to end");
    TC_GUARD(gp_cla(h, &cla));
    const struct tc_apdu a = {
        .cla = cla, .ins = TC_SCP03_INS_END_RMAC_SESSION, .p1 = 0x00, .p2 = 0x03};
    TC_GUARD(xfer(h, &a, 0, true, resp, sizeof resp, &rlen, &sw));
    return expect_ok(h, "END R-MAC SESSION", sw);
}

tc_err tc_scp03_host_put_keys(struct tc_scp03_host *h, const struct tc_scp03_key_provider *src,
                              uint8_t new_kvn, uint8_t old_kvn)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t data[TC_SCP03_PUT_KEY_DATA_MAX];
    uint8_t kcvs[TC_SCP03_KCVS_LEN];
    uint8_t resp[64];
    size_t rlen = 0;
    uint16_t sw = 0;
    uint8_t cla = 0;
    struct tc_buf b;
    tc_buf_init_fixed(&b, data, sizeof data);
    TC_CHECK(h != NULL, TC_ERR_ARG);
    h->outcome = TC_SCP03_HOST_OTHER;
    TC_CHECK(src != NULL && src->key_len != NULL && src->kcv != NULL, TC_ERR_ARG);
    TC_CHECK_MSG(old_kvn <= 0x7Fu, TC_ERR_RANGE, "KVN to replace %02X is outside 00..7F", old_kvn);
    TC_CHECK_MSG(h->s.state == TC_SCP03_STATE_AUTHENTICATED, TC_ERR_STATE,
                 "no open secure channel");
    h->outcome = TC_SCP03_HOST_KEYS;
    TC_TRY(tc_scp03_put_key_data(h->keys, h->s.kvn, src, new_kvn, &b, kcvs));
    h->outcome = TC_SCP03_HOST_OTHER;
    TC_TRY(gp_cla(h, &cla));
    /* GP CS 2.3 §11.8.2: P1 = KVN to replace (00 adds), P2 = 81 (several
     * keys, the first with identifier 1). */
    const struct tc_apdu a = {.cla = cla,
                              .ins = TC_SCP03_INS_PUT_KEY,
                              .p1 = old_kvn,
                              .p2 = 0x81,
                              .data = data,
                              .lc = b.len,
                              .le = 256,
                              .has_le = true};
    TC_TRY(xfer(h, &a, 0, false, resp, sizeof resp, &rlen, &sw));
    TC_TRY(expect_ok(h, "PUT KEY", sw));
    /* GP CS 2.3 §11.8.3: the response is the KVN and the KCVs of the keys
     * the card now holds; a KVN or KCV other than the new keys' is a
     * mismatch, anything unparseable a bad response. */
    ret = tc_scp03_put_key_check(resp, rlen, new_kvn, kcvs);
    if (ret != TC_OK) {
        h->outcome = ret == TC_ERR_VERIFY ? TC_SCP03_HOST_KCV_MISMATCH : TC_SCP03_HOST_RESPONSE;
        goto out;
    }
    h->outcome = TC_SCP03_HOST_OK;
    ret = TC_OK;
out:
    tc_memzero(data, sizeof data);
    return ret;
}

tc_err tc_scp03_host_delete_key(struct tc_scp03_host *h, uint8_t kvn, uint8_t key_id)
{
    uint8_t data[6], resp[64];
    size_t n = 0, rlen = 0;
    uint16_t sw = 0;
    uint8_t cla = 0;
    TC_ENSURE(h != NULL, TC_ERR_ARG);
    h->outcome = TC_SCP03_HOST_OTHER;
    TC_ENSURE_MSG(kvn >= 0x01u && kvn <= 0x7Fu, TC_ERR_RANGE, "KVN %02X is outside 01..7F", kvn);
    TC_ENSURE_MSG(key_id <= 0x7Fu, TC_ERR_RANGE, "key identifier %02X is outside 00..7F", key_id);
    /* GP CS 2.3 §11.2: delete key by key identifier (D0) and key
     * version number (D2); without D0 the whole keyset goes. */
    if (key_id != 0) {
        data[n++] = 0xD0;
        data[n++] = 0x01;
        data[n++] = key_id;
    }
    data[n++] = 0xD2;
    data[n++] = 0x01;
    data[n++] = kvn;
    TC_GUARD(gp_cla(h, &cla));
    const struct tc_apdu a = {.cla = cla,
                              .ins = TC_SCP03_INS_DELETE,
                              .p1 = 0x00,
                              .p2 = 0x00,
                              .data = data,
                              .lc = n,
                              .le = 256,
                              .has_le = true};
    TC_GUARD(xfer(h, &a, 0, false, resp, sizeof resp, &rlen, &sw));
    return expect_ok(h, "DELETE KEY", sw);
}

void tc_scp03_host_close(struct tc_scp03_host *h)
{
    if (h == NULL)
        return;
    tc_scp03_host_wipe(h);
    h->t = NULL;
}
