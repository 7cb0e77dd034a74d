/*
 * The SCP03 host's key provider over HSM keysets: every computation that
 * needs a static key (session key derivation, pseudo-random card challenge,
 * KCV, PUT KEY wrapping) runs in the HSM; only session keys, challenges,
 * KCVs and DEK-wrapped key blocks come out.
 */
#include <string.h>

#include <trustchain/scp03.h>

#include "hsm/hsm_int.h"

static tc_err find_index(const struct tc_hsm_scp03_provider *m, uint8_t kvn, size_t *index)
{
    TC_ENSURE(m != NULL && m->h != NULL, TC_ERR_ARG);
    for (size_t i = 0; i < m->n; i++) {
        if (m->sets[i].kvn == kvn) {
            *index = i;
            return TC_OK;
        }
    }
    return TC_FAIL(TC_ERR_NOT_FOUND, "the HSM holds no SCP03 keyset with KVN %02X", kvn);
}

static tc_err find_set(struct tc_hsm_scp03_provider *m, uint8_t kvn, struct tc_hsm_keyset **ks)
{
    size_t i = 0;
    TC_GUARD(find_index(m, kvn, &i));
    *ks = &m->sets[i].ks;
    return TC_OK;
}

static tc_err type_of(enum tc_scp03_key_id id, unsigned *type)
{
    switch (id) {
    case TC_SCP03_KEY_ENC:
        *type = TC_HSM_KEY_ENC;
        return TC_OK;
    case TC_SCP03_KEY_MAC:
        *type = TC_HSM_KEY_MAC;
        return TC_OK;
    case TC_SCP03_KEY_DEK:
        *type = TC_HSM_KEY_DEK;
        return TC_OK;
    default:
        return TC_FAIL(TC_ERR_ARG, "SCP03 key identifier %d is not 1, 2 or 3", (int)id);
    }
}

/* Key `type` of keyset `kvn`; a deferred keyset derives it now (in the
 * provider's copy, which the owner destroys). */
static tc_err key_of(struct tc_hsm_scp03_provider *m, uint8_t kvn, unsigned type, tc_hsm_obj *o)
{
    struct tc_hsm_keyset *ks = NULL;
    TC_GUARD(find_set(m, kvn, &ks));
    return tc_hsm_keyset_key(m->h, ks, type, o);
}

static tc_err p_key_len(void *ctx, uint8_t kvn, size_t *key_len)
{
    struct tc_hsm_keyset *ks = NULL;
    TC_ENSURE(key_len != NULL, TC_ERR_ARG);
    TC_GUARD(find_set(ctx, kvn, &ks));
    *key_len = ks->key_len;
    return TC_OK;
}

static tc_err p_session_keys(void *ctx, uint8_t kvn, const uint8_t *context, size_t context_len,
                             struct tc_scp03_session_keys *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_hsm_scp03_provider *m = ctx;
    struct tc_hsm_keyset *ks = NULL;
    tc_hsm_obj enc = 0, mac = 0;
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    TC_GUARD(find_set(m, kvn, &ks));
    TC_ENSURE(ks->key_len <= TC_SCP03_KEY_MAX, TC_ERR_INTERNAL);
    /* Amendment D §6.2.1: S-ENC from Key-ENC with constant 04, S-MAC and
     * S-RMAC from Key-MAC with 06 and 07, each as long as the static keys. */
    memset(out, 0, sizeof *out);
    out->key_len = (uint8_t)ks->key_len;
    TC_TRY(tc_hsm_keyset_key(m->h, ks, TC_HSM_KEY_ENC, &enc));
    TC_TRY(tc_hsm_keyset_key(m->h, ks, TC_HSM_KEY_MAC, &mac));
    TC_TRY(tc_hsm_scp03_kdf(m->h, enc, TC_SCP03_DC_S_ENC, context, context_len, out->s_enc,
                            ks->key_len));
    TC_TRY(tc_hsm_scp03_kdf(m->h, mac, TC_SCP03_DC_S_MAC, context, context_len, out->s_mac,
                            ks->key_len));
    TC_TRY(tc_hsm_scp03_kdf(m->h, mac, TC_SCP03_DC_S_RMAC, context, context_len, out->s_rmac,
                            ks->key_len));
    ret = TC_OK;
out:
    if (ret != TC_OK)
        tc_memzero(out, sizeof *out);
    return ret;
}

static tc_err p_card_challenge(void *ctx, uint8_t kvn, const uint8_t seq[TC_SCP03_SEQ_LEN],
                               const uint8_t *aid, size_t aid_len, uint8_t *out, size_t out_len)
{
    struct tc_hsm_scp03_provider *m = ctx;
    tc_hsm_obj enc = 0;
    TC_ENSURE(seq != NULL && aid != NULL && out != NULL, TC_ERR_ARG);
    TC_ENSURE(aid_len <= TC_SCP03_AID_MAX, TC_ERR_RANGE);
    TC_ENSURE(out_len == TC_SCP03_S8 || out_len == TC_SCP03_S16, TC_ERR_RANGE);
    TC_GUARD(key_of(m, kvn, TC_HSM_KEY_ENC, &enc));
    /* Amendment D §6.2.2.1: context = sequence counter || SD AID. */
    uint8_t context[TC_SCP03_SEQ_LEN + TC_SCP03_AID_MAX];
    memcpy(context, seq, TC_SCP03_SEQ_LEN);
    memcpy(context + TC_SCP03_SEQ_LEN, aid, aid_len);
    return tc_hsm_scp03_kdf(m->h, enc, TC_SCP03_DC_CARD_CHALLENGE, context,
                            TC_SCP03_SEQ_LEN + aid_len, out, out_len);
}

static tc_err p_kcv(void *ctx, uint8_t kvn, enum tc_scp03_key_id id, uint8_t kcv[TC_KCV_LEN])
{
    struct tc_hsm_scp03_provider *m = ctx;
    size_t i = 0;
    unsigned type = 0;
    TC_ENSURE(kcv != NULL, TC_ERR_ARG);
    TC_GUARD(find_index(m, kvn, &i));
    TC_GUARD(type_of(id, &type));
    /* A KCV names a key without revealing it, so it is kept once computed
     * (here or with the key's PUT KEY block) and the keyset's KCVs cost
     * three HSM operations in all. */
    unsigned k = type - 1u;
    if ((m->sets[i].kcv_known & (1u << k)) == 0) {
        tc_hsm_obj o = 0;
        TC_GUARD(tc_hsm_keyset_key(m->h, &m->sets[i].ks, type, &o));
        TC_GUARD(tc_hsm_kcv(m->h, o, m->sets[i].kcv[k]));
        m->sets[i].kcv_known |= 1u << k;
    }
    memcpy(kcv, m->sets[i].kcv[k], TC_KCV_LEN);
    return TC_OK;
}

static tc_err p_wrap_key(void *ctx, uint8_t dek_kvn, const struct tc_scp03_key_provider *src,
                         uint8_t src_kvn, enum tc_scp03_key_id id, uint8_t *out, size_t out_size,
                         size_t *out_len)
{
    struct tc_hsm_scp03_provider *m = ctx;
    size_t si = 0;
    unsigned type = 0;
    tc_hsm_obj dek = 0;
    TC_ENSURE(out != NULL && out_len != NULL, TC_ERR_ARG);
    *out_len = 0;
    /* C_WrapKey needs both keys in this token: the source must be an HSM
     * provider over the same token. A software provider's keys would have
     * to enter the HSM first, which is not what this adapter is for. */
    TC_ENSURE_MSG(src != NULL && src->wrap_key == p_wrap_key && src->ctx != NULL,
                  TC_ERR_UNSUPPORTED, "the HSM can wrap only keys that are HSM objects");
    struct tc_hsm_scp03_provider *sm = src->ctx;
    TC_ENSURE_MSG(sm->h != NULL && m->h != NULL && sm->h->slot == m->h->slot && sm->h->f == m->h->f,
                  TC_ERR_UNSUPPORTED, "the key to wrap is in another HSM token");
    TC_GUARD(type_of(id, &type));
    TC_GUARD(find_index(sm, src_kvn, &si));
    TC_GUARD(key_of(m, dek_kvn, TC_HSM_KEY_DEK, &dek));
    const struct tc_hsm_keyset *src_set = &sm->sets[si].ks;
    /* GP CS 2.3 §11.8.2.3 / Amendment D §7.2.2: AES-CBC, zero ICV, under the
     * current Key-DEK; 16- and 32-byte keys need no padding. A derived
     * keyset's own keys are not extractable: tc_hsm_wrap_keyset_key wraps
     * a copy derived for this one block (docs/hsm.md). */
    TC_ENSURE_MSG(src_set->key_len == 16 || src_set->key_len == 32, TC_ERR_UNSUPPORTED,
                  "the HSM keysets are AES-128 or AES-256");
    unsigned k = type - 1u;
    if ((sm->sets[si].kcv_known & (1u << k)) != 0)
        return tc_hsm_wrap_keyset_key(m->h, dek, src_set, type, out, out_size, out_len);
    /* PUT KEY carries the key's KCV next to its block (Amendment D table
     * 7-10): taken from the same copy, so a key that only travels in PUT
     * KEY (the new keyset's DEK) is never derived as a keyset key. */
    TC_GUARD(tc_hsm_wrap_keyset_key_kcv(m->h, dek, src_set, type, out, out_size, out_len,
                                        sm->sets[si].kcv[k]));
    sm->sets[si].kcv_known |= 1u << k;
    return TC_OK;
}

void tc_hsm_scp03_provider_init(struct tc_hsm_scp03_provider *m, struct tc_hsm *h,
                                struct tc_scp03_key_provider *p)
{
    memset(m, 0, sizeof *m);
    m->h = h;
    memset(p, 0, sizeof *p);
    p->ctx = m;
    p->key_len = p_key_len;
    p->session_keys = p_session_keys;
    p->card_challenge = p_card_challenge;
    p->wrap_key = p_wrap_key;
    p->kcv = p_kcv;
}

tc_err tc_hsm_scp03_provider_add(struct tc_hsm_scp03_provider *m, uint8_t kvn,
                                 const struct tc_hsm_keyset *ks)
{
    TC_ENSURE(m != NULL && ks != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(ks->key_len == 16 || ks->key_len == 32, TC_ERR_RANGE,
                  "HSM SCP03 keysets are 16 or 32 bytes");
    for (size_t i = 0; i < m->n; i++) {
        if (m->sets[i].kvn == kvn) {
            m->sets[i].ks = *ks;
            m->sets[i].kcv_known = 0;
            return TC_OK;
        }
    }
    TC_ENSURE_MSG(m->n < TC_HSM_SCP03_KEYSETS, TC_ERR_NOMEM,
                  "the HSM key provider holds %u keysets", TC_HSM_SCP03_KEYSETS);
    m->sets[m->n].kvn = kvn;
    m->sets[m->n].ks = *ks;
    m->sets[m->n].kcv_known = 0;
    m->n++;
    return TC_OK;
}

struct tc_hsm_keyset *tc_hsm_scp03_provider_keyset(struct tc_hsm_scp03_provider *m, uint8_t kvn)
{
    for (size_t i = 0; m != NULL && i < m->n; i++)
        if (m->sets[i].kvn == kvn)
            return &m->sets[i].ks;
    return NULL;
}
