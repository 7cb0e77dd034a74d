/*
 * The identity applet (docs/identity-applet.md): an ECDSA P-256 key pair
 * generated on the card, its certificate, and signatures over SHA-256
 * digests. The private key is used only inside se_ec_sign_digest*() and no
 * command returns it. Commands that change the identity need an SCP03
 * session with C-MAC and C-DECRYPTION.
 *
 * Renewal: GENERATE KEY P1 02 makes a pending key pair beside the active
 * one, which keeps signing; the certificate for the pending key promotes it
 * in the same NVM commit that stores the certificate, so the card holds
 * either the old identity or the new one, never a key without its
 * certificate.
 */
#include <string.h>

#include "se_internal.h"

bool se_applet_selectable(const struct se_nvm *n)
{
    uint8_t s = n->app.state;
    return n->app.present && (s & TC_SE_APP_LOCKED) == 0 &&
           (s == TC_SE_APP_SELECTABLE || s == TC_SE_APP_PERSONALIZED);
}

void se_applet_reset_ram(struct tc_se_card *card)
{
    tc_memzero(card->ram.cert_buf, card->ram.cert_len);
    card->ram.cert_len = 0;
    for (size_t i = 0; i < TC_SE_MAX_CHANNELS; i++)
        card->ram.ch[i].cert_active = 0;
}

/* ------------------------------------------------------------------ certificates */

static tc_err next_expect(struct tc_cursor *c, uint32_t tag, struct tc_tlv *t)
{
    TC_GUARD(tc_tlv_next(c, t));
    TC_ENSURE_MSG(t->tag == tag, TC_ERR_FORMAT, "certificate: expected tag %02X, found %02X",
                  (unsigned)tag, (unsigned)t->tag);
    return TC_OK;
}

tc_err se_cert_fields(const uint8_t *cert, size_t len, const uint8_t **serial, size_t *serial_len,
                      const uint8_t **pub, size_t *pub_len)
{
    /* RFC 5280 §4.1: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
     * [0] version OPTIONAL, serialNumber, signature, issuer, validity,
     * subject, subjectPublicKeyInfo, ... }, signatureAlgorithm, value } */
    struct tc_cursor c, tbs, spki;
    struct tc_tlv t, tb, x;
    tc_cursor_init(&c, cert, len);
    TC_GUARD(next_expect(&c, 0x30, &t));
    TC_GUARD(tc_cursor_expect_end(&c));
    TC_GUARD(tc_tlv_validate(cert, len));
    tc_cursor_init(&c, t.value, t.len);
    TC_GUARD(next_expect(&c, 0x30, &tb));
    tc_cursor_init(&tbs, tb.value, tb.len);
    TC_GUARD(tc_tlv_next(&tbs, &x));
    if (x.tag == 0xA0)
        TC_GUARD(tc_tlv_next(&tbs, &x));
    TC_ENSURE_MSG(x.tag == 0x02 && x.len >= 1 && x.len <= 21, TC_ERR_FORMAT,
                  "certificate: bad serialNumber");
    *serial = x.value;
    *serial_len = x.len;
    for (int i = 0; i < 4; i++) /* signature, issuer, validity, subject */
        TC_GUARD(next_expect(&tbs, 0x30, &x));
    TC_GUARD(next_expect(&tbs, 0x30, &x));
    tc_cursor_init(&spki, x.value, x.len);
    TC_GUARD(next_expect(&spki, 0x30, &t));
    /* RFC 5480 §2.1.1: id-ecPublicKey with the namedCurve prime256v1. */
    static const uint8_t ec_p256[] = {0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06,
                                      0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
    TC_ENSURE_MSG(t.len == sizeof ec_p256 && tc_ct_equal(t.value, ec_p256, sizeof ec_p256),
                  TC_ERR_FORMAT, "certificate: the key is not an ECDSA P-256 key");
    TC_GUARD(next_expect(&spki, 0x03, &t));
    TC_ENSURE_MSG(t.len >= 2 && t.value[0] == 0x00, TC_ERR_FORMAT,
                  "certificate: bad subjectPublicKey");
    *pub = t.value + 1;
    *pub_len = t.len - 1;
    return TC_OK;
}

static uint16_t cert_append(struct tc_se_card *card, const uint8_t *p, size_t n, bool first)
{
    struct se_ram *r = &card->ram;
    if (first) {
        tc_memzero(r->cert_buf, r->cert_len);
        r->cert_len = 0;
    }
    if (n > TC_SE_MAX_CERT - r->cert_len) {
        r->cert_len = 0;
        return SW_NO_SPACE;
    }
    memcpy(r->cert_buf + r->cert_len, p, n);
    r->cert_len = (uint16_t)(r->cert_len + n);
    return SW_OK;
}

static void drop_pending(struct se_applet *a)
{
    tc_memzero(a->pending_priv, sizeof a->pending_priv);
    tc_memzero(a->pending_pub, sizeof a->pending_pub);
    a->has_pending = 0;
}

/* The whole certificate is staged: it must be one DER certificate for the
 * card's active key pair or for its pending one; then it replaces the stored
 * one atomically. A certificate for the pending key promotes that key to
 * active in the same commit and destroys the old private key. */
static uint16_t cert_commit(struct tc_se_card *card)
{
    struct se_nvm *n = &card->nvm;
    struct se_ram *r = &card->ram;
    const uint8_t *serial, *pub;
    size_t serial_len, pub_len;
    uint16_t sw = SW_WRONG_DATA;
    if (se_cert_fields(r->cert_buf, r->cert_len, &serial, &serial_len, &pub, &pub_len) != TC_OK) {
        tc_error_clear();
        goto out;
    }
    if (pub_len != TC_SE_EC_PUB_LEN)
        goto out;
    bool active = tc_ct_equal(pub, n->app.pub, TC_SE_EC_PUB_LEN);
    bool pending = n->app.has_pending && tc_ct_equal(pub, n->app.pending_pub, TC_SE_EC_PUB_LEN);
    if (!active && !pending)
        goto out; /* a certificate for another key */
    if (pending) {
        memcpy(n->app.priv, n->app.pending_priv, sizeof n->app.priv);
        memcpy(n->app.pub, n->app.pending_pub, sizeof n->app.pub);
        drop_pending(&n->app);
    }
    memset(n->app.cert, 0, sizeof n->app.cert);
    memcpy(n->app.cert, r->cert_buf, r->cert_len);
    n->app.cert_len = r->cert_len;
    n->app.state = TC_SE_APP_PERSONALIZED;
    sw = se_commit_sw(card);
out:
    tc_memzero(r->cert_buf, r->cert_len);
    r->cert_len = 0;
    return sw;
}

uint16_t se_applet_store_data(struct se_cmd *c, bool dgi, bool first, bool last)
{
    struct tc_se_card *card = c->card;
    if (!card->nvm.app.has_key)
        return SW_CONDITIONS;
    if (dgi)
        return SW_WRONG_DATA; /* the certificate comes as BER-TLV (DER) */
    uint16_t sw = cert_append(card, c->data, c->lc, first);
    if (sw != SW_OK || !last)
        return sw;
    return cert_commit(card);
}

/* ------------------------------------------------------------------ commands */

static uint16_t generate(struct se_cmd *c)
{
    struct se_nvm *n = &c->card->nvm;
    uint8_t priv[32], pub[TC_SE_EC_PUB_LEN], digest[32], sig[TC_SIG_MAX];
    size_t sig_len = 0;
    uint16_t sw = SW_UNKNOWN;
    if (c->p2 != 0x00 ||
        (c->p1 != 0x00 && c->p1 != TC_SE_ID_GEN_REPLACE && c->p1 != TC_SE_ID_GEN_PENDING))
        return SW_WRONG_P1P2;
    if (c->lc < TC_SE_ID_NONCE_MIN || c->lc > TC_SE_ID_NONCE_MAX)
        return SW_WRONG_LENGTH;
    bool renew = c->p1 == TC_SE_ID_GEN_PENDING;
    if (renew) {
        /* A renewal key pair is made beside an identity, in any state the
         * applet can be selected in; a newer one replaces an older one. */
        if (!n->app.has_key)
            return SW_CONDITIONS;
    } else if (n->app.has_key) {
        /* Replacing the identity needs the explicit flag, and only while
         * the card is still on the line (before SECURED). */
        if (c->p1 != TC_SE_ID_GEN_REPLACE)
            return SW_CONDITIONS;
        if (n->life_cycle != TC_SE_LC_OP_READY && n->life_cycle != TC_SE_LC_INITIALIZED)
            return SW_CONDITIONS;
    }
    if (se_ec_generate(priv, pub) != TC_OK) {
        tc_error_clear();
        goto out;
    }
    /* Proof of possession: the new key signs EID || public key || nonce. */
    const uint8_t *parts[] = {n->eid, pub, c->data};
    size_t lens[] = {TC_SE_EID_LEN, TC_SE_EC_PUB_LEN, c->lc};
    if (se_sha256(parts, lens, 3, digest) != TC_OK ||
        se_ec_sign_digest(priv, pub, digest, sig, sizeof sig, &sig_len) != TC_OK) {
        tc_error_clear();
        goto out;
    }
    if (renew) {
        /* The active key pair and its certificate stay as they are. */
        memcpy(n->app.pending_priv, priv, sizeof priv);
        memcpy(n->app.pending_pub, pub, sizeof pub);
        n->app.has_pending = 1;
    } else {
        memcpy(n->app.priv, priv, sizeof priv);
        memcpy(n->app.pub, pub, sizeof pub);
        n->app.has_key = 1;
        /* A certificate belongs to the key it was issued for; a new identity
         * leaves no renewal in flight. */
        memset(n->app.cert, 0, sizeof n->app.cert);
        n->app.cert_len = 0;
        n->app.state = TC_SE_APP_SELECTABLE;
        drop_pending(&n->app);
    }
    sw = se_commit_sw(c->card);
    if (sw != SW_OK)
        goto out;
    tc_tlv_put(c->out, TC_SE_ID_TAG_PUBLIC, pub, sizeof pub);
    tc_tlv_put(c->out, TC_SE_ID_TAG_SIGNATURE, sig, sig_len);
out:
    tc_memzero(priv, sizeof priv);
    tc_memzero(digest, sizeof digest);
    return sw;
}

static uint16_t get_public(struct se_cmd *c)
{
    const struct se_applet *a = &c->card->nvm.app;
    /* P1 00: the active key pair; 01: the pending (renewal) one. */
    if ((c->p1 != 0 && c->p1 != TC_SE_ID_PUB_PENDING) || c->p2 != 0)
        return SW_WRONG_P1P2;
    if (c->lc != 0)
        return SW_WRONG_LENGTH;
    bool pending = c->p1 == TC_SE_ID_PUB_PENDING;
    if (pending ? !a->has_pending : !a->has_key)
        return SW_REF_NOT_FOUND;
    tc_tlv_put(c->out, TC_SE_ID_TAG_PUBLIC, pending ? a->pending_pub : a->pub, TC_SE_EC_PUB_LEN);
    return SW_OK;
}

static uint16_t store_cert(struct se_cmd *c)
{
    struct se_channel *ch = c->ch;
    /* P1 b8: last block (other bits 0); P2: block number from 00. */
    if ((c->p1 & 0x7Fu) != 0) {
        ch->cert_active = 0;
        return SW_WRONG_P1P2;
    }
    uint8_t expect = ch->cert_active ? ch->cert_next : 0;
    if (c->p2 != expect) {
        ch->cert_active = 0;
        return SW_WRONG_P1P2;
    }
    if (c->lc == 0) {
        ch->cert_active = 0;
        return SW_WRONG_LENGTH;
    }
    if (!c->card->nvm.app.has_key) {
        ch->cert_active = 0;
        return SW_CONDITIONS;
    }
    bool last = (c->p1 & 0x80u) != 0;
    uint16_t sw = cert_append(c->card, c->data, c->lc, c->p2 == 0);
    if (sw == SW_OK && last)
        sw = cert_commit(c->card);
    if (sw != SW_OK || last || c->p2 == 0xFF) {
        ch->cert_active = 0;
    } else {
        ch->cert_active = 1;
        ch->cert_next = (uint8_t)(c->p2 + 1);
    }
    return sw;
}

static uint16_t get_cert(struct se_cmd *c)
{
    const struct se_applet *a = &c->card->nvm.app;
    /* P1 P2: offset (P1 b8 = 0), as READ BINARY (ISO/IEC 7816-4 §11.2.3). */
    if (c->p1 & 0x80u)
        return SW_WRONG_P1P2;
    if (c->lc != 0)
        return SW_WRONG_LENGTH;
    if (a->cert_len == 0)
        return SW_REF_NOT_FOUND;
    size_t off = (size_t)c->p1 << 8 | c->p2;
    if (off >= a->cert_len)
        return SW_OFFSET_OUTSIDE;
    size_t want = c->has_le ? c->ne : 256u;
    size_t avail = a->cert_len - off;
    size_t n = avail < want ? avail : want;
    tc_buf_put(c->out, a->cert + off, n);
    /* ISO 7816-4: 6282 when the end is reached before Ne bytes. */
    return c->has_le && n < want ? SW_EOF_BEFORE_LE : SW_OK;
}

static uint16_t get_eid(struct se_cmd *c)
{
    if (c->p1 != 0 || c->p2 != 0)
        return SW_WRONG_P1P2;
    if (c->lc != 0)
        return SW_WRONG_LENGTH;
    tc_tlv_put(c->out, 0x5A, c->card->nvm.eid, TC_SE_EID_LEN);
    return SW_OK;
}

uint16_t se_applet_sign(struct se_cmd *c)
{
    const struct se_applet *a = &c->card->nvm.app;
    uint8_t sig[TC_SIG_MAX];
    size_t sig_len = 0;
    /* ISO/IEC 7816-8 §11 PERFORM SECURITY OPERATION: COMPUTE DIGITAL
     * SIGNATURE, P1 9E (digital signature out), P2 9A (data to sign). */
    if (c->p1 != 0x9E || c->p2 != 0x9A)
        return SW_WRONG_P1P2;
    if (c->lc != 32)
        return SW_WRONG_LENGTH;
    if (!a->has_key)
        return SW_REF_NOT_FOUND;
    if (se_ec_sign_digest_kept(&c->card->ram.sign_key, a->priv, a->pub, c->data, sig, sizeof sig,
                               &sig_len) != TC_OK) {
        tc_error_clear();
        return SW_UNKNOWN;
    }
    tc_buf_put(c->out, sig, sig_len);
    return SW_OK;
}

struct applet_cmd {
    uint8_t ins;
    bool iso_class_ok;
    bool need_cdec; /* identity-changing: C-MAC + C-DECRYPTION */
    uint16_t (*fn)(struct se_cmd *c);
};

static const struct applet_cmd applet_cmds[] = {
    {TC_SE_ID_INS_GENERATE, false, true, generate},
    {TC_SE_ID_INS_GET_PUBLIC, false, false, get_public},
    {TC_SE_ID_INS_STORE_CERT, false, true, store_cert},
    {TC_SE_ID_INS_GET_CERT, false, false, get_cert},
    {TC_SE_ID_INS_GET_EID, false, false, get_eid},
    {TC_SE_ID_INS_SIGN, true, false, se_applet_sign},
};

uint16_t se_applet_dispatch(struct se_cmd *c)
{
    const struct applet_cmd *e = NULL;
    for (size_t i = 0; i < TC_ARRAY_LEN(applet_cmds); i++)
        if (applet_cmds[i].ins == c->ins)
            e = &applet_cmds[i];
    if (e == NULL)
        return SW_INS_NOT_SUPPORTED;
    if (!c->proprietary && !e->iso_class_ok)
        return SW_CLA_NOT_SUPPORTED;
    if (e->need_cdec && !se_level_ok_cdec(c))
        return SW_SECURITY;
    return e->fn(c);
}
