#include "scp03/loop.h"

#include <string.h>

/* The SW carries the outcome; the status is not needed here. */
#define IGNORE(call)                                                                               \
    do {                                                                                           \
        tc_err ignored_ = (call);                                                                  \
        (void)ignored_;                                                                            \
    } while (0)

const uint8_t LOOP_AID[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

/* ------------------------------------------------------------------ store */

struct tc_scp03_keyset *test_store_find(struct test_store *st, uint8_t kvn)
{
    for (size_t i = 0; i < st->n; i++)
        if (st->sets[i].kvn == kvn || (kvn == 0 && i == 0))
            return &st->sets[i];
    return NULL;
}

static size_t index_of(struct test_store *st, uint8_t kvn)
{
    for (size_t i = 0; i < st->n; i++)
        if (st->sets[i].kvn == kvn)
            return i;
    return LOOP_KEYSETS;
}

static tc_err st_load(void *ctx, uint8_t kvn, struct tc_scp03_keyset *out)
{
    struct test_store *st = ctx;
    struct tc_scp03_keyset *ks = test_store_find(st, kvn);
    if (ks == NULL)
        return TC_FAIL(TC_ERR_NOT_FOUND, "no keyset %02X", kvn);
    *out = *ks;
    return TC_OK;
}

static tc_err st_next(void *ctx, uint8_t kvn, uint32_t *seq)
{
    struct test_store *st = ctx;
    size_t i = index_of(st, kvn);
    if (i == LOOP_KEYSETS)
        return TC_FAIL(TC_ERR_NOT_FOUND, "no keyset %02X", kvn);
    if (st->seq[i] >= TC_SCP03_SEQ_MAX)
        return TC_FAIL(TC_ERR_RANGE, "sequence counter exhausted");
    *seq = ++st->seq[i];
    return TC_OK;
}

static tc_err st_failures(void *ctx, uint8_t kvn, uint32_t *count)
{
    struct test_store *st = ctx;
    size_t i = index_of(st, kvn);
    if (i == LOOP_KEYSETS)
        return TC_FAIL(TC_ERR_NOT_FOUND, "no keyset %02X", kvn);
    *count = st->failures[i];
    return TC_OK;
}

static tc_err st_record(void *ctx, uint8_t kvn, bool success)
{
    struct test_store *st = ctx;
    size_t i = index_of(st, kvn);
    if (i == LOOP_KEYSETS)
        return TC_FAIL(TC_ERR_NOT_FOUND, "no keyset %02X", kvn);
    st->failures[i] = success ? 0 : st->failures[i] + 1;
    return TC_OK;
}

void test_store_init(struct test_store *st, struct tc_scp03_card_store *ops)
{
    memset(st, 0, sizeof *st);
    ops->ctx = st;
    ops->load_keyset = st_load;
    ops->next_sequence = st_next;
    ops->auth_failures = st_failures;
    ops->auth_record = st_record;
}

void test_store_add(struct test_store *st, const struct tc_scp03_keyset *ks, uint32_t seq)
{
    size_t i = index_of(st, ks->kvn);
    if (i == LOOP_KEYSETS)
        i = st->n++;
    st->sets[i] = *ks;
    st->seq[i] = seq;
    st->failures[i] = 0;
}

tc_err test_random(void *ctx, uint8_t *out, size_t n)
{
    uint8_t *state = ctx;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(*state + 0x11u * i);
    (*state)++;
    return TC_OK;
}

void make_keyset(struct tc_scp03_keyset *ks, uint8_t kvn, size_t key_len, uint8_t seed)
{
    uint8_t e[32], m[32], d[32];
    for (size_t i = 0; i < 32; i++) {
        e[i] = (uint8_t)(seed + i);
        m[i] = (uint8_t)(seed + 0x40u + i);
        d[i] = (uint8_t)(seed + 0x80u + i);
    }
    if (tc_scp03_keyset_set(ks, kvn, e, m, d, key_len) != TC_OK)
        memset(ks, 0, sizeof *ks);
}

/* ------------------------------------------------------------------ card OS */

static void put_sw(uint8_t *resp, size_t *len, uint16_t sw)
{
    resp[*len] = (uint8_t)(sw >> 8);
    resp[*len + 1] = (uint8_t)sw;
    *len += 2;
}

/* Hand out a response, T=0 style when configured. */
static tc_err deliver(struct loop *l, const uint8_t *r, size_t rlen, uint8_t *resp,
                      size_t resp_size, size_t *resp_len)
{
    size_t dlen = rlen - 2;
    if (l->t0_chunk == 0 || dlen <= l->t0_chunk) {
        if (rlen > resp_size)
            return TC_FAIL(TC_ERR_SPACE, "loop: response too big");
        memcpy(resp, r, rlen);
        *resp_len = rlen;
        return TC_OK;
    }
    memcpy(l->pending, r, dlen);
    l->pending_len = dlen;
    l->pending_off = 0;
    l->pending_sw = (uint16_t)((r[dlen] << 8) | r[dlen + 1]);
    *resp_len = 0;
    put_sw(resp, resp_len, 0x6100);
    return TC_OK;
}

static tc_err get_response(struct loop *l, const uint8_t *cmd, size_t len, uint8_t *resp,
                           size_t *resp_len)
{
    size_t want = len >= 5 ? (cmd[4] == 0 ? 256u : cmd[4]) : 256u;
    size_t left = l->pending_len - l->pending_off;
    size_t n = want < left ? want : left;
    memcpy(resp, l->pending + l->pending_off, n);
    l->pending_off += n;
    *resp_len = n;
    left -= n;
    if (left > 0)
        put_sw(resp, resp_len, (uint16_t)(0x6100u | (left > 255 ? 0u : left)));
    else {
        put_sw(resp, resp_len, l->pending_sw);
        l->pending_len = 0;
    }
    return TC_OK;
}

static uint16_t dispatch(struct loop *l, const struct tc_scp03_card_cmd *cmd, uint8_t *data,
                         size_t *dlen)
{
    uint16_t sw = 0x6D00;
    const struct tc_apdu *a = &cmd->apdu;
    *dlen = 0;
    switch (a->ins) {
    case TC_SCP03_INS_BEGIN_RMAC_SESSION:
        IGNORE(tc_scp03_card_begin_rmac(&l->card, cmd, &sw));
        return sw;
    case TC_SCP03_INS_END_RMAC_SESSION:
        IGNORE(tc_scp03_card_end_rmac(&l->card, cmd, &sw));
        return sw;
    case TC_SCP03_INS_PUT_KEY: {
        struct tc_scp03_put_key pk;
        if (tc_scp03_card_put_key(&l->card, cmd, &pk, &sw) == TC_OK) {
            size_t i = pk.old_kvn != 0 ? index_of(&l->store, pk.old_kvn) : l->store.n;
            if (i < LOOP_KEYSETS) {
                if (i == l->store.n)
                    l->store.n++;
                l->store.sets[i] = pk.keys;
                l->store.seq[i] = 0;
                l->store.failures[i] = 0;
            }
            if (tc_scp03_put_key_response(&pk, data, 64, dlen) != TC_OK)
                sw = 0x6F00;
        }
        tc_memzero(&pk, sizeof pk);
        return sw;
    }
    case TC_SCP03_INS_DELETE: {
        /* D2 01 kvn, optionally after D0 01 id: delete the keyset. */
        if (!cmd->was_secured)
            return 0x6982;
        if (a->lc < 3 || a->data[a->lc - 3] != 0xD2 || a->data[a->lc - 2] != 0x01)
            return 0x6A80;
        size_t i = index_of(&l->store, a->data[a->lc - 1]);
        if (i == LOOP_KEYSETS)
            return 0x6A88;
        l->store.sets[i].kvn = 0xEF;
        data[0] = 0x00;
        *dlen = 1;
        return 0x9000;
    }
    case 0xEE: /* echo: the data back, or Le bytes of a pattern */
        if (a->lc > 0) {
            memcpy(data, a->data, a->lc);
            *dlen = a->lc;
        } else if (a->has_le) {
            for (size_t i = 0; i < a->le; i++)
                data[i] = (uint8_t)(i * 7u);
            *dlen = a->le;
        }
        return 0x9000;
    case 0xEC: /* wants Le = 16 exactly, else 6C10 */
        if (!a->has_le || a->le != 16)
            return 0x6C10;
        memset(data, 0x5A, 16);
        *dlen = 16;
        return 0x9000;
    case 0xE0: /* a warning with data */
        memset(data, 0x33, 4);
        *dlen = 4;
        return 0x6310;
    case 0xE2: /* an error */
        return 0x6A82;
    default:
        return sw;
    }
}

static tc_err loop_transmit(void *ctx, const uint8_t *cmd, size_t len, uint8_t *resp,
                            size_t resp_size, size_t *resp_len)
{
    struct loop *l = ctx;
    uint16_t sw = 0x6F00;
    size_t rlen = 0;
    l->commands++;
    *resp_len = 0;
    if (l->fail_at != 0 && l->commands == l->fail_at)
        return TC_FAIL(TC_ERR_IO, "loop: link broken");
    if (len < 4)
        return TC_FAIL(TC_ERR_IO, "loop: short command");
    if (cmd[1] == 0xC0 && l->pending_len > 0)
        return get_response(l, cmd, len, resp, resp_len);
    if (cmd[1] == TC_SCP03_INS_INITIALIZE_UPDATE && (cmd[0] & 0x80) != 0) {
        IGNORE(
            tc_scp03_card_initialize_update(&l->card, cmd, len, l->out, sizeof l->out, &rlen, &sw));
        put_sw(l->out, &rlen, sw);
        l->last_sw = sw;
        return deliver(l, l->out, rlen, resp, resp_size, resp_len);
    }
    if (cmd[1] == TC_SCP03_INS_EXTERNAL_AUTHENTICATE) {
        IGNORE(tc_scp03_card_external_authenticate(&l->card, cmd, len, &sw));
        put_sw(l->out, &rlen, sw);
        l->last_sw = sw;
        return deliver(l, l->out, rlen, resp, resp_size, resp_len);
    }
    if (cmd[1] == 0xA4 && (cmd[0] & 0x80) == 0) {
        tc_scp03_card_reset(&l->card);
        put_sw(resp, resp_len, l->select_sw);
        l->last_sw = l->select_sw;
        return TC_OK;
    }
    bool complete = false;
    const uint8_t *whole = NULL;
    size_t whole_len = 0;
    if (tc_scp03_chain_feed(&l->chain, cmd, len, &complete, &whole, &whole_len) != TC_OK) {
        /* A malformed APDU or broken chain: the secure channel decides. */
        whole = cmd;
        whole_len = len;
        complete = true;
    }
    if (!complete) {
        put_sw(resp, resp_len, 0x9000);
        return TC_OK;
    }
    struct tc_scp03_card_cmd c;
    size_t plen = 0;
    if (tc_scp03_card_unwrap(&l->card, whole, whole_len, l->plain, sizeof l->plain, &plen, &c,
                             &sw) != TC_OK) {
        put_sw(resp, resp_len, sw);
        l->last_sw = sw;
        return TC_OK;
    }
    static uint8_t data[70000];
    size_t dlen = 0;
    sw = dispatch(l, &c, data, &dlen);
    l->last_sw = sw;
    if (tc_scp03_card_wrap(&l->card, data, dlen, sw, l->out, sizeof l->out, &rlen) != TC_OK) {
        put_sw(resp, resp_len, 0x6F00);
        return TC_OK;
    }
    return deliver(l, l->out, rlen, resp, resp_size, resp_len);
}

void loop_init(struct loop *l, uint8_t i_param)
{
    memset(l, 0, sizeof *l);
    test_store_init(&l->store, &l->ops);
    l->cfg.i_param = i_param;
    memcpy(l->cfg.aid, LOOP_AID, sizeof LOOP_AID);
    l->cfg.aid_len = sizeof LOOP_AID;
    for (size_t i = 0; i < TC_SCP03_DIV_DATA_LEN; i++)
        l->cfg.div_data[i] = (uint8_t)(0xD0u + i);
    l->cfg.random = test_random;
    l->cfg.random_ctx = &l->random_state;
    tc_scp03_card_init(&l->card, &l->cfg, &l->ops);
    tc_scp03_chain_init(&l->chain, l->chain_buf, sizeof l->chain_buf);
    l->t.ctx = l;
    l->t.name = "in-process test card";
    l->t.transmit = loop_transmit;
    l->select_sw = 0x9000;
}

void loop_add_keys(struct loop *l, uint8_t kvn, size_t key_len, uint8_t seed, uint32_t seq)
{
    struct tc_scp03_keyset ks;
    make_keyset(&ks, kvn, key_len, seed);
    test_store_add(&l->store, &ks, seq);
}
