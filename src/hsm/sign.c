/*
 * Signature keys in the HSM: key pair generation, SubjectPublicKeyInfo
 * export and struct tc_signer over CKM_ECDSA / CKM_EDDSA.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "hsm/hsm_int.h"

static CK_BBOOL ck_true = CK_TRUE;
static CK_BBOOL ck_false = CK_FALSE;

/* CKA_EC_PARAMS: the curve's OID, DER (PKCS#11 2.40 §2.3.3; RFC 8410 §3 for
 * Ed25519, which SoftHSM2 2.6 accepts as an OID). */
static const uint8_t oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const uint8_t oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};

/* SPKI prefixes up to and including the BIT STRING's unused-bits byte
 * (RFC 5480 §2, RFC 8410 §4); the key bytes follow. */
static const uint8_t spki_p256[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                    0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                    0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00};
static const uint8_t spki_p384[] = {0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86,
                                    0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
                                    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00};
static const uint8_t spki_ed25519[] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                       0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

struct alg_desc {
    enum tc_sig_alg alg;
    const uint8_t *oid;
    size_t oid_len;
    const uint8_t *spki;
    size_t spki_len;
    size_t point_len; /* uncompressed point or raw Ed25519 key */
    size_t field_len; /* r and s length for ECDSA; 0 for EdDSA */
    CK_KEY_TYPE key_type;
    CK_MECHANISM_TYPE gen;
    CK_MECHANISM_TYPE sign;
};

static const struct alg_desc algs[] = {
    {TC_SIG_ECDSA_P256_SHA256, oid_p256, sizeof oid_p256, spki_p256, sizeof spki_p256, 65, 32,
     CKK_EC, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA},
    {TC_SIG_ECDSA_P384_SHA384, oid_p384, sizeof oid_p384, spki_p384, sizeof spki_p384, 97, 48,
     CKK_EC, CKM_EC_KEY_PAIR_GEN, CKM_ECDSA},
    {TC_SIG_ED25519, oid_ed25519, sizeof oid_ed25519, spki_ed25519, sizeof spki_ed25519, 32, 0,
     CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA},
};

static const struct alg_desc *alg_find(enum tc_sig_alg alg)
{
    for (size_t i = 0; i < TC_ARRAY_LEN(algs); i++)
        if (algs[i].alg == alg)
            return &algs[i];
    return NULL;
}

static const struct alg_desc *alg_by_oid(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < TC_ARRAY_LEN(algs); i++)
        if (algs[i].oid_len == n && tc_ct_equal(algs[i].oid, p, n))
            return &algs[i];
    return NULL;
}

tc_err tc_hsm_keypair_generate(struct tc_hsm *h, enum tc_sig_alg alg, const char *label,
                               tc_hsm_obj *priv, tc_hsm_obj *pub)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(h != NULL && priv != NULL && pub != NULL, TC_ERR_ARG);
    const struct alg_desc *d = alg_find(alg);
    TC_ENSURE_MSG(d != NULL, TC_ERR_UNSUPPORTED, "unknown signature algorithm %d", (int)alg);
    TC_GUARD(tc_hsm_label_check(label));
    TC_GUARD(tc_hsm_require_mech(h, d->gen, CKF_GENERATE_KEY_PAIR, "signature key generation"));
    TC_GUARD(tc_hsm_require_mech(h, d->sign, CKF_SIGN, "signatures"));
    uint8_t id[TC_HSM_ID_LEN];
    TC_GUARD(tc_hsm_label_id(label, id));
    CK_OBJECT_CLASS pub_cls = CKO_PUBLIC_KEY, priv_cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = d->key_type;
    CK_ATTRIBUTE pt[] = {
        {CKA_CLASS, &pub_cls, sizeof pub_cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &ck_true, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &ck_false, sizeof(CK_BBOOL)},
        {CKA_VERIFY, &ck_true, sizeof(CK_BBOOL)},
        {CKA_ENCRYPT, &ck_false, sizeof(CK_BBOOL)},
        {CKA_WRAP, &ck_false, sizeof(CK_BBOOL)},
        {CKA_DERIVE, &ck_false, sizeof(CK_BBOOL)},
        {CKA_EC_PARAMS, (void *)(uintptr_t)d->oid, (CK_ULONG)d->oid_len},
        {CKA_LABEL, (void *)(uintptr_t)label, (CK_ULONG)strlen(label)},
        {CKA_ID, id, sizeof id},
    };
    /* Policy: the private half signs and nothing else; sensitive and never
     * extractable, so neither C_GetAttributeValue nor C_WrapKey can get it. */
    CK_ATTRIBUTE kt_priv[] = {
        {CKA_CLASS, &priv_cls, sizeof priv_cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &ck_true, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &ck_true, sizeof(CK_BBOOL)},
        {CKA_SENSITIVE, &ck_true, sizeof(CK_BBOOL)},
        {CKA_EXTRACTABLE, &ck_false, sizeof(CK_BBOOL)},
        {CKA_SIGN, &ck_true, sizeof(CK_BBOOL)},
        {CKA_DECRYPT, &ck_false, sizeof(CK_BBOOL)},
        {CKA_UNWRAP, &ck_false, sizeof(CK_BBOOL)},
        {CKA_DERIVE, &ck_false, sizeof(CK_BBOOL)},
        {CKA_LABEL, (void *)(uintptr_t)label, (CK_ULONG)strlen(label)},
        {CKA_ID, id, sizeof id},
    };
    CK_MECHANISM m = {d->gen, NULL, 0};
    CK_OBJECT_HANDLE found[1];
    CK_ULONG nfound = 0;
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    TC_TRY(tc_hsm_find_all(h, s, CKO_PRIVATE_KEY, label, found, 1, &nfound));
    TC_CHECK_MSG(nfound == 0, TC_ERR_STATE, "an HSM key labelled '%s' already exists", label);
    CK_RV rv = h->f->C_GenerateKeyPair(s, &m, pt, TC_ARRAY_LEN(pt), kt_priv, TC_ARRAY_LEN(kt_priv),
                                       pub, priv);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_GenerateKeyPair");
        goto out;
    }
    ret = TC_OK;
out:
    tc_hsm_session_release(h, s);
    return ret;
}

tc_err tc_hsm_public_key(struct tc_hsm *h, tc_hsm_obj pub, uint8_t *out, size_t out_size,
                         size_t *out_len)
{
    TC_ENSURE(h != NULL && out != NULL && out_len != NULL, TC_ERR_ARG);
    *out_len = 0;
    uint8_t params[16];
    uint8_t point[128];
    CK_ATTRIBUTE a[] = {
        {CKA_EC_PARAMS, params, sizeof params},
        {CKA_EC_POINT, point, sizeof point},
    };
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    CK_RV rv = h->f->C_GetAttributeValue(s, pub, a, TC_ARRAY_LEN(a));
    tc_hsm_session_release(h, s);
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_GetAttributeValue(CKA_EC_PARAMS, CKA_EC_POINT)");
    const struct alg_desc *d = alg_by_oid(params, a[0].ulValueLen);
    TC_ENSURE_MSG(d != NULL, TC_ERR_UNSUPPORTED,
                  "the HSM key is on a curve trustchain does not use");
    const uint8_t *key = NULL;
    TC_GUARD(tc_hsm_ec_point(point, a[1].ulValueLen, d->point_len, d->field_len != 0, &key));
    size_t total = d->spki_len + d->point_len;
    TC_ENSURE(out_size >= total, TC_ERR_SPACE);
    memcpy(out, d->spki, d->spki_len);
    memcpy(out + d->spki_len, key, d->point_len);
    *out_len = total;
    return TC_OK;
}

tc_err tc_hsm_ec_point(const uint8_t *p, size_t len, size_t point_len, bool weierstrass,
                       const uint8_t **key)
{
    /* PKCS#11 2.40 §2.3.3: CKA_EC_POINT is the DER encoding of an OCTET
     * STRING holding the point (X9.62 uncompressed for Weierstrass curves,
     * the 32-byte encoding for Ed25519). Some modules return the bare
     * point (PKCS#11 3.0 allows it for Edwards keys); the lengths tell the
     * two apart. It came from the module: read it through the cursor. */
    struct tc_cursor c;
    tc_cursor_init(&c, p, len);
    if (len == point_len + 2) {
        uint8_t tag = 0, n = 0;
        TC_GUARD(tc_cursor_u8(&c, &tag));
        TC_GUARD(tc_cursor_u8(&c, &n));
        TC_ENSURE_MSG(tag == 0x04 && n == point_len, TC_ERR_FORMAT,
                      "unexpected CKA_EC_POINT encoding from the HSM");
    } else {
        TC_ENSURE_MSG(len == point_len, TC_ERR_FORMAT,
                      "CKA_EC_POINT from the HSM has %zu bytes, expected %zu or %zu", len,
                      point_len, point_len + 2);
    }
    TC_GUARD(tc_cursor_view(&c, point_len, key));
    TC_GUARD(tc_cursor_expect_end(&c));
    TC_ENSURE_MSG(!weierstrass || (*key)[0] == 0x04, TC_ERR_FORMAT,
                  "CKA_EC_POINT is not an uncompressed point");
    return TC_OK;
}

/* ------------------------------------------------------------ signer */

struct hsm_signer {
    struct tc_hsm *h;
    const struct alg_desc *d;
    CK_OBJECT_HANDLE priv, pub;
};

/* One DER INTEGER from a big-endian unsigned value (X.690 §8.3: minimal,
 * a leading 0x00 when the top bit is set). */
static void der_int(struct tc_buf *b, const uint8_t *v, size_t n)
{
    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }
    bool pad = (v[0] & 0x80) != 0;
    tc_buf_put_u8(b, 0x02);
    tc_buf_put_u8(b, (uint8_t)(n + (pad ? 1 : 0)));
    if (pad)
        tc_buf_put_u8(b, 0x00);
    tc_buf_put(b, v, n);
}

tc_err tc_hsm_ecdsa_der(const uint8_t *rs, size_t field, uint8_t *out, size_t out_size,
                        size_t *out_len)
{
    /* SEC 1 §C.5 / RFC 3279 §2.2.3 Ecdsa-Sig-Value ::= SEQUENCE { r, s };
     * PKCS#11 2.40 §2.3.1 returns r || s, each field_len bytes. */
    TC_ENSURE(field > 0 && field <= 48 && rs != NULL && out != NULL && out_len != NULL, TC_ERR_ARG);
    uint8_t body[2 * (2 + 1 + 48)];
    struct tc_buf b;
    tc_buf_init_fixed(&b, body, sizeof body);
    der_int(&b, rs, field);
    der_int(&b, rs + field, field);
    TC_GUARD(tc_buf_status(&b));
    struct tc_buf o;
    tc_buf_init_fixed(&o, out, out_size);
    tc_buf_put_u8(&o, 0x30);
    if (b.len >= 0x80) {
        tc_buf_put_u8(&o, 0x81);
    }
    tc_buf_put_u8(&o, (uint8_t)b.len);
    tc_buf_put(&o, body, b.len);
    TC_GUARD(tc_buf_status(&o));
    *out_len = o.len;
    return TC_OK;
}

static tc_err hsm_sign(void *ctx, const uint8_t *msg, size_t len, uint8_t *sig, size_t sig_size,
                       size_t *sig_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct hsm_signer *hs = ctx;
    TC_ENSURE(hs != NULL && sig != NULL && sig_len != NULL && (msg != NULL || len == 0),
              TC_ERR_ARG);
    *sig_len = 0;
    uint8_t md[EVP_MAX_MD_SIZE];
    uint8_t raw[2 * 66];
    const uint8_t *input = msg;
    CK_ULONG input_len = (CK_ULONG)len;
    if (hs->d->field_len != 0) {
        /* SoftHSM2 2.6.1 offers CKM_ECDSA but not CKM_ECDSA_SHA256/384, so
         * the (public) digest is computed here and CKM_ECDSA signs it. */
        unsigned int md_len = 0;
        const EVP_MD *mdalg = tc_hsm_md(hs->d->alg == TC_SIG_ECDSA_P384_SHA384);
        TC_ENSURE_MSG(mdalg != NULL, TC_ERR_CRYPTO, "OpenSSL has no SHA-2 digest");
        TC_GUARD_OSSL(EVP_Digest(msg, len, md, &md_len, mdalg, NULL));
        input = md;
        input_len = md_len;
    }
    CK_MECHANISM m = {hs->d->sign, NULL, 0};
    CK_ULONG raw_len = sizeof raw;
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(hs->h);
    CK_RV rv = hs->h->f->C_SignInit(s, &m, tc_hsm_work_obj(hs->h, hs->priv));
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_SignInit");
        goto out;
    }
    rv = hs->h->f->C_Sign(s, (CK_BYTE_PTR)(uintptr_t)input, input_len, raw, &raw_len);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_Sign");
        goto out;
    }
    if (hs->d->field_len == 0) {
        /* RFC 8032 §5.1.6: an Ed25519 signature is 64 bytes R || S. */
        TC_CHECK(raw_len == 64, TC_ERR_HSM);
        TC_CHECK(sig_size >= 64, TC_ERR_SPACE);
        memcpy(sig, raw, 64);
        *sig_len = 64;
    } else {
        TC_CHECK(raw_len == 2 * hs->d->field_len, TC_ERR_HSM);
        TC_TRY(tc_hsm_ecdsa_der(raw, hs->d->field_len, sig, sig_size, sig_len));
    }
    ret = TC_OK;
out:
    tc_hsm_session_release(hs->h, s);
    return ret;
}

static tc_err hsm_public(void *ctx, uint8_t *out, size_t out_size, size_t *out_len)
{
    struct hsm_signer *hs = ctx;
    TC_ENSURE(hs != NULL, TC_ERR_ARG);
    return tc_hsm_public_key(hs->h, hs->pub, out, out_size, out_len);
}

tc_err tc_hsm_signer(struct tc_hsm *h, const char *label, struct tc_signer *out)
{
    TC_ENSURE(h != NULL && out != NULL, TC_ERR_ARG);
    memset(out, 0, sizeof *out);
    tc_hsm_obj priv = 0, pub = 0;
    TC_GUARD(tc_hsm_find(h, TC_HSM_KIND_PRIVATE, label, &priv));
    TC_GUARD(tc_hsm_find(h, TC_HSM_KIND_PUBLIC, label, &pub));
    uint8_t params[16];
    CK_ATTRIBUTE a = {CKA_EC_PARAMS, params, sizeof params};
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    CK_RV rv = h->f->C_GetAttributeValue(s, pub, &a, 1);
    tc_hsm_session_release(h, s);
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_GetAttributeValue(CKA_EC_PARAMS)");
    const struct alg_desc *d = alg_by_oid(params, a.ulValueLen);
    TC_ENSURE_MSG(d != NULL, TC_ERR_UNSUPPORTED, "HSM key '%s' is not P-256, P-384 or Ed25519",
                  label);
    TC_GUARD(tc_hsm_require_mech(h, d->sign, CKF_SIGN, "signatures"));
    struct hsm_signer *hs = calloc(1, sizeof *hs);
    TC_ENSURE(hs != NULL, TC_ERR_NOMEM);
    hs->h = h;
    hs->d = d;
    hs->priv = priv;
    hs->pub = pub;
    out->alg = d->alg;
    out->ctx = hs;
    out->sign = hsm_sign;
    out->public_key = hsm_public;
    return TC_OK;
}

void tc_hsm_signer_free(struct tc_signer *s)
{
    if (s == NULL)
        return;
    free(s->ctx);
    memset(s, 0, sizeof *s);
}
