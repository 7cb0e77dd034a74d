/*
 * The Issuer Security Domain (GlobalPlatform Card Specification 2.3): GET
 * DATA, GET STATUS, SET STATUS (card life cycle), PUT KEY and DELETE KEY
 * (key store), INSTALL, DELETE and STORE DATA. Each command's class, the life
 * cycle states it is allowed in and the security level it requires are in
 * one table (docs/se.md shows the same table).
 *
 * A handler validates everything before it changes the NVM mirror, then
 * commits once, so each state-changing command is atomic.
 */
#include <string.h>

#include "se_internal.h"

static const uint8_t identity_elf[] = {TC_SE_IDENTITY_ELF};
static const uint8_t identity_module[] = {TC_SE_IDENTITY_AID};

/* ------------------------------------------------------------------ FCI and card data */

/* GP CS 2.3 Annex H.2: card recognition data, an OID list under tag 73. */
static void put_card_recognition(const struct tc_se_card *card, struct tc_buf *b)
{
    static const uint8_t oid_crd[] = {0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x01};
    /* {globalPlatform 2 2 3}: card management type and version (GP 2.3) */
    static const uint8_t oid_cm[] = {0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x02, 0x02, 0x03};
    static const uint8_t oid_cis[] = {0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x03};
    /* {globalPlatform 4 scp i}: SCP03 with this card's i-parameter */
    uint8_t oid_scp[] = {0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x04, TC_SCP03_ID, 0x00};
    oid_scp[sizeof oid_scp - 1] = card->nvm.i_param;
    size_t m73 = tc_tlv_begin(b, 0x73);
    tc_tlv_put(b, 0x06, oid_crd, sizeof oid_crd);
    size_t m = tc_tlv_begin(b, 0x60);
    tc_tlv_put(b, 0x06, oid_cm, sizeof oid_cm);
    tc_tlv_end(b, m);
    m = tc_tlv_begin(b, 0x63);
    tc_tlv_put(b, 0x06, oid_cis, sizeof oid_cis);
    tc_tlv_end(b, m);
    m = tc_tlv_begin(b, 0x64);
    tc_tlv_put(b, 0x06, oid_scp, sizeof oid_scp);
    tc_tlv_end(b, m);
    tc_tlv_end(b, m73);
}

void se_isd_fci(const struct tc_se_card *card, struct tc_buf *out)
{
    /* GP CS 2.3 §11.9.3.1: 6F { 84 SD AID, A5 { 73 security domain
     * management data, 9F65 maximum length of data field in command } }. */
    size_t m6f = tc_tlv_begin(out, 0x6F);
    tc_tlv_put(out, 0x84, card->nvm.isd_aid, card->nvm.isd_aid_len);
    size_t ma5 = tc_tlv_begin(out, 0xA5);
    put_card_recognition(card, out);
    uint8_t max_lc = 0xFF;
    tc_tlv_put(out, 0x9F65, &max_lc, 1);
    tc_tlv_end(out, ma5);
    tc_tlv_end(out, m6f);
}

/* ------------------------------------------------------------------ requirement table */

enum {
    LC_OPR = 1u << 0,
    LC_INIT = 1u << 1,
    LC_SEC = 1u << 2,
    LC_LOCK = 1u << 3,
    LC_TERM = 1u << 4,
    LC_ALL = 0x1Fu,
    LC_MANAGE = LC_OPR | LC_INIT | LC_SEC
};

enum se_need { NEED_NONE = 0, NEED_CMAC, NEED_CMAC_CDEC };

static unsigned lc_bit(uint8_t lc)
{
    switch (lc) {
    case TC_SE_LC_OP_READY:
        return LC_OPR;
    case TC_SE_LC_INITIALIZED:
        return LC_INIT;
    case TC_SE_LC_SECURED:
        return LC_SEC;
    case TC_SE_LC_CARD_LOCKED:
        return LC_LOCK;
    case TC_SE_LC_TERMINATED:
    default:
        return LC_TERM;
    }
}

/* Does the command arrive with the protection `n` asks for? */
static bool level_ok(const struct se_cmd *c, enum se_need n)
{
    switch (n) {
    case NEED_NONE:
        return true;
    case NEED_CMAC:
        return c->authenticated && c->secured && (c->level & SE_LVL_CMAC);
    case NEED_CMAC_CDEC:
        return c->authenticated && c->secured && (c->level & SE_LVL_CMAC) &&
               (c->level & SE_LVL_CDEC);
    default:
        return false;
    }
}

bool se_level_ok_cmac(const struct se_cmd *c)
{
    return level_ok(c, NEED_CMAC);
}

bool se_level_ok_cdec(const struct se_cmd *c)
{
    return level_ok(c, NEED_CMAC_CDEC);
}

/* ------------------------------------------------------------------ GET DATA */

static uint16_t get_data(struct se_cmd *c)
{
    /* GP CS 2.3 §11.3: P1 P2 = tag (P1 00 for a one-byte tag); no data. */
    const struct se_nvm *n = &c->card->nvm;
    struct tc_buf *o = c->out;
    if (c->lc != 0)
        return SW_WRONG_LENGTH;
    uint32_t tag = c->p1 == 0 ? c->p2 : ((uint32_t)c->p1 << 8 | c->p2);
    if (n->life_cycle == TC_SE_LC_TERMINATED && tag != 0x9F7F && tag != TC_SE_TAG_LIFE_CYCLE)
        return SW_CONDITIONS; /* only identification survives termination */
    switch (tag) {
    case 0x42: /* Issuer Identification Number */
        tc_tlv_put(o, 0x42, n->iin, n->iin_len);
        return SW_OK;
    case 0x45: /* Card Image Number */
        tc_tlv_put(o, 0x45, n->cin, n->cin_len);
        return SW_OK;
    case 0x66: { /* Card Data (GP CS 2.3 §H.2) */
        size_t m = tc_tlv_begin(o, 0x66);
        put_card_recognition(c->card, o);
        tc_tlv_end(o, m);
        return SW_OK;
    }
    case 0xE0: { /* Key Information Template (GP CS 2.3 §11.3.3.1) */
        size_t m = tc_tlv_begin(o, 0xE0);
        for (size_t i = 0; i < TC_SE_MAX_KEYSETS; i++) {
            const struct se_keyset *k = &n->keysets[i];
            if (k->kvn == 0)
                continue;
            for (uint8_t id = 1; id <= 3; id++) {
                /* C0 04 key id, KVN, key type 88 (AES), key length */
                uint8_t ki[4] = {id, k->kvn, SE_KEY_TYPE_AES, k->key_len};
                tc_tlv_put(o, 0xC0, ki, sizeof ki);
            }
        }
        tc_tlv_end(o, m);
        return SW_OK;
    }
    case 0xC1: { /* Sequence Counter of the default keyset (Amd D: 3 bytes) */
        uint8_t s[3] = {(uint8_t)(n->seq >> 16), (uint8_t)(n->seq >> 8), (uint8_t)n->seq};
        tc_tlv_put(o, 0xC1, s, sizeof s);
        return SW_OK;
    }
    case 0xCF: /* Key diversification data (as INITIALIZE UPDATE returns it) */
        tc_tlv_put(o, 0xCF, n->kdd, TC_SE_KDD_LEN);
        return SW_OK;
    case 0x9F7F: /* Card Production Life Cycle data */
        tc_tlv_put(o, 0x9F7F, n->cplc, sizeof n->cplc);
        return SW_OK;
    case TC_SE_TAG_EID:
        tc_tlv_put(o, 0x5A, n->eid, TC_SE_EID_LEN);
        return SW_OK;
    case TC_SE_TAG_EID_GSMA: { /* SGP.22 §5.7.20 EID: BF3E { 5A EID } */
        size_t m = tc_tlv_begin(o, 0xBF3E);
        tc_tlv_put(o, 0x5A, n->eid, TC_SE_EID_LEN);
        tc_tlv_end(o, m);
        return SW_OK;
    }
    case TC_SE_TAG_LIFE_CYCLE:
        tc_tlv_put(o, 0x9F70, &n->life_cycle, 1);
        return SW_OK;
    default:
        break;
    }
    /* Profile objects personalised with STORE DATA. */
    struct tc_tlv t;
    if (n->profile_len > 0 && tc_tlv_find(n->profile, n->profile_len, tag, &t) == TC_OK) {
        tc_tlv_put(o, tag, t.value, t.len);
        return SW_OK;
    }
    tc_error_clear();
    return SW_REF_NOT_FOUND;
}

/* ------------------------------------------------------------------ GET STATUS */

enum { ENTRY_ISD, ENTRY_APP, ENTRY_ELF, ENTRY_ELF_MOD };

/* GP CS 2.3 §11.4.3: one registry entry, TLV (E3 ...) or legacy format. */
static void status_entry(const struct tc_se_card *card, int kind, bool tlv, struct tc_buf *b)
{
    const struct se_nvm *n = &card->nvm;
    static const uint8_t isd_priv[3] = {0x9E, 0xFE, 0x80}; /* SD, card lock/terminate, ... */
    static const uint8_t app_priv[3] = {0x00, 0x00, 0x00};
    static const uint8_t elf_version[2] = {0x01, 0x00};
    const uint8_t *aid = NULL;
    size_t aid_len = 0;
    uint8_t state = 0;
    const uint8_t *priv = NULL;
    switch (kind) {
    case ENTRY_ISD:
        aid = n->isd_aid;
        aid_len = n->isd_aid_len;
        state = n->life_cycle;
        priv = isd_priv;
        break;
    case ENTRY_APP:
        aid = n->app.aid;
        aid_len = n->app.aid_len;
        state = n->app.state;
        priv = app_priv;
        break;
    case ENTRY_ELF:
    case ENTRY_ELF_MOD:
    default:
        aid = identity_elf;
        aid_len = sizeof identity_elf;
        state = 0x01; /* LOADED */
        break;
    }
    if (tlv) {
        size_t m = tc_tlv_begin(b, 0xE3);
        tc_tlv_put(b, 0x4F, aid, aid_len);
        tc_tlv_put(b, 0x9F70, &state, 1);
        if (priv != NULL)
            tc_tlv_put(b, 0xC5, priv, 3);
        if (kind == ENTRY_APP)
            tc_tlv_put(b, 0xC4, identity_elf, sizeof identity_elf);
        if (kind == ENTRY_ELF || kind == ENTRY_ELF_MOD)
            tc_tlv_put(b, 0xCE, elf_version, sizeof elf_version);
        if (kind == ENTRY_ELF_MOD)
            tc_tlv_put(b, 0x84, identity_module, sizeof identity_module);
        if (kind != ENTRY_ISD)
            tc_tlv_put(b, 0xCC, n->isd_aid, n->isd_aid_len);
        tc_tlv_end(b, m);
        return;
    }
    tc_buf_put_u8(b, (uint8_t)aid_len);
    tc_buf_put(b, aid, aid_len);
    tc_buf_put_u8(b, state);
    tc_buf_put_u8(b, priv != NULL ? priv[0] : 0x00);
    if (kind == ENTRY_ELF_MOD) {
        tc_buf_put_u8(b, 1);
        tc_buf_put_u8(b, (uint8_t)sizeof identity_module);
        tc_buf_put(b, identity_module, sizeof identity_module);
    }
}

static uint16_t get_status(struct se_cmd *c)
{
    struct tc_se_card *card = c->card;
    struct se_channel *ch = c->ch;
    const struct se_nvm *n = &card->nvm;
    int kinds[2] = {ENTRY_ISD, ENTRY_ISD};
    size_t nkinds = 0;
    switch (c->p1) {
    case 0x80:
        kinds[nkinds++] = ENTRY_ISD;
        break;
    case 0x40:
        if (n->app.present)
            kinds[nkinds++] = ENTRY_APP;
        break;
    case 0x20:
        kinds[nkinds++] = ENTRY_ELF;
        break;
    case 0x10:
        kinds[nkinds++] = ENTRY_ELF_MOD;
        break;
    default:
        return SW_WRONG_P1P2;
    }
    if ((c->p2 & 0xFCu) != 0)
        return SW_WRONG_P1P2;
    bool tlv = (c->p2 & 0x02u) != 0, next = (c->p2 & 0x01u) != 0;
    /* Search criteria: 4F LL AID-prefix (GP CS 2.3 §11.4.2.2), optionally a
     * 5C tag list (accepted; every tag is always returned). */
    struct tc_cursor cur;
    struct tc_tlv t;
    tc_cursor_init(&cur, c->data, c->lc);
    if (tc_tlv_next(&cur, &t) != TC_OK || t.tag != 0x4F || t.len > TC_SE_AID_MAX) {
        tc_error_clear();
        return SW_WRONG_DATA;
    }
    const uint8_t *prefix = t.value;
    size_t prefix_len = t.len;
    if (tc_cursor_remaining(&cur) > 0) {
        struct tc_tlv tl;
        if (tc_tlv_next(&cur, &tl) != TC_OK || tl.tag != 0x5C ||
            tc_cursor_expect_end(&cur) != TC_OK) {
            tc_error_clear();
            return SW_WRONG_DATA;
        }
    }
    size_t start = 0;
    if (next) {
        if (ch->status_p1 != c->p1 || ch->status_tlv != (uint8_t)tlv)
            return SW_CONDITIONS; /* no GET STATUS to continue */
        start = ch->status_next;
    }
    ch->status_p1 = 0;
    size_t found = 0;
    uint8_t tmp[96];
    for (size_t i = start; i < nkinds; i++) {
        size_t aid_len;
        const uint8_t *aid;
        if (kinds[i] == ENTRY_ISD) {
            aid = n->isd_aid;
            aid_len = n->isd_aid_len;
        } else if (kinds[i] == ENTRY_APP) {
            aid = n->app.aid;
            aid_len = n->app.aid_len;
        } else {
            aid = identity_elf;
            aid_len = sizeof identity_elf;
        }
        if (prefix_len > aid_len || (prefix_len > 0 && !tc_ct_equal(aid, prefix, prefix_len)))
            continue;
        struct tc_buf e;
        tc_buf_init_fixed(&e, tmp, sizeof tmp);
        status_entry(card, kinds[i], tlv, &e);
        if (tc_buf_status(&e) != TC_OK)
            return SW_UNKNOWN;
        /* GP CS 2.3 §11.4.3: '6310' when more entries than fit. */
        if (c->out->len + e.len > 256u) {
            ch->status_p1 = c->p1;
            ch->status_tlv = (uint8_t)tlv;
            ch->status_next = (uint8_t)i;
            return found > 0 ? SW_MORE_DATA : SW_WRONG_LENGTH;
        }
        tc_buf_put(c->out, tmp, e.len);
        found++;
    }
    return found > 0 ? SW_OK : SW_REF_NOT_FOUND;
}

/* ------------------------------------------------------------------ SET STATUS */

static uint16_t set_card_state(struct se_cmd *c)
{
    struct se_nvm *n = &c->card->nvm;
    uint8_t to = c->p2, from = n->life_cycle;
    if (c->lc != 0 && !(c->lc == n->isd_aid_len && tc_ct_equal(c->data, n->isd_aid, c->lc)))
        return SW_WRONG_DATA;
    bool known = to == TC_SE_LC_INITIALIZED || to == TC_SE_LC_SECURED ||
                 to == TC_SE_LC_CARD_LOCKED || to == TC_SE_LC_TERMINATED || to == TC_SE_LC_OP_READY;
    if (!known)
        return SW_WRONG_P1P2;
    /* GP CS 2.3 §5.1.1: OP_READY -> INITIALIZED -> SECURED, irreversible;
     * SECURED <-> CARD_LOCKED by an SD with the Card Lock privilege; any
     * state -> TERMINATED (Card Terminate privilege), irreversibly. */
    bool allowed = (from == TC_SE_LC_OP_READY && to == TC_SE_LC_INITIALIZED) ||
                   (from == TC_SE_LC_INITIALIZED && to == TC_SE_LC_SECURED) ||
                   (from == TC_SE_LC_SECURED && to == TC_SE_LC_CARD_LOCKED) ||
                   (from == TC_SE_LC_CARD_LOCKED && to == TC_SE_LC_SECURED) ||
                   to == TC_SE_LC_TERMINATED;
    if (!allowed)
        return SW_CONDITIONS;
    n->life_cycle = to;
    if (to == TC_SE_LC_TERMINATED) {
        /* A terminated card is decommissioned: its secrets are destroyed so
         * that nothing, ever, can use them again. */
        tc_memzero(n->keysets, sizeof n->keysets);
        tc_memzero(n->app.priv, sizeof n->app.priv);
        tc_memzero(n->app.pending_priv, sizeof n->app.pending_priv);
        tc_memzero(n->app.pending_pub, sizeof n->app.pending_pub);
        n->app.has_pending = 0;
        n->app.has_key = 0;
        tc_memzero(n->app.pub, sizeof n->app.pub);
        n->app.cert_len = 0;
        tc_memzero(n->app.cert, sizeof n->app.cert);
    }
    uint16_t sw = se_commit_sw(c->card);
    if (sw == SW_OK && (to == TC_SE_LC_CARD_LOCKED || to == TC_SE_LC_TERMINATED)) {
        /* Applications can no longer be selected: deselect them. */
        for (size_t i = 0; i < TC_SE_MAX_CHANNELS; i++) {
            struct se_channel *o = &c->card->ram.ch[i];
            if (o->open && o->selected == SE_OBJ_APPLET) {
                se_session_end(c->card, o);
                o->selected = SE_OBJ_NONE;
                se_applet_reset_ram(c->card);
            }
        }
    }
    return sw;
}

static uint16_t set_status(struct se_cmd *c)
{
    struct se_nvm *n = &c->card->nvm;
    if (c->p1 == 0x80)
        return set_card_state(c);
    if (c->p1 != 0x40)
        return SW_WRONG_P1P2;
    /* P1 40: an application; P2 b8 set locks, 00 unlocks (GP CS 2.3 §11.10.2). */
    if (c->p2 != 0x80 && c->p2 != 0x00)
        return SW_WRONG_P1P2;
    if (c->lc < TC_SE_AID_MIN || c->lc > TC_SE_AID_MAX)
        return SW_WRONG_DATA;
    if (!n->app.present || c->lc != n->app.aid_len || !tc_ct_equal(c->data, n->app.aid, c->lc))
        return SW_REF_NOT_FOUND;
    if (n->life_cycle == TC_SE_LC_CARD_LOCKED)
        return SW_CONDITIONS;
    bool locked = (n->app.state & TC_SE_APP_LOCKED) != 0;
    if ((c->p2 == 0x80) == locked)
        return SW_CONDITIONS; /* already in that state */
    n->app.state = (uint8_t)(c->p2 == 0x80 ? n->app.state | TC_SE_APP_LOCKED
                                           : n->app.state & (uint8_t)~TC_SE_APP_LOCKED);
    uint16_t sw = se_commit_sw(c->card);
    if (sw == SW_OK && c->p2 == 0x80) {
        for (size_t i = 0; i < TC_SE_MAX_CHANNELS; i++) {
            struct se_channel *o = &c->card->ram.ch[i];
            if (o->open && o->selected == SE_OBJ_APPLET) {
                se_session_end(c->card, o);
                o->selected = SE_OBJ_NONE;
                se_applet_reset_ram(c->card);
            }
        }
    }
    return sw;
}

/* ------------------------------------------------------------------ PUT KEY */

static struct se_keyset *keyset_free_slot(struct se_nvm *n)
{
    for (size_t i = 0; i < TC_SE_MAX_KEYSETS; i++)
        if (n->keysets[i].kvn == 0)
            return &n->keysets[i];
    return NULL;
}

static uint16_t put_key(struct se_cmd *c)
{
    struct se_nvm *n = &c->card->nvm;
    struct tc_scp03_put_key pk;
    uint16_t sw = SW_UNKNOWN;
    memset(&pk, 0, sizeof pk);
    if (c->session == NULL)
        return SW_SECURITY;
    struct tc_scp03_card_cmd pc;
    memset(&pc, 0, sizeof pc);
    pc.apdu.cla = c->cla;
    pc.apdu.ins = c->ins;
    pc.apdu.p1 = c->p1;
    pc.apdu.p2 = c->p2;
    pc.apdu.data = c->data;
    pc.apdu.lc = c->lc;
    pc.apdu.le = c->ne;
    pc.apdu.has_le = c->has_le;
    pc.was_secured = c->secured;
    if (tc_scp03_card_put_key(c->session, &pc, &pk, &sw) != TC_OK || sw != SW_OK) {
        tc_error_clear();
        if (sw == SW_OK)
            sw = SW_WRONG_DATA;
        goto out;
    }
    struct se_keyset *dst = NULL;
    struct se_keyset *same = se_keyset_find(n, pk.keys.kvn);
    if (pk.old_kvn == 0) {
        /* GP CS 2.3 §11.8.2.1: P1 00 adds a new keyset. */
        if (same != NULL) {
            sw = SW_WRONG_DATA;
            goto out;
        }
        dst = keyset_free_slot(n);
        if (dst == NULL) {
            sw = SW_NO_SPACE;
            goto out;
        }
    } else {
        dst = se_keyset_find(n, pk.old_kvn);
        if (dst == NULL) {
            sw = SW_REF_NOT_FOUND;
            goto out;
        }
        if (same != NULL && same != dst) {
            sw = SW_WRONG_DATA;
            goto out;
        }
    }
    if (pk.keys.kvn == 0 || pk.keys.kvn > 0x7F || !tc_aes_key_len_ok(pk.keys.key_len)) {
        sw = SW_WRONG_DATA;
        goto out;
    }
    memset(dst, 0, sizeof *dst);
    dst->kvn = pk.keys.kvn;
    dst->key_len = pk.keys.key_len;
    memcpy(dst->enc, pk.keys.enc, pk.keys.key_len);
    memcpy(dst->mac, pk.keys.mac, pk.keys.key_len);
    memcpy(dst->dek, pk.keys.dek, pk.keys.key_len);
    sw = se_commit_sw(c->card);
    if (sw != SW_OK)
        goto out;
    uint8_t *p = tc_buf_reserve(c->out, 1 + 3 * TC_KCV_LEN);
    size_t rl = 0;
    if (p == NULL || tc_scp03_put_key_response(&pk, p, 1 + 3 * TC_KCV_LEN, &rl) != TC_OK) {
        tc_error_clear();
        sw = SW_UNKNOWN;
    }
out:
    tc_memzero(&pk, sizeof pk);
    return sw;
}

/* ------------------------------------------------------------------ DELETE */

static bool applet_selected_anywhere(const struct tc_se_card *card)
{
    for (size_t i = 0; i < TC_SE_MAX_CHANNELS; i++)
        if (card->ram.ch[i].open && card->ram.ch[i].selected == SE_OBJ_APPLET)
            return true;
    return false;
}

static bool aid_is(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && tc_ct_equal(a, b, alen);
}

static uint16_t delete_cmd(struct se_cmd *c)
{
    struct se_nvm *n = &c->card->nvm;
    /* GP CS 2.3 §11.2.2: P1 b8 = 0 last (only) command; P2 00 object, 80
     * object and related objects. */
    if (c->p1 != 0x00 || (c->p2 != 0x00 && c->p2 != 0x80))
        return SW_WRONG_P1P2;
    struct tc_cursor cur;
    struct tc_tlv t;
    tc_cursor_init(&cur, c->data, c->lc);
    const uint8_t *aid = NULL;
    size_t aid_len = 0;
    bool have_kvn = false, have_kid = false;
    uint8_t kvn = 0;
    while (tc_cursor_remaining(&cur) > 0) {
        if (tc_tlv_next(&cur, &t) != TC_OK) {
            tc_error_clear();
            return SW_WRONG_DATA;
        }
        if (t.tag == 0x4F && aid == NULL && t.len >= TC_SE_AID_MIN && t.len <= TC_SE_AID_MAX) {
            aid = t.value;
            aid_len = t.len;
        } else if (t.tag == 0xD2 && !have_kvn && t.len == 1) {
            have_kvn = true;
            kvn = t.value[0];
        } else if (t.tag == 0xD0 && !have_kid && t.len == 1) {
            have_kid = true;
        } else {
            return SW_WRONG_DATA;
        }
    }
    if ((aid != NULL) == (have_kvn || have_kid))
        return SW_WRONG_DATA; /* exactly one kind of object */
    if (aid != NULL) {
        if (aid_is(aid, aid_len, n->isd_aid, n->isd_aid_len) ||
            aid_is(aid, aid_len, identity_elf, sizeof identity_elf))
            return SW_CONDITIONS; /* the ISD, and a load file in ROM, stay */
        if (!n->app.present || !aid_is(aid, aid_len, n->app.aid, n->app.aid_len))
            return SW_REF_NOT_FOUND;
        if (applet_selected_anywhere(c->card))
            return SW_CONDITIONS;
        /* GP CS 2.3 §11.2.2.2: the instance and everything it owns. */
        memset(&n->app, 0, sizeof n->app);
        n->app.aid_len = (uint8_t)sizeof identity_module;
        memcpy(n->app.aid, identity_module, sizeof identity_module);
    } else {
        /* GP CS 2.3 §11.2.2.3 DELETE KEY: a keyset is the unit here, so the
         * key version number (D2) is required and a single key (D0) is not
         * deleted on its own. */
        if (c->p2 != 0x00 || !have_kvn || have_kid)
            return SW_WRONG_DATA;
        struct se_keyset *k = se_keyset_find(n, kvn);
        if (k == NULL)
            return SW_REF_NOT_FOUND;
        size_t count = 0;
        for (size_t i = 0; i < TC_SE_MAX_KEYSETS; i++)
            count += n->keysets[i].kvn != 0;
        if (count <= 1)
            return SW_CONDITIONS; /* the last keyset would leave the card unmanageable */
        tc_memzero(k, sizeof *k);
    }
    uint16_t sw = se_commit_sw(c->card);
    if (sw == SW_OK)
        tc_buf_put_u8(c->out, 0x00); /* GP CS 2.3 §11.2.3: no confirmation */
    return sw;
}

/* ------------------------------------------------------------------ INSTALL */

static bool lv(struct tc_cursor *cur, const uint8_t **p, size_t *len)
{
    uint8_t l;
    if (tc_cursor_u8(cur, &l) != TC_OK || tc_cursor_view(cur, l, p) != TC_OK)
        return false;
    *len = l;
    return true;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static uint16_t install(struct se_cmd *c)
{
    struct se_nvm *n = &c->card->nvm;
    /* GP CS 2.3 §11.5.2: P1 02 load, 04 install, 08 make selectable, 0C
     * install and make selectable, 10 extradition, 20 personalization, 40
     * registry update; P2 00. */
    if (c->p2 != 0x00)
        return SW_WRONG_P1P2;
    bool inst = c->p1 == 0x04 || c->p1 == 0x0C, sel = c->p1 == 0x08 || c->p1 == 0x0C,
         perso = c->p1 == 0x20;
    if (c->p1 == 0x02 || c->p1 == 0x10 || c->p1 == 0x40)
        return SW_FUNC_NOT_SUPP; /* no LOAD: the applets are in ROM */
    if (!inst && !sel && !perso)
        return SW_WRONG_P1P2;
    struct tc_cursor cur;
    tc_cursor_init(&cur, c->data, c->lc);
    const uint8_t *elf, *mod, *app, *priv, *params, *token;
    size_t elf_len, mod_len, app_len, priv_len, params_len, token_len;
    if (!lv(&cur, &elf, &elf_len) || !lv(&cur, &mod, &mod_len) || !lv(&cur, &app, &app_len) ||
        !lv(&cur, &priv, &priv_len) || !lv(&cur, &params, &params_len) ||
        !lv(&cur, &token, &token_len) || tc_cursor_expect_end(&cur) != TC_OK) {
        tc_error_clear();
        return SW_WRONG_DATA;
    }
    if (app_len < TC_SE_AID_MIN || app_len > TC_SE_AID_MAX)
        return SW_WRONG_DATA;
    if (token_len != 0)
        return SW_WRONG_DATA; /* no delegated management tokens */
    if (perso) {
        /* §11.5.2.3.4: 00 00 LV(AID) 00 00 00 */
        if (elf_len != 0 || mod_len != 0 || priv_len != 0 || params_len != 0)
            return SW_WRONG_DATA;
        if (!n->app.present || !aid_is(app, app_len, n->app.aid, n->app.aid_len))
            return SW_REF_NOT_FOUND;
        if ((n->app.state & TC_SE_APP_LOCKED) || n->app.state == TC_SE_APP_INSTALLED)
            return SW_CONDITIONS;
        c->ch->perso_target = SE_OBJ_APPLET;
        c->ch->store_active = 0;
        tc_buf_put_u8(c->out, 0x00);
        return SW_OK;
    }
    if ((priv_len != 1 && priv_len != 3) || !all_zero(priv, priv_len))
        return SW_WRONG_DATA; /* the applet gets no privileges */
    if (params_len > 0 && tc_tlv_validate(params, params_len) != TC_OK) {
        tc_error_clear();
        return SW_WRONG_DATA;
    }
    if (inst) {
        if (!aid_is(elf, elf_len, identity_elf, sizeof identity_elf) ||
            !aid_is(mod, mod_len, identity_module, sizeof identity_module))
            return SW_REF_NOT_FOUND; /* no such load file / module */
        if (aid_is(app, app_len, n->isd_aid, n->isd_aid_len) ||
            aid_is(app, app_len, identity_elf, sizeof identity_elf))
            return SW_WRONG_DATA;
        if (n->app.present)
            return SW_CONDITIONS; /* one instance of the identity applet */
        memset(&n->app, 0, sizeof n->app);
        n->app.present = 1;
        n->app.aid_len = (uint8_t)app_len;
        memcpy(n->app.aid, app, app_len);
        n->app.state = sel ? TC_SE_APP_SELECTABLE : TC_SE_APP_INSTALLED;
    } else {
        /* §11.5.2.3.2 [for make selectable]: 00 00 LV(AID) LV(priv) LV LV */
        if (elf_len != 0 || mod_len != 0)
            return SW_WRONG_DATA;
        if (!n->app.present || !aid_is(app, app_len, n->app.aid, n->app.aid_len))
            return SW_REF_NOT_FOUND;
        if (n->app.state != TC_SE_APP_INSTALLED)
            return SW_CONDITIONS;
        n->app.state = TC_SE_APP_SELECTABLE;
    }
    uint16_t sw = se_commit_sw(c->card);
    if (sw == SW_OK)
        tc_buf_put_u8(c->out, 0x00);
    return sw;
}

/* ------------------------------------------------------------------ STORE DATA */

/* A BER tag that GET DATA can name with P1 P2 (one or two octets). */
static bool tag_addressable(uint32_t tag)
{
    if (tag <= 0xFF)
        return (tag & 0x1Fu) != 0x1Fu && tag != 0;
    uint8_t hi = (uint8_t)(tag >> 8), lo = (uint8_t)tag;
    /* Two octets: b5-b1 of the first all set, b8 of the second clear (EMV
     * style tags such as 9F01 or DF01 included). */
    return tag <= 0xFFFF && (hi & 0x1Fu) == 0x1Fu && (lo & 0x80u) == 0;
}

/* Tags that name card OS objects and cannot be stored as profile data. */
static bool tag_reserved(uint32_t tag)
{
    switch (tag) {
    case 0x66:
    case 0xE0:
    case 0xC1:
    case 0xCF:
    case 0x9F7F:
    case TC_SE_TAG_EID:
    case TC_SE_TAG_EID_GSMA:
    case TC_SE_TAG_LIFE_CYCLE:
        return true;
    default:
        return false;
    }
}

struct profile_edit {
    uint8_t buf[TC_SE_MAX_PROFILE];
    size_t len;
    uint8_t iin[TC_SE_MAX_IIN], cin[TC_SE_MAX_CIN];
    size_t iin_len, cin_len;
    bool set_iin, set_cin;
};

/* Replace (or, with an empty value, remove) one profile object. */
static uint16_t profile_put(struct profile_edit *e, uint32_t tag, const uint8_t *v, size_t vlen)
{
    uint8_t tmp[TC_SE_MAX_PROFILE];
    struct tc_buf b;
    tc_buf_init_fixed(&b, tmp, sizeof tmp);
    struct tc_cursor cur;
    struct tc_tlv t;
    tc_cursor_init(&cur, e->buf, e->len);
    while (tc_cursor_remaining(&cur) > 0) {
        size_t start = cur.pos;
        if (tc_tlv_next(&cur, &t) != TC_OK) {
            tc_error_clear();
            return SW_UNKNOWN;
        }
        if (t.tag != tag)
            tc_buf_put(&b, e->buf + start, cur.pos - start);
    }
    if (vlen > 0)
        tc_tlv_put(&b, tag, v, vlen);
    if (tc_buf_status(&b) != TC_OK) {
        tc_error_clear();
        return SW_NO_SPACE;
    }
    memcpy(e->buf, tmp, b.len);
    e->len = b.len;
    return SW_OK;
}

static uint16_t store_object(struct se_cmd *c, struct profile_edit *e, uint32_t tag,
                             const uint8_t *v, size_t vlen, bool constructed)
{
    const struct se_nvm *n = &c->card->nvm;
    if (tag == 0x42 || tag == 0x45) {
        /* IIN / CIN are personalised before the card is SECURED. */
        if (n->life_cycle == TC_SE_LC_SECURED)
            return SW_CONDITIONS;
        if (vlen > TC_SE_MAX_IIN || constructed)
            return SW_WRONG_DATA;
        if (tag == 0x42) {
            memcpy(e->iin, v, vlen);
            e->iin_len = vlen;
            e->set_iin = true;
        } else {
            memcpy(e->cin, v, vlen);
            e->cin_len = vlen;
            e->set_cin = true;
        }
        return SW_OK;
    }
    if (!tag_addressable(tag) || tag_reserved(tag))
        return SW_WRONG_DATA;
    return profile_put(e, tag, v, vlen);
}

static uint16_t store_data_isd(struct se_cmd *c, bool dgi)
{
    struct se_nvm *n = &c->card->nvm;
    static _Thread_local struct profile_edit e;
    uint16_t sw = SW_OK;
    /* GSMA SGP.22 §5.7.20 GetEID: STORE DATA carrying BF3E 03 5C 01 5A asks
     * an ISD-R for its EID; answered as an eUICC does, nothing stored. */
    static const uint8_t get_eid[] = {0xBF, 0x3E, 0x03, 0x5C, 0x01, 0x5A};
    if (!dgi && c->lc == sizeof get_eid && tc_ct_equal(c->data, get_eid, sizeof get_eid)) {
        size_t m = tc_tlv_begin(c->out, 0xBF3E);
        tc_tlv_put(c->out, 0x5A, n->eid, TC_SE_EID_LEN);
        tc_tlv_end(c->out, m);
        return SW_OK;
    }
    memset(&e, 0, sizeof e);
    memcpy(e.buf, n->profile, n->profile_len);
    e.len = n->profile_len;
    struct tc_cursor cur;
    tc_cursor_init(&cur, c->data, c->lc);
    while (sw == SW_OK && tc_cursor_remaining(&cur) > 0) {
        if (dgi) {
            /* GP CS 2.3 §11.11.2.2 / EMV CPS: DGI (2) || length (1, or FF
             * and 2) || data. A DGI that is a BER tag stores that object. */
            uint16_t id;
            uint8_t l1;
            size_t len;
            const uint8_t *v;
            if (tc_cursor_u16be(&cur, &id) != TC_OK || tc_cursor_u8(&cur, &l1) != TC_OK) {
                sw = SW_WRONG_DATA;
                break;
            }
            len = l1;
            if (l1 == 0xFF) {
                uint16_t l2;
                if (tc_cursor_u16be(&cur, &l2) != TC_OK) {
                    sw = SW_WRONG_DATA;
                    break;
                }
                len = l2;
            }
            if (tc_cursor_view(&cur, len, &v) != TC_OK) {
                sw = SW_WRONG_DATA;
                break;
            }
            uint32_t tag = id;
            bool constructed = ((id <= 0xFF ? id : (uint16_t)(id >> 8)) & 0x20u) != 0;
            if (constructed && len > 0 && tc_tlv_validate(v, len) != TC_OK) {
                sw = SW_WRONG_DATA;
                break;
            }
            sw = store_object(c, &e, tag, v, len, constructed);
        } else {
            struct tc_tlv t;
            if (tc_tlv_next(&cur, &t) != TC_OK) {
                sw = SW_WRONG_DATA;
                break;
            }
            if (t.constructed && t.len > 0 && tc_tlv_validate(t.value, t.len) != TC_OK) {
                sw = SW_WRONG_DATA;
                break;
            }
            sw = store_object(c, &e, t.tag, t.value, t.len, t.constructed);
        }
    }
    tc_error_clear();
    if (sw != SW_OK)
        return sw;
    if (e.set_iin) {
        n->iin_len = (uint8_t)e.iin_len;
        memcpy(n->iin, e.iin, e.iin_len);
    }
    if (e.set_cin) {
        n->cin_len = (uint8_t)e.cin_len;
        memcpy(n->cin, e.cin, e.cin_len);
    }
    memset(n->profile, 0, sizeof n->profile);
    memcpy(n->profile, e.buf, e.len);
    n->profile_len = (uint16_t)e.len;
    return se_commit_sw(c->card);
}

static uint16_t store_data(struct se_cmd *c)
{
    struct se_channel *ch = c->ch;
    /* GP CS 2.3 §11.11.2.1 P1: b8 last block; b7-b6 encryption (00 none,
     * 01 application dependent, 11 encrypted: not supported); b5-b4 data
     * structure (00 none, 01 DGI, 10 BER-TLV); b1 response expected. */
    bool last = (c->p1 & 0x80u) != 0;
    uint8_t enc = (uint8_t)((c->p1 >> 5) & 3u), structure = (uint8_t)((c->p1 >> 3) & 3u);
    if (enc == 3 || enc == 2 || structure == 3 || (c->p1 & 0x06u) != 0) {
        ch->store_active = 0;
        return SW_WRONG_P1P2;
    }
    /* P2: block number, from 00 in sequence (§11.11.2.2). */
    uint8_t expect = ch->store_active ? ch->store_next : 0;
    if (c->p2 != expect) {
        ch->store_active = 0;
        return SW_WRONG_P1P2;
    }
    if (c->lc == 0) {
        ch->store_active = 0;
        return SW_WRONG_LENGTH;
    }
    uint16_t sw;
    if (ch->perso_target == SE_OBJ_APPLET) {
        /* INSTALL [for personalization]: the data goes to the identity applet
         * and changes identity state, so it needs C-MAC + C-DEC. */
        if (!se_level_ok_cdec(c)) {
            ch->store_active = 0;
            return SW_SECURITY;
        }
        sw = se_applet_store_data(c, structure == 1, c->p2 == 0, last);
    } else {
        sw = store_data_isd(c, structure == 1);
    }
    if (sw != SW_OK || last || c->p2 == 0xFF) {
        ch->store_active = 0;
    } else {
        ch->store_active = 1;
        ch->store_next = (uint8_t)(c->p2 + 1);
    }
    return sw;
}

/* ------------------------------------------------------------------ SIGN while locked */

/*
 * GP CS 2.3 §5.1.1.4: in CARD_LOCKED only the ISD can be selected, so the
 * identity applet's SIGN is out of reach, and a locked device could not
 * authenticate its TLS connection to the server that unlocks it. The ISD
 * therefore answers the same ISO/IEC 7816-8 PSO COMPUTE DIGITAL SIGNATURE
 * (P1 9E, P2 9A, a SHA-256 digest) with the identity key, in CARD_LOCKED
 * only: in every other state the applet is the one way to the key, and an
 * applet LOCKED by its own SET STATUS stays unusable here too.
 */
static uint16_t locked_sign(struct se_cmd *c)
{
    const struct se_applet *a = &c->card->nvm.app;
    if (a->present && (a->state & TC_SE_APP_LOCKED) != 0)
        return SW_CONDITIONS;
    return se_applet_sign(c);
}

/* ------------------------------------------------------------------ dispatch */

struct isd_cmd {
    uint8_t ins;
    bool iso_class_ok; /* also accepted with an interindustry CLA */
    enum se_need need;
    unsigned states;
    uint16_t (*fn)(struct se_cmd *c);
};

/* The ISD's commands (docs/se.md, "Commands and their requirements"). PUT KEY
 * additionally needs C-DEC (checked by the scp03 module, GP CS §11.8.1). */
static const struct isd_cmd isd_cmds[] = {
    {0xCA, true, NEED_NONE, LC_ALL, get_data},
    {0xF2, false, NEED_CMAC, LC_MANAGE | LC_LOCK, get_status},
    {0xF0, false, NEED_CMAC, LC_MANAGE | LC_LOCK, set_status},
    {0xD8, false, NEED_CMAC, LC_MANAGE, put_key},
    {0xE4, false, NEED_CMAC, LC_MANAGE, delete_cmd},
    {0xE6, false, NEED_CMAC, LC_MANAGE, install},
    {0xE2, false, NEED_CMAC, LC_MANAGE, store_data},
    {TC_SE_ID_INS_SIGN, true, NEED_NONE, LC_LOCK, locked_sign},
};

uint16_t se_isd_dispatch(struct se_cmd *c)
{
    const struct isd_cmd *e = NULL;
    for (size_t i = 0; i < TC_ARRAY_LEN(isd_cmds); i++)
        if (isd_cmds[i].ins == c->ins)
            e = &isd_cmds[i];
    if (e == NULL)
        return SW_INS_NOT_SUPPORTED;
    if (!c->proprietary && !e->iso_class_ok)
        return SW_CLA_NOT_SUPPORTED;
    if ((e->states & lc_bit(c->card->nvm.life_cycle)) == 0)
        return SW_CONDITIONS;
    if (!level_ok(c, e->need))
        return SW_SECURITY;
    return e->fn(c);
}
