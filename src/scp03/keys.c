/*
 * Static keys on the host side: the in-memory key provider and the PUT KEY
 * data field (Amendment D §7.2, GP Card Specification 2.3 §11.8) built
 * through providers, and the check of the card's KCVs.
 *
 * Must never: return or log a plain static key through the provider
 * interface (only session keys, wrapped blocks and KCVs leave it).
 */
#include <string.h>

#include "scp03/internal.h"

/* ------------------------------------------------------------------ in-memory provider */

static const struct tc_scp03_keyset *mem_find(const struct tc_scp03_mem_provider *m, uint8_t kvn)
{
    const struct tc_scp03_keyset *any = NULL;
    for (size_t i = 0; i < m->n; i++) {
        if (m->sets[i].kvn == kvn)
            return &m->sets[i];
        if (m->sets[i].kvn == 0)
            any = &m->sets[i];
    }
    return any;
}

static tc_err mem_get(void *ctx, uint8_t kvn, const struct tc_scp03_keyset **ks)
{
    const struct tc_scp03_mem_provider *m = ctx;
    TC_ENSURE(m != NULL, TC_ERR_ARG);
    const struct tc_scp03_keyset *found = mem_find(m, kvn);
    TC_ENSURE_MSG(found != NULL, TC_ERR_NOT_FOUND, "no static keyset with KVN %02X", kvn);
    *ks = found;
    return TC_OK;
}

static const uint8_t *key_of(const struct tc_scp03_keyset *ks, enum tc_scp03_key_id id)
{
    switch (id) {
    case TC_SCP03_KEY_ENC:
        return ks->enc;
    case TC_SCP03_KEY_MAC:
        return ks->mac;
    case TC_SCP03_KEY_DEK:
        return ks->dek;
    default:
        return NULL;
    }
}

static tc_err mem_key_len(void *ctx, uint8_t kvn, size_t *key_len)
{
    const struct tc_scp03_keyset *ks = NULL;
    TC_GUARD(mem_get(ctx, kvn, &ks));
    *key_len = ks->key_len;
    return TC_OK;
}

static tc_err mem_session_keys(void *ctx, uint8_t kvn, const uint8_t *context, size_t context_len,
                               struct tc_scp03_session_keys *out)
{
    const struct tc_scp03_keyset *ks = NULL;
    TC_GUARD(mem_get(ctx, kvn, &ks));
    return tc_scp03_derive_session_keys(ks, context, context_len, out);
}

static tc_err mem_card_challenge(void *ctx, uint8_t kvn, const uint8_t seq[TC_SCP03_SEQ_LEN],
                                 const uint8_t *aid, size_t aid_len, uint8_t *out, size_t out_len)
{
    const struct tc_scp03_keyset *ks = NULL;
    uint8_t context[TC_SCP03_SEQ_LEN + TC_SCP03_AID_MAX];
    TC_GUARD(mem_get(ctx, kvn, &ks));
    TC_ENSURE(aid != NULL && aid_len <= TC_SCP03_AID_MAX, TC_ERR_ARG);
    memcpy(context, seq, TC_SCP03_SEQ_LEN);
    memcpy(context + TC_SCP03_SEQ_LEN, aid, aid_len);
    /* Amendment D §6.2.2.1: KDF(Key-ENC, 02, sequence counter || AID). */
    return tc_scp03_kdf(ks->enc, ks->key_len, TC_SCP03_DC_CARD_CHALLENGE, context,
                        TC_SCP03_SEQ_LEN + aid_len, out, out_len);
}

static tc_err mem_kcv(void *ctx, uint8_t kvn, enum tc_scp03_key_id id, uint8_t kcv[TC_KCV_LEN])
{
    const struct tc_scp03_keyset *ks = NULL;
    TC_GUARD(mem_get(ctx, kvn, &ks));
    const uint8_t *k = key_of(ks, id);
    TC_ENSURE_MSG(k != NULL, TC_ERR_ARG, "key identifier %d is not 1, 2 or 3", (int)id);
    return tc_kcv_aes(k, ks->key_len, kcv);
}

static tc_err mem_wrap_key(void *ctx, uint8_t dek_kvn, const struct tc_scp03_key_provider *src,
                           uint8_t src_kvn, enum tc_scp03_key_id id, uint8_t *out, size_t out_size,
                           size_t *out_len);

void tc_scp03_mem_provider_init(struct tc_scp03_mem_provider *m, struct tc_scp03_key_provider *p)
{
    if (m != NULL)
        tc_memzero(m, sizeof *m);
    if (p != NULL) {
        p->ctx = m;
        p->key_len = mem_key_len;
        p->session_keys = mem_session_keys;
        p->card_challenge = mem_card_challenge;
        p->wrap_key = mem_wrap_key;
        p->kcv = mem_kcv;
    }
}

static tc_err mem_wrap_key(void *ctx, uint8_t dek_kvn, const struct tc_scp03_key_provider *src,
                           uint8_t src_kvn, enum tc_scp03_key_id id, uint8_t *out, size_t out_size,
                           size_t *out_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    const struct tc_scp03_keyset *dek = NULL;
    const struct tc_scp03_keyset *nks = NULL;
    uint8_t block[TC_SCP03_KEY_MAX] = {0};
    static const uint8_t zero_iv[TC_AES_BLOCK] = {0};
    TC_TRY(mem_get(ctx, dek_kvn, &dek));
    /* Only another in-memory provider's plain key can be reached here. */
    TC_CHECK_MSG(src != NULL && src->wrap_key == mem_wrap_key, TC_ERR_UNSUPPORTED,
                 "the in-memory provider can only wrap keys of in-memory providers");
    TC_TRY(mem_get(src->ctx, src_kvn, &nks));
    const uint8_t *k = key_of(nks, id);
    TC_CHECK_MSG(k != NULL, TC_ERR_ARG, "key identifier %d is not 1, 2 or 3", (int)id);
    /* GP CS 2.3 §11.8 table 11-70: a key that is not a whole number of
     * blocks (AES-192) is right-padded before encryption; here with zeros. */
    size_t padded = (nks->key_len + TC_AES_BLOCK - 1u) / TC_AES_BLOCK * TC_AES_BLOCK;
    TC_CHECK_MSG(out != NULL && out_size >= padded, TC_ERR_SPACE, "wrapped key needs %zu bytes",
                 padded);
    memcpy(block, k, nks->key_len);
    /* Amendment D §7.2: AES-CBC with the static Key-DEK and a zero ICV. */
    TC_TRY(tc_aes_cbc_encrypt(dek->dek, dek->key_len, zero_iv, block, padded, out));
    *out_len = padded;
    ret = TC_OK;
out:
    tc_memzero(block, sizeof block);
    return ret;
}

tc_err tc_scp03_mem_provider_add(struct tc_scp03_mem_provider *m, const struct tc_scp03_keyset *ks)
{
    TC_ENSURE(m != NULL && ks != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(tc_aes_key_len_ok(ks->key_len), TC_ERR_ARG,
                  "keyset %02X: key length %u is not 16, 24 or 32", ks->kvn, ks->key_len);
    for (size_t i = 0; i < m->n; i++) {
        if (m->sets[i].kvn == ks->kvn) {
            m->sets[i] = *ks;
            return TC_OK;
        }
    }
    TC_ENSURE_MSG(m->n < TC_SCP03_MEM_KEYSETS, TC_ERR_NOMEM,
                  "the in-memory key provider holds at most %u keysets", TC_SCP03_MEM_KEYSETS);
    m->sets[m->n++] = *ks;
    return TC_OK;
}

void tc_scp03_mem_provider_wipe(struct tc_scp03_mem_provider *m)
{
    if (m != NULL)
        tc_memzero(m, sizeof *m);
}

/* ------------------------------------------------------------------ PUT KEY */

tc_err tc_scp03_put_key_data(const struct tc_scp03_key_provider *cur, uint8_t dek_kvn,
                             const struct tc_scp03_key_provider *src, uint8_t new_kvn,
                             struct tc_buf *out, uint8_t kcv[TC_SCP03_KCVS_LEN])
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t wrapped[TC_SCP03_KEY_MAX];
    size_t wlen = 0;
    size_t key_len = 0;
    TC_CHECK(cur != NULL && src != NULL && out != NULL && kcv != NULL, TC_ERR_ARG);
    TC_CHECK_MSG(new_kvn >= 0x01u && new_kvn <= 0x7Fu, TC_ERR_RANGE,
                 "new key version number %02X is outside 01..7F", new_kvn);
    TC_TRY(src->key_len(src->ctx, new_kvn, &key_len));
    TC_CHECK(tc_aes_key_len_ok(key_len), TC_ERR_INTERNAL);
    /* GP CS 2.3 §11.8: the new key version number, then one key data
     * block per key in key identifier order (ENC, MAC, DEK). */
    tc_buf_put_u8(out, new_kvn);
    for (unsigned id = TC_SCP03_KEY_ENC; id <= TC_SCP03_KEY_DEK; id++) {
        TC_TRY(cur->wrap_key(cur->ctx, dek_kvn, src, new_kvn, (enum tc_scp03_key_id)id, wrapped,
                             sizeof wrapped, &wlen));
        TC_CHECK(wlen == 16u || wlen == 32u, TC_ERR_INTERNAL);
        TC_TRY(src->kcv(src->ctx, new_kvn, (enum tc_scp03_key_id)id, kcv + (id - 1u) * TC_KCV_LEN));
        /* Amendment D table 7-10: key type 88 (AES), length of the key
         * data, the key length in bytes, the encrypted key, KCV length 03
         * and the KCV. */
        tc_buf_put_u8(out, 0x88u);
        tc_buf_put_u8(out, (uint8_t)(1u + wlen));
        tc_buf_put_u8(out, (uint8_t)key_len);
        tc_buf_put(out, wrapped, wlen);
        tc_buf_put_u8(out, TC_KCV_LEN);
        tc_buf_put(out, kcv + (id - 1u) * TC_KCV_LEN, TC_KCV_LEN);
    }
    TC_TRY(tc_buf_status(out));
    ret = TC_OK;
out:
    tc_memzero(wrapped, sizeof wrapped);
    return ret;
}

tc_err tc_scp03_put_key_check(const uint8_t *resp, size_t len, uint8_t new_kvn,
                              const uint8_t kcv[TC_SCP03_KCVS_LEN])
{
    struct tc_cursor c;
    uint8_t kvn = 0;
    const uint8_t *got = NULL;
    TC_ENSURE(kcv != NULL && (resp != NULL || len == 0), TC_ERR_ARG);
    tc_cursor_init(&c, resp, len);
    /* GP CS 2.3 §11.8.3: response data = key version number followed by
     * the key check values of the keys in the command. */
    TC_ENSURE_MSG(len == 1u + TC_SCP03_KEYS_PER_SET * TC_KCV_LEN, TC_ERR_FORMAT,
                  "PUT KEY response of %zu bytes; expected KVN and three KCVs (10 bytes)", len);
    TC_GUARD(tc_cursor_u8(&c, &kvn));
    TC_ENSURE_MSG(kvn == new_kvn, TC_ERR_VERIFY, "PUT KEY response names KVN %02X, sent %02X", kvn,
                  new_kvn);
    bool ok = true;
    for (size_t i = 0; i < TC_SCP03_KEYS_PER_SET; i++) {
        TC_GUARD(tc_cursor_view(&c, TC_KCV_LEN, &got));
        ok &= tc_ct_equal(got, kcv + i * TC_KCV_LEN, TC_KCV_LEN);
    }
    TC_GUARD(tc_cursor_expect_end(&c));
    TC_ENSURE_MSG(ok, TC_ERR_VERIFY, "the card's key check values differ from the new keys'");
    return TC_OK;
}
