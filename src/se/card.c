/*
 * The card OS: power, ATR, logical channels, selection, command chaining,
 * the SCP03 secure channel per logical channel (scp03 module, card side) and
 * the dispatch of every command to the Issuer Security Domain or the
 * identity applet. Nothing here allocates: the card is one fixed-size struct.
 */
#include <fcntl.h>
#include <sys/file.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "se_internal.h"

/*
 * ISO/IEC 7816-3 §8 ATR offering T=1 only: TS 3B, T0 F8 (TA1 TB1 TC1 TD1
 * present, 8 historical bytes), TA1 13 (Fi/Di), TB1 00, TC1 00, TD1 81 (TD2
 * present, T=1), TD2 31 (TA3 TB3 present, T=1), TA3 FE (IFSC 254), TB3 45
 * (BWI 4, CWI 5), historical bytes "tcSE0100", TCK (XOR of T0..last).
 */
static const uint8_t atr_body[] = {0x3B, 0xF8, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x45,
                                   't',  'c',  'S',  'E',  '0',  '1',  '0',  '0'};

static tc_err put_atr(uint8_t *atr, size_t atr_size, size_t *atr_len)
{
    TC_ENSURE(atr != NULL && atr_len != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(atr_size >= sizeof atr_body + 1, TC_ERR_SPACE, "ATR buffer too small");
    uint8_t tck = 0;
    for (size_t i = 1; i < sizeof atr_body; i++)
        tck ^= atr_body[i];
    memcpy(atr, atr_body, sizeof atr_body);
    atr[sizeof atr_body] = tck;
    *atr_len = sizeof atr_body + 1;
    return TC_OK;
}

/* ------------------------------------------------------------------ store callbacks */

struct se_keyset *se_keyset_find(struct se_nvm *n, uint8_t kvn)
{
    for (size_t i = 0; i < TC_SE_MAX_KEYSETS; i++)
        if (n->keysets[i].kvn != 0 && n->keysets[i].kvn == kvn)
            return &n->keysets[i];
    return NULL;
}

static tc_err store_load_keyset(void *ctx, uint8_t kvn, struct tc_scp03_keyset *out)
{
    struct tc_se_card *card = ctx;
    const struct se_keyset *k = NULL;
    if (kvn == 0) {
        /* GP CS 2.3 §11.8.2: KVN 0 in INITIALIZE UPDATE = first available. */
        for (size_t i = 0; i < TC_SE_MAX_KEYSETS && k == NULL; i++)
            if (card->nvm.keysets[i].kvn != 0)
                k = &card->nvm.keysets[i];
    } else {
        k = se_keyset_find(&card->nvm, kvn);
    }
    if (k == NULL)
        return TC_FAIL(TC_ERR_NOT_FOUND, "no keyset with KVN %02X", kvn);
    return tc_scp03_keyset_set(out, k->kvn, k->enc, k->mac, k->dek, k->key_len);
}

uint16_t se_commit_sw(struct tc_se_card *card)
{
    return se_nvm_commit(card) == TC_OK ? SW_OK : SW_MEMORY_FAILURE;
}

static tc_err store_next_sequence(void *ctx, uint8_t kvn, uint32_t *seq)
{
    struct tc_se_card *card = ctx;
    (void)kvn; /* one counter per security domain (GET DATA 00C1) */
    if (card->nvm.seq >= TC_SE_SEQ_MAX)
        return TC_FAIL(TC_ERR_RANGE, "sequence counter exhausted");
    card->nvm.seq++;
    /* A failed commit leaves the card mute; power-on reloads the image. */
    if (se_nvm_commit(card) != TC_OK)
        return TC_ERR_IO;
    *seq = card->nvm.seq;
    return TC_OK;
}

static tc_err store_auth_failures(void *ctx, uint8_t kvn, uint32_t *count)
{
    struct tc_se_card *card = ctx;
    (void)kvn;
    *count = card->nvm.auth_failures;
    return TC_OK;
}

static tc_err store_auth_record(void *ctx, uint8_t kvn, bool success)
{
    struct tc_se_card *card = ctx;
    (void)kvn;
    uint32_t next = success ? 0 : card->nvm.auth_failures + (card->nvm.auth_failures < UINT32_MAX);
    if (next == card->nvm.auth_failures)
        return TC_OK;
    card->nvm.auth_failures = next;
    return se_nvm_commit(card) == TC_OK ? TC_OK : TC_ERR_IO;
}

static const struct tc_scp03_card_store se_store = {
    .ctx = NULL,
    .load_keyset = store_load_keyset,
    .next_sequence = store_next_sequence,
    .auth_failures = store_auth_failures,
    .auth_record = store_auth_record,
};

/* ------------------------------------------------------------------ power */

static void ram_clear(struct tc_se_card *card)
{
    for (size_t i = 0; i < SE_MAX_SESSIONS; i++)
        tc_scp03_card_reset(&card->ram.sessions[i].session);
    se_ec_key_forget(&card->ram.sign_key);
    tc_memzero(&card->ram, sizeof card->ram);
    for (size_t i = 0; i < TC_SE_MAX_CHANNELS; i++)
        card->ram.ch[i].session = -1;
}

static void ram_setup(struct tc_se_card *card)
{
    struct se_ram *r = &card->ram;
    r->store = se_store;
    r->store.ctx = card;
    memset(&r->cfg, 0, sizeof r->cfg);
    r->cfg.i_param = card->nvm.i_param;
    memcpy(r->cfg.aid, card->nvm.isd_aid, card->nvm.isd_aid_len);
    r->cfg.aid_len = card->nvm.isd_aid_len;
    memcpy(r->cfg.div_data, card->nvm.kdd, TC_SE_KDD_LEN);
    r->cfg.max_auth_failures = SE_AUTH_FAIL_LIMIT;
    r->cfg.random = card->random;
    r->cfg.random_ctx = card->random_ctx;
    tc_scp03_chain_init(&r->chain, r->chain_buf, sizeof r->chain_buf);
    /* ISO/IEC 7816-4 §5.4.1: the basic channel is always open; GP CS 2.3
     * §3.4.2: the ISD is the default selected application on it. */
    r->ch[0].open = 1;
    r->ch[0].selected = SE_OBJ_ISD;
    r->powered = 1;
}

tc_err tc_se_power_on(struct tc_se_card *card, uint8_t *atr, size_t atr_size, size_t *atr_len)
{
    TC_ENSURE(card != NULL, TC_ERR_ARG);
    ram_clear(card);
    /* After a power loss in a write, the NVM mirror is whatever the image
     * says now (old or new state), as on a real card. */
    TC_GUARD(se_nvm_load(card));
    ram_setup(card);
    return put_atr(atr, atr_size, atr_len);
}

void tc_se_power_off(struct tc_se_card *card)
{
    if (card != NULL)
        ram_clear(card);
}

tc_err tc_se_reset(struct tc_se_card *card, uint8_t *atr, size_t atr_size, size_t *atr_len)
{
    return tc_se_power_on(card, atr, atr_size, atr_len);
}

bool tc_se_powered(const struct tc_se_card *card)
{
    return card != NULL && card->ram.powered && !card->ram.mute;
}

/* ------------------------------------------------------------------ open / close */

static struct tc_se_card *card_alloc(void)
{
    struct tc_se_card *card = calloc(1, sizeof *card);
    if (card == NULL)
        return NULL;
    card->fd = -1;
    card->tear_at = UINT64_MAX;
    for (size_t i = 0; i < TC_SE_MAX_CHANNELS; i++)
        card->ram.ch[i].session = -1;
    return card;
}

tc_err tc_se_open(const char *path, unsigned flags, struct tc_se_card **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_se_card *card = NULL;
    TC_CHECK(path != NULL && out != NULL, TC_ERR_ARG);
    *out = NULL;
    card = card_alloc();
    TC_CHECK_MSG(card != NULL, TC_ERR_NOMEM, "cannot allocate a card");
    card->flags = flags;
    card->fd = open(path, O_RDWR | O_CLOEXEC);
    TC_CHECK_MSG(card->fd >= 0, TC_ERR_IO, "cannot open card image %s", path);
    /* One card, one holder: a second emulator on the same image would
     * overwrite its commits. */
    TC_CHECK_MSG(flock(card->fd, LOCK_EX | LOCK_NB) == 0, TC_ERR_STATE,
                 "card image %s is in use by another process", path);
    TC_TRY(se_image_read(card->fd, &card->nvm, &card->cur_slot, &card->generation));
    *out = card;
    card = NULL;
    ret = TC_OK;
out:
    tc_se_close(card);
    return ret;
}

tc_err tc_se_open_mem(const struct tc_se_params *p, struct tc_se_card **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_se_card *card = NULL;
    TC_CHECK(p != NULL && out != NULL, TC_ERR_ARG);
    *out = NULL;
    card = card_alloc();
    TC_CHECK_MSG(card != NULL, TC_ERR_NOMEM, "cannot allocate a card");
    se_nvm_init(&card->nvm, p);
    TC_TRY(se_nvm_validate(&card->nvm));
    card->generation = 1;
    *out = card;
    card = NULL;
    ret = TC_OK;
out:
    tc_se_close(card);
    return ret;
}

void tc_se_close(struct tc_se_card *card)
{
    if (card == NULL)
        return;
    ram_clear(card);
    if (card->fd >= 0)
        (void)close(card->fd);
    tc_memzero(card, sizeof *card);
    free(card);
}

/* ------------------------------------------------------------------ sessions */

static struct tc_scp03_card *session_of(struct tc_se_card *card, const struct se_channel *ch)
{
    if (ch->session < 0)
        return NULL;
    return &card->ram.sessions[ch->session].session;
}

void se_session_end(struct tc_se_card *card, struct se_channel *ch)
{
    if (ch->session >= 0) {
        struct se_session_slot *s = &card->ram.sessions[ch->session];
        tc_scp03_card_reset(&s->session);
        s->in_use = 0;
        ch->session = -1;
    }
}

static struct tc_scp03_card *session_get(struct tc_se_card *card, struct se_channel *ch,
                                         uint8_t channel)
{
    struct tc_scp03_card *s = session_of(card, ch);
    if (s != NULL)
        return s;
    for (size_t i = 0; i < SE_MAX_SESSIONS; i++) {
        struct se_session_slot *slot = &card->ram.sessions[i];
        if (!slot->in_use) {
            slot->in_use = 1;
            slot->channel = channel;
            tc_scp03_card_init(&slot->session, &card->ram.cfg, &card->ram.store);
            ch->session = (int8_t)i;
            return &slot->session;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ SELECT */

static const uint8_t *obj_aid(const struct tc_se_card *card, enum se_obj o, size_t *len)
{
    switch (o) {
    case SE_OBJ_ISD:
        *len = card->nvm.isd_aid_len;
        return card->nvm.isd_aid;
    case SE_OBJ_APPLET:
        *len = card->nvm.app.aid_len;
        return card->nvm.app.aid;
    case SE_OBJ_NONE:
    default:
        *len = 0;
        return NULL;
    }
}

static bool obj_selectable(const struct tc_se_card *card, enum se_obj o)
{
    uint8_t lc = card->nvm.life_cycle;
    switch (o) {
    case SE_OBJ_ISD:
        return true;
    case SE_OBJ_APPLET:
        /* GP CS 2.3 §5.1.1.4/5: in CARD_LOCKED and TERMINATED only the ISD
         * can be selected; §5.3.1: a LOCKED application cannot. */
        return lc != TC_SE_LC_CARD_LOCKED && lc != TC_SE_LC_TERMINATED &&
               se_applet_selectable(&card->nvm);
    case SE_OBJ_NONE:
    default:
        return false;
    }
}

static bool aid_prefix(const uint8_t *aid, size_t aid_len, const uint8_t *p, size_t n)
{
    return n <= aid_len && (n == 0 || tc_ct_equal(aid, p, n));
}

static void select_to(struct tc_se_card *card, struct se_channel *ch, enum se_obj o)
{
    /* GP CS 2.3 §10.2.3: the secure channel session ends when its
     * application is deselected. */
    se_session_end(card, ch);
    if (ch->selected == SE_OBJ_APPLET)
        se_applet_reset_ram(card);
    ch->selected = (uint8_t)o;
    ch->store_active = 0;
    ch->perso_target = SE_OBJ_NONE;
    ch->status_p1 = 0;
    ch->cert_active = 0;
}

static uint16_t do_select(struct tc_se_card *card, struct se_channel *ch, const struct tc_apdu *a,
                          struct tc_buf *out)
{
    /* ISO/IEC 7816-4 §11.1.1, GP CS 2.3 §11.9: P1 04 select by DF name;
     * P2 b2-b1 00 first or only occurrence, 10 next; b4-b3 00 return FCI,
     * 11 no response data. */
    if (a->p1 != 0x04)
        return SW_WRONG_P1P2;
    uint8_t occ = a->p2 & 0x03u, resp_kind = a->p2 & 0x0Cu;
    if ((a->p2 & 0xF0u) != 0 || (occ != 0x00 && occ != 0x02) ||
        (resp_kind != 0x00 && resp_kind != 0x0C))
        return SW_WRONG_P1P2;
    if (a->lc > TC_SE_AID_MAX)
        return SW_WRONG_LENGTH;
    enum se_obj found = SE_OBJ_NONE;
    if (a->lc == 0) {
        /* GP CS 2.3 §11.9.2.3: an empty AID selects the ISD. */
        found = occ == 0 ? SE_OBJ_ISD : SE_OBJ_NONE;
    } else {
        static const enum se_obj order[] = {SE_OBJ_ISD, SE_OBJ_APPLET};
        size_t start = 0;
        if (occ == 0x02) {
            /* Next occurrence: after the application currently selected. */
            for (size_t i = 0; i < TC_ARRAY_LEN(order); i++)
                if (order[i] == ch->selected)
                    start = i + 1;
        }
        for (size_t i = start; i < TC_ARRAY_LEN(order) && found == SE_OBJ_NONE; i++) {
            size_t len;
            const uint8_t *aid = obj_aid(card, order[i], &len);
            if (aid != NULL && obj_selectable(card, order[i]) &&
                aid_prefix(aid, len, a->data, a->lc))
                found = order[i];
        }
    }
    if (found == SE_OBJ_NONE) {
        /* ISO 7816-4: a failed SELECT leaves the current selection. */
        return SW_NOT_FOUND;
    }
    if (found == SE_OBJ_APPLET) {
        /* The identity applet is not multi-selectable (GP CS 2.3 §6.? / JC
         * 3 MultiSelectable): refuse it on a second channel. */
        for (size_t i = 0; i < TC_SE_MAX_CHANNELS; i++) {
            const struct se_channel *o = &card->ram.ch[i];
            if (o != ch && o->open && o->selected == SE_OBJ_APPLET)
                return SW_CONDITIONS;
        }
    }
    select_to(card, ch, found);
    if (resp_kind == 0x0C)
        return card->nvm.life_cycle == TC_SE_LC_CARD_LOCKED ? SW_CARD_LOCKED : SW_OK;
    if (found == SE_OBJ_ISD) {
        se_isd_fci(card, out);
        /* GP CS 2.3 §11.9.3: warning 6283 when the card is CARD_LOCKED. */
        return card->nvm.life_cycle == TC_SE_LC_CARD_LOCKED ? SW_CARD_LOCKED : SW_OK;
    }
    size_t m = tc_tlv_begin(out, 0x6F);
    tc_tlv_put(out, 0x84, card->nvm.app.aid, card->nvm.app.aid_len);
    tc_tlv_end(out, m);
    return SW_OK;
}

/* ------------------------------------------------------------------ MANAGE CHANNEL */

static uint16_t do_manage_channel(struct tc_se_card *card, uint8_t from, const struct tc_apdu *a,
                                  struct tc_buf *out)
{
    /* ISO/IEC 7816-4 §11.1.2, GP CS 2.3 §11.7: P1 00 open, 80 close. */
    struct se_ram *r = &card->ram;
    if (a->lc != 0)
        return SW_WRONG_LENGTH;
    if (a->p1 == 0x00) {
        uint8_t n = 0;
        if (a->p2 == 0x00) {
            for (uint8_t i = 1; i < TC_SE_MAX_CHANNELS && n == 0; i++)
                if (!r->ch[i].open)
                    n = i;
            if (n == 0)
                return SW_FUNC_NOT_SUPP; /* no channel available */
        } else {
            if (a->p2 >= TC_SE_MAX_CHANNELS)
                return SW_WRONG_P1P2;
            if (r->ch[a->p2].open)
                return SW_CONDITIONS;
            n = a->p2;
        }
        struct se_channel *nc = &r->ch[n];
        memset(nc, 0, sizeof *nc);
        nc->session = -1;
        nc->open = 1;
        /* ISO 7816-4 §5.4.1: opened from the basic channel, the default
         * application; from another, that channel's application if it is
         * multi-selectable (the ISD is; the identity applet is not). */
        nc->selected = SE_OBJ_ISD;
        (void)from;
        if (a->p2 == 0x00)
            tc_buf_put_u8(out, n);
        return SW_OK;
    }
    if (a->p1 == 0x80) {
        if (a->p2 == 0)
            return SW_FUNC_NOT_SUPP; /* the basic channel cannot be closed */
        if (a->p2 >= TC_SE_MAX_CHANNELS)
            return SW_WRONG_P1P2;
        struct se_channel *c = &r->ch[a->p2];
        if (!c->open)
            return SW_REF_NOT_FOUND;
        se_session_end(card, c);
        if (c->selected == SE_OBJ_APPLET)
            se_applet_reset_ram(card);
        memset(c, 0, sizeof *c);
        c->session = -1;
        return SW_OK;
    }
    return SW_WRONG_P1P2;
}

/* ------------------------------------------------------------------ the command path */

/* Response data cap: what still fits with the R-ENC/R-MAC overhead. */
#define SE_RESP_DATA_MAX (TC_SE_MAX_RESPONSE - 2u - TC_SCP03_RESP_OVERHEAD)

static void put_sw(uint8_t *resp, size_t *len, uint16_t sw)
{
    resp[*len] = (uint8_t)(sw >> 8);
    resp[*len + 1] = (uint8_t)sw;
    *len += 2;
}

/* The SCP03 commands the card OS answers for whichever application is
 * selected (GP CS 2.3 §10.?: an applet delegates them to its security
 * domain's secure channel). */
static uint16_t do_secure_channel(struct tc_se_card *card, struct se_channel *ch, uint8_t channel,
                                  const uint8_t *raw, size_t raw_len, uint8_t ins,
                                  struct tc_buf *out)
{
    uint16_t sw = SW_UNKNOWN;
    if (card->nvm.life_cycle == TC_SE_LC_TERMINATED)
        return SW_CONDITIONS;
    struct tc_scp03_card *s = session_get(card, ch, channel);
    if (s == NULL)
        return SW_CONDITIONS; /* every secure channel slot busy */
    if (ins == TC_SCP03_INS_INITIALIZE_UPDATE) {
        uint8_t *p = tc_buf_reserve(out, TC_SCP03_IU_RESP_MAX);
        size_t n = 0;
        if (p == NULL)
            return SW_UNKNOWN;
        tc_err rc =
            tc_scp03_card_initialize_update(s, raw, raw_len, p, TC_SCP03_IU_RESP_MAX, &n, &sw);
        if (card->ram.mute)
            return SW_MEMORY_FAILURE;
        out->len -= TC_SCP03_IU_RESP_MAX - (rc == TC_OK && sw == SW_OK ? n : 0);
        return sw;
    }
    if (tc_scp03_card_external_authenticate(s, raw, raw_len, &sw) != TC_OK)
        tc_error_clear();
    if (card->ram.mute)
        return SW_MEMORY_FAILURE;
    return sw;
}

static void handle(struct tc_se_card *card, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                   size_t *resp_len)
{
    struct se_ram *r = &card->ram;
    struct tc_buf out;
    tc_buf_init_fixed(&out, resp, SE_RESP_DATA_MAX);
    uint16_t sw = SW_UNKNOWN;
    struct tc_scp03_card *s = NULL;
    bool wrap = false;
    *resp_len = 0;

    struct tc_cla_info ci;
    struct tc_apdu a;
    if (cmd_len < 4) {
        sw = SW_WRONG_LENGTH;
        goto done;
    }
    if (tc_cla_decode(cmd[0], &ci) != TC_OK) {
        sw = SW_CLA_NOT_SUPPORTED;
        goto done;
    }
    /* ISO/IEC 7816-4 §5.4.1: a command on a channel that is not open. */
    if (ci.channel >= TC_SE_MAX_CHANNELS || !r->ch[ci.channel].open) {
        sw = SW_CHANNEL_NOT_SUPP;
        goto done;
    }
    struct se_channel *ch = &r->ch[ci.channel];
    if (tc_apdu_decode(cmd, cmd_len, &a) != TC_OK || a.lc > TC_SE_MAX_CMD_DATA) {
        tc_error_clear();
        sw = SW_WRONG_LENGTH;
        goto done;
    }

    /* ISO/IEC 7816-4 §5.3.3 command chaining: collect, then process the
     * whole command (the secure channel protected it as one). */
    bool complete = false;
    const uint8_t *full = NULL;
    size_t full_len = 0;
    tc_err rc = tc_scp03_chain_feed(&r->chain, cmd, cmd_len, &complete, &full, &full_len);
    if (rc != TC_OK) {
        tc_error_clear();
        sw = rc == TC_ERR_SPACE || rc == TC_ERR_NOMEM ? SW_WRONG_LENGTH : SW_WRONG_DATA;
        goto done;
    }
    if (!complete) {
        sw = SW_OK;
        goto done;
    }
    if (tc_apdu_decode(full, full_len, &a) != TC_OK || tc_cla_decode(full[0], &ci) != TC_OK) {
        tc_error_clear();
        sw = SW_WRONG_LENGTH;
        goto done;
    }

    /* Interindustry commands that never travel inside the secure channel. */
    if (!ci.proprietary && !ci.secure && a.ins == 0xA4) {
        sw = do_select(card, ch, &a, &out);
        goto done;
    }
    if (!ci.proprietary && !ci.secure && a.ins == 0x70) {
        /* GP CS 2.3 §5.1.1.5: a TERMINATED card only identifies itself. */
        sw = card->nvm.life_cycle == TC_SE_LC_TERMINATED
                 ? SW_CONDITIONS
                 : do_manage_channel(card, ci.channel, &a, &out);
        goto done;
    }
    if (ch->selected == SE_OBJ_NONE) {
        sw = SW_CONDITIONS;
        goto done;
    }
    if (ci.proprietary &&
        (a.ins == TC_SCP03_INS_INITIALIZE_UPDATE || a.ins == TC_SCP03_INS_EXTERNAL_AUTHENTICATE)) {
        sw = do_secure_channel(card, ch, ci.channel, full, full_len, a.ins, &out);
        goto done;
    }

    /* Everything else passes the secure channel of this logical channel. */
    struct se_cmd c;
    memset(&c, 0, sizeof c);
    s = session_of(card, ch);
    if (s != NULL) {
        struct tc_scp03_card_cmd pc;
        size_t plain_len = 0;
        rc = tc_scp03_card_unwrap(s, full, full_len, r->plain, sizeof r->plain, &plain_len, &pc,
                                  &sw);
        if (rc != TC_OK || sw != SW_OK) {
            tc_error_clear();
            if (sw == SW_OK)
                sw = SW_SECURITY;
            goto done;
        }
        a = pc.apdu;
        c.secured = pc.was_secured;
        wrap = tc_scp03_card_authenticated(s);
        c.level = wrap ? tc_scp03_card_level(s) : 0;
        c.authenticated = wrap;
    } else if (ci.secure) {
        /* Secure messaging indicated but no session on this channel. */
        sw = SW_SECURITY;
        goto done;
    }
    c.card = card;
    c.ch = ch;
    c.channel = ci.channel;
    c.proprietary = ci.proprietary;
    c.cla = a.cla;
    c.ins = a.ins;
    c.p1 = a.p1;
    c.p2 = a.p2;
    c.data = a.data;
    c.lc = a.lc;
    c.ne = a.has_le ? a.le : 0;
    c.has_le = a.has_le;
    c.out = &out;
    c.session = s;

    if (ci.proprietary &&
        (a.ins == TC_SCP03_INS_BEGIN_RMAC_SESSION || a.ins == TC_SCP03_INS_END_RMAC_SESSION)) {
        struct tc_scp03_card_cmd pc = {.apdu = a, .was_secured = c.secured};
        if (s == NULL) {
            sw = SW_CONDITIONS;
        } else if (a.ins == TC_SCP03_INS_BEGIN_RMAC_SESSION) {
            if (tc_scp03_card_begin_rmac(s, &pc, &sw) != TC_OK)
                tc_error_clear();
        } else {
            if (tc_scp03_card_end_rmac(s, &pc, &sw) != TC_OK)
                tc_error_clear();
        }
        tc_error_clear();
        goto done;
    }
    sw = ch->selected == SE_OBJ_APPLET ? se_applet_dispatch(&c) : se_isd_dispatch(&c);

done:
    if (card->ram.mute)
        return;
    if (tc_buf_status(&out) != TC_OK) {
        tc_error_clear();
        out.len = 0;
        sw = SW_UNKNOWN;
    }
    if (sw != SW_OK && (sw & 0xFF00u) != 0x6200u && (sw & 0xFF00u) != 0x6300u)
        out.len = 0; /* ISO 7816-4: no data with an error status */
    if (wrap && s != NULL && tc_scp03_card_authenticated(s)) {
        /* Amendment D §6.2.7-8: R-ENC / R-MAC on the response. */
        memcpy(r->plain, resp, out.len);
        size_t n = 0;
        if (tc_scp03_card_wrap(s, r->plain, out.len, sw, resp, TC_SE_MAX_RESPONSE, &n) == TC_OK) {
            *resp_len = n;
            tc_memzero(r->plain, out.len);
            return;
        }
        tc_error_clear();
        tc_memzero(r->plain, out.len);
        out.len = 0;
        sw = SW_UNKNOWN;
    }
    *resp_len = out.len;
    put_sw(resp, resp_len, sw);
}

tc_err tc_se_process(struct tc_se_card *card, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                     size_t resp_size, size_t *resp_len)
{
    TC_ENSURE(card != NULL && resp != NULL && resp_len != NULL, TC_ERR_ARG);
    TC_ENSURE(cmd != NULL || cmd_len == 0, TC_ERR_ARG);
    TC_ENSURE_MSG(resp_size >= TC_SE_MAX_RESPONSE, TC_ERR_ARG,
                  "response buffer must hold TC_SE_MAX_RESPONSE bytes");
    *resp_len = 0;
    TC_ENSURE_MSG(card->ram.powered && !card->ram.mute, TC_ERR_IO, "card is not powered");
    if (cmd_len > TC_SE_MAX_COMMAND) {
        resp[0] = 0x67;
        resp[1] = 0x00;
        *resp_len = 2;
        return TC_OK;
    }
    handle(card, cmd, cmd_len, resp, resp_len);
    if (card->ram.mute) {
        *resp_len = 0;
        ram_clear(card);
        card->ram.mute = 1;
        return TC_FAIL(TC_ERR_IO, "card lost power during an NVM write");
    }
    return TC_OK;
}

/* ------------------------------------------------------------------ test hooks */

void se_test_set_tear(struct tc_se_card *card, uint64_t point)
{
    card->tear_at = point;
}

uint64_t se_test_write_points(const struct tc_se_card *card)
{
    return card->write_points;
}

const struct se_nvm *se_test_nvm(const struct tc_se_card *card)
{
    return &card->nvm;
}

void se_test_set_random(struct tc_se_card *card, tc_err (*fn)(void *, uint8_t *, size_t), void *ctx)
{
    card->random = fn;
    card->random_ctx = ctx;
    card->ram.cfg.random = fn;
    card->ram.cfg.random_ctx = ctx;
}
