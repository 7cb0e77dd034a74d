/*
 * Symmetric keys in the HSM: the master diversification key, transport
 * keysets, per-device diversification with C_DeriveKey, KCVs, CMAC, the
 * SCP03 KDF and PUT KEY wrapping. No function here reads a key value.
 */
#include <stdio.h>
#include <string.h>

#include "hsm/hsm_int.h"

static CK_BBOOL ck_true = CK_TRUE;
static CK_BBOOL ck_false = CK_FALSE;

static bool aes_len_ok(size_t n)
{
    /* 16 and 32 only: AES-192 keys need padding in PUT KEY and SoftHSM2's
     * CKM_AES_CBC reports key sizes {16, 32}. */
    return n == 16 || n == 32;
}

static tc_err label_free(struct tc_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
                         const char *label)
{
    CK_OBJECT_HANDLE o[1];
    CK_ULONG n = 0;
    TC_GUARD(tc_hsm_find_all(h, s, cls, label, o, 1, &n));
    TC_ENSURE_MSG(n == 0, TC_ERR_STATE, "an HSM key labelled '%s' already exists", label);
    return TC_OK;
}

/*
 * One AES secret-key template. Policy (docs/hsm.md): always CKA_SENSITIVE;
 * CKA_PRIVATE so nothing is visible before login; usages only as given.
 */
struct key_policy {
    bool token, extractable, encrypt, sign, wrap, derive;
};

static tc_err create_aes(struct tc_hsm *h, CK_SESSION_HANDLE s, const char *label,
                         const uint8_t *value, size_t len, const struct key_policy *p,
                         CK_OBJECT_HANDLE *obj)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t id[TC_HSM_ID_LEN];
    TC_GUARD(tc_hsm_label_check(label));
    TC_GUARD(tc_hsm_label_id(label, id));
    TC_GUARD(label_free(h, s, CKO_SECRET_KEY, label));
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG vlen = (CK_ULONG)len;
    CK_ATTRIBUTE t[16] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, p->token ? &ck_true : &ck_false, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &ck_true, sizeof(CK_BBOOL)},
        {CKA_SENSITIVE, &ck_true, sizeof(CK_BBOOL)},
        {CKA_EXTRACTABLE, p->extractable ? &ck_true : &ck_false, sizeof(CK_BBOOL)},
        {CKA_ENCRYPT, p->encrypt ? &ck_true : &ck_false, sizeof(CK_BBOOL)},
        {CKA_DECRYPT, &ck_false, sizeof(CK_BBOOL)},
        {CKA_SIGN, p->sign ? &ck_true : &ck_false, sizeof(CK_BBOOL)},
        {CKA_VERIFY, &ck_false, sizeof(CK_BBOOL)},
        {CKA_WRAP, p->wrap ? &ck_true : &ck_false, sizeof(CK_BBOOL)},
        {CKA_UNWRAP, &ck_false, sizeof(CK_BBOOL)},
        {CKA_DERIVE, p->derive ? &ck_true : &ck_false, sizeof(CK_BBOOL)},
        {CKA_LABEL, (void *)(uintptr_t)label, (CK_ULONG)strlen(label)},
        {CKA_ID, id, sizeof id},
        {CKA_VALUE_LEN, &vlen, sizeof vlen},
    };
    CK_RV rv;
    if (value != NULL) {
        /* C_CreateObject takes CKA_VALUE instead of CKA_VALUE_LEN. */
        t[15].type = CKA_VALUE;
        t[15].pValue = (void *)(uintptr_t)value;
        t[15].ulValueLen = (CK_ULONG)len;
        rv = h->f->C_CreateObject(s, t, TC_ARRAY_LEN(t), obj);
        if (rv != CKR_OK) {
            ret = TC_HSM_FAIL_RV(rv, "C_CreateObject");
            goto out;
        }
    } else {
        TC_TRY(tc_hsm_require_mech(h, CKM_AES_KEY_GEN, CKF_GENERATE, "master key generation"));
        CK_MECHANISM m = {CKM_AES_KEY_GEN, NULL, 0};
        rv = h->f->C_GenerateKey(s, &m, t, TC_ARRAY_LEN(t), obj);
        if (rv != CKR_OK) {
            ret = TC_HSM_FAIL_RV(rv, "C_GenerateKey");
            goto out;
        }
    }
    ret = TC_OK;
out:
    return ret;
}

static tc_err master_make(struct tc_hsm *h, const char *name, const uint8_t *value, size_t key_len,
                          tc_hsm_obj *obj)
{
    TC_ENSURE(h != NULL && name != NULL && obj != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(aes_len_ok(key_len), TC_ERR_RANGE, "master key must be 16 or 32 bytes");
    char label[TC_HSM_LABEL_MAX + 1];
    int w = snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_MASTER, name);
    TC_ENSURE_MSG(w > 0 && (size_t)w < sizeof label, TC_ERR_RANGE, "master key name too long");
    /* The master key can only derive: never encrypt, sign, wrap or leave. */
    const struct key_policy p = {.token = true, .derive = true};
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    tc_err rc = create_aes(h, s, label, value, key_len, &p, &o);
    tc_hsm_session_release(h, s);
    TC_GUARD(rc);
    *obj = o;
    return TC_OK;
}

tc_err tc_hsm_master_generate(struct tc_hsm *h, const char *name, size_t key_len, tc_hsm_obj *obj)
{
    return master_make(h, name, NULL, key_len, obj);
}

tc_err tc_hsm_master_import(struct tc_hsm *h, const char *name, const uint8_t *value,
                            size_t key_len, tc_hsm_obj *obj)
{
    TC_ENSURE(value != NULL, TC_ERR_ARG);
    return master_make(h, name, value, key_len, obj);
}

static const char *const key_role[3] = {"enc", "mac", "dek"};

static tc_err transport_label(char *out, size_t size, const char *batch, uint8_t kvn, size_t role)
{
    TC_ENSURE(batch != NULL && role < 3, TC_ERR_ARG);
    int w = snprintf(out, size, "%s%s:%02X:%s", TC_HSM_LABEL_TRANSPORT, batch, (unsigned)kvn,
                     key_role[role]);
    TC_ENSURE_MSG(w > 0 && (size_t)w < size, TC_ERR_RANGE, "batch name too long for a key label");
    return tc_hsm_label_check(out);
}

tc_err tc_hsm_transport_import(struct tc_hsm *h, const char *batch, uint8_t kvn, const uint8_t *enc,
                               const uint8_t *mac, const uint8_t *dek, size_t key_len,
                               struct tc_hsm_keyset *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(h != NULL && enc != NULL && mac != NULL && dek != NULL && out != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(aes_len_ok(key_len), TC_ERR_RANGE, "transport keys must be 16 or 32 bytes");
    const uint8_t *vals[3] = {enc, mac, dek};
    /* ENC and MAC: CMAC (session key derivation) and ECB (KCV). DEK: wraps
     * the new keys for PUT KEY, and ECB for its KCV. None leaves the HSM. */
    const struct key_policy pol[3] = {
        {.token = true, .encrypt = true, .sign = true},
        {.token = true, .encrypt = true, .sign = true},
        {.token = true, .encrypt = true, .wrap = true},
    };
    CK_OBJECT_HANDLE o[3] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE, CK_INVALID_HANDLE};
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    for (size_t i = 0; i < 3; i++) {
        char label[TC_HSM_LABEL_MAX + 1];
        TC_TRY(transport_label(label, sizeof label, batch, kvn, i));
        TC_TRY(create_aes(h, s, label, vals[i], key_len, &pol[i], &o[i]));
    }
    memset(out, 0, sizeof *out);
    out->enc = o[0];
    out->mac = o[1];
    out->dek = o[2];
    out->key_len = key_len;
    out->session = false;
    ret = TC_OK;
out:
    if (ret != TC_OK) {
        for (size_t i = 0; i < 3; i++)
            if (o[i] != CK_INVALID_HANDLE)
                (void)h->f->C_DestroyObject(s, o[i]);
    }
    tc_hsm_session_release(h, s);
    return ret;
}

tc_err tc_hsm_transport_find(struct tc_hsm *h, const char *batch, uint8_t kvn,
                             struct tc_hsm_keyset *out)
{
    TC_ENSURE(h != NULL && out != NULL, TC_ERR_ARG);
    tc_hsm_obj o[3];
    for (size_t i = 0; i < 3; i++) {
        char label[TC_HSM_LABEL_MAX + 1];
        TC_GUARD(transport_label(label, sizeof label, batch, kvn, i));
        TC_GUARD(tc_hsm_find(h, TC_HSM_KIND_SECRET, label, &o[i]));
    }
    CK_ULONG len = 0;
    CK_ATTRIBUTE a = {CKA_VALUE_LEN, &len, sizeof len};
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    CK_RV rv = h->f->C_GetAttributeValue(s, o[0], &a, 1);
    tc_hsm_session_release(h, s);
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_GetAttributeValue(CKA_VALUE_LEN)");
    memset(out, 0, sizeof *out);
    out->enc = o[0];
    out->mac = o[1];
    out->dek = o[2];
    out->key_len = len;
    out->session = false;
    return TC_OK;
}

/* ------------------------------------------------------------ diversify */

tc_err tc_hsm_diversify_block(const uint8_t eid[static TC_HSM_EID_LEN], uint8_t type,
                              size_t key_len, size_t index, uint8_t out[static TC_AES_BLOCK])
{
    TC_ENSURE(type >= TC_HSM_KEY_ENC && type <= TC_HSM_KEY_DEK, TC_ERR_ARG);
    TC_ENSURE_MSG(aes_len_ok(key_len), TC_ERR_RANGE, "device keys must be 16 or 32 bytes");
    size_t nblocks = key_len / TC_AES_BLOCK;
    TC_ENSURE(index >= 1 && index <= nblocks, TC_ERR_ARG);
    /* The EID's 32 decimal digits (GSMA SGP.02 §2.2.2) as one integer below
     * 10^32 < 2^107: 14 big-endian bytes, so two bytes remain for the key
     * type and block index and D(t, i) is injective over (t, i, EID). */
    uint8_t num[14] = {0};
    for (size_t d = 0; d < 2 * TC_HSM_EID_LEN; d++) {
        unsigned digit = (d % 2 == 0) ? (unsigned)(eid[d / 2] >> 4) : (unsigned)(eid[d / 2] & 0xF);
        TC_ENSURE_MSG(digit <= 9, TC_ERR_FORMAT, "EID digit %zu is not a decimal digit", d + 1);
        unsigned carry = digit;
        for (size_t k = sizeof num; k-- > 0;) {
            unsigned v = num[k] * 10u + carry;
            num[k] = (uint8_t)(v & 0xFF);
            carry = v >> 8;
        }
    }
    out[0] = type;
    out[1] = (uint8_t)((nblocks << 4) | index);
    memcpy(out + 2, num, sizeof num);
    return TC_OK;
}

/* One key of a device keyset by C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA) from
 * the master. `wrap_copy` selects the template:
 * - the keyset's own key: CKA_EXTRACTABLE FALSE, so neither C_WrapKey nor
 *   C_GetAttributeValue can ever take it out (PKCS#11 2.40 §4.10 Table 31:
 *   CKA_EXTRACTABLE FALSE "the key cannot be wrapped"; CKA_SENSITIVE TRUE:
 *   its value cannot be revealed). ENC/MAC compute CMAC, every key its
 *   KCV, the DEK wraps the next generation of keys; label and ID per
 *   docs/hsm.md.
 * - the copy PUT KEY wraps: sensitive, extractable (C_WrapKey needs the
 *   wrapped key extractable, §5.14) and without any usage: it can only be
 *   wrapped, and the caller destroys it at once. `copy_kcv`: the copy may
 *   also encrypt, for its KCV (one block of 0x01), the one usage the
 *   keyset's own key has for the same purpose; never decrypt, sign, wrap
 *   or derive.
 * Both are session objects, and public ones (CKA_PRIVATE FALSE): PKCS#11
 * 2.40 §4.4, CKA_PRIVATE only decides whether a session that has not logged
 * in may see the object; a session object belongs to the application that
 * made it and goes with its session, and every session of a tc_hsm handle
 * is logged in. It spares SoftHSM2 encrypting the value under the token
 * key at every store and use (that key is in the same process's memory, so
 * it guards nothing here): each derivation and CMAC is about a third
 * cheaper. CKA_SENSITIVE and CKA_EXTRACTABLE, which keep the value inside
 * the HSM, are as above. */
static tc_err derive_key(struct tc_hsm *h, CK_SESSION_HANDLE s, tc_hsm_obj master,
                         const uint8_t eid[static TC_HSM_EID_LEN], size_t role, size_t key_len,
                         bool wrap_copy, bool copy_kcv, CK_OBJECT_HANDLE *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t data[TC_AES_MAX_KEY];
    char digits[2 * TC_HSM_EID_LEN + 1];
    char label[TC_HSM_LABEL_MAX + 1];
    uint8_t id[TC_HSM_ID_LEN];
    *out = CK_INVALID_HANDLE;
    size_t nblocks = key_len / TC_AES_BLOCK;
    for (size_t i = 1; i <= nblocks; i++)
        TC_TRY(tc_hsm_diversify_block(eid, (uint8_t)(role + 1), key_len, i,
                                      data + (i - 1) * TC_AES_BLOCK));
    TC_TRY(tc_hex_encode(eid, TC_HSM_EID_LEN, digits, sizeof digits));
    int w = snprintf(label, sizeof label, "%s%s:%s", TC_HSM_LABEL_DEVICE, digits, key_role[role]);
    TC_CHECK(w > 0 && (size_t)w < sizeof label, TC_ERR_INTERNAL);
    TC_TRY(tc_hsm_label_id(label, id));
    /* PKCS#11 2.40 Current Mechanisms §2.16.x (AES ECB encrypt data): the
     * new key's value is the encryption of the data under the base key;
     * CKA_VALUE_LEN takes all of it. */
    CK_KEY_DERIVATION_STRING_DATA param = {data, (CK_ULONG)key_len};
    CK_MECHANISM m = {CKM_AES_ECB_ENCRYPT_DATA, &param, sizeof param};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG vlen = (CK_ULONG)key_len;
    bool use = !wrap_copy;
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_VALUE_LEN, &vlen, sizeof vlen},
        {CKA_TOKEN, &ck_false, sizeof(CK_BBOOL)},
        {CKA_PRIVATE, &ck_false, sizeof(CK_BBOOL)},
        {CKA_SENSITIVE, &ck_true, sizeof(CK_BBOOL)},
        {CKA_EXTRACTABLE, wrap_copy ? &ck_true : &ck_false, sizeof(CK_BBOOL)},
        {CKA_ENCRYPT, use || copy_kcv ? &ck_true : &ck_false, sizeof(CK_BBOOL)},
        {CKA_DECRYPT, &ck_false, sizeof(CK_BBOOL)},
        {CKA_SIGN, use && role != 2 ? &ck_true : &ck_false, sizeof(CK_BBOOL)},
        {CKA_VERIFY, &ck_false, sizeof(CK_BBOOL)},
        {CKA_WRAP, use && role == 2 ? &ck_true : &ck_false, sizeof(CK_BBOOL)},
        {CKA_UNWRAP, &ck_false, sizeof(CK_BBOOL)},
        {CKA_DERIVE, &ck_false, sizeof(CK_BBOOL)},
        /* The wrap copy goes without label and ID: nothing finds it. */
        {CKA_LABEL, label, (CK_ULONG)strlen(label)},
        {CKA_ID, id, sizeof id},
    };
    CK_ULONG nt = wrap_copy ? TC_ARRAY_LEN(t) - 2 : TC_ARRAY_LEN(t);
    CK_RV rv = h->f->C_DeriveKey(s, &m, tc_hsm_work_obj(h, master), t, nt, out);
    if (rv != CKR_OK) {
        *out = CK_INVALID_HANDLE;
        ret = TC_HSM_FAIL_RV(rv, "C_DeriveKey(CKM_AES_ECB_ENCRYPT_DATA)");
        goto out;
    }
    ret = TC_OK;
out:
    tc_memzero(data, sizeof data);
    return ret;
}

/* What every diversification checks before deriving: the mechanism, the
 * EID's digits and the master's length. */
static tc_err diversify_check(struct tc_hsm *h, CK_SESSION_HANDLE s, tc_hsm_obj master,
                              const uint8_t eid[static TC_HSM_EID_LEN], size_t key_len)
{
    TC_ENSURE_MSG(aes_len_ok(key_len), TC_ERR_RANGE, "device keys must be 16 or 32 bytes");
    TC_GUARD(
        tc_hsm_require_mech(h, CKM_AES_ECB_ENCRYPT_DATA, CKF_DERIVE, "keyset diversification"));
    for (size_t d = 0; d < 2 * TC_HSM_EID_LEN; d++) {
        unsigned digit = (d % 2 == 0) ? (unsigned)(eid[d / 2] >> 4) : (unsigned)(eid[d / 2] & 0xF);
        TC_ENSURE_MSG(digit <= 9, TC_ERR_FORMAT, "EID digit %zu is not a decimal digit", d + 1);
    }
    /* A keyset is never stronger than its master: AES-256 keysets need a
     * 256-bit master key. */
    CK_ULONG master_len = 0;
    CK_RV mrv = tc_hsm_value_len(h, s, master, &master_len);
    if (mrv != CKR_OK)
        return TC_HSM_FAIL_RV(mrv, "C_GetAttributeValue(master, CKA_VALUE_LEN)");
    TC_ENSURE_MSG(master_len >= key_len, TC_ERR_RANGE,
                  "a %zu-byte keyset needs a master key of at least %zu bytes", key_len, key_len);
    return TC_OK;
}

tc_err tc_hsm_diversify(struct tc_hsm *h, tc_hsm_obj master,
                        const uint8_t eid[static TC_HSM_EID_LEN], size_t key_len,
                        struct tc_hsm_keyset *out)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(h != NULL && out != NULL, TC_ERR_ARG);
    CK_OBJECT_HANDLE o[3] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE, CK_INVALID_HANDLE};
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    TC_TRY(diversify_check(h, s, master, eid, key_len));
    for (size_t r = 0; r < 3; r++)
        TC_TRY(derive_key(h, s, master, eid, r, key_len, false, false, &o[r]));
    memset(out, 0, sizeof *out);
    out->enc = o[0];
    out->mac = o[1];
    out->dek = o[2];
    out->key_len = key_len;
    out->session = true;
    out->master = master;
    memcpy(out->eid, eid, TC_HSM_EID_LEN);
    o[0] = o[1] = o[2] = CK_INVALID_HANDLE;
    ret = TC_OK;
out:
    for (size_t r = 0; r < 3; r++)
        if (o[r] != CK_INVALID_HANDLE)
            (void)h->f->C_DestroyObject(s, o[r]);
    tc_hsm_session_release(h, s);
    return ret;
}

tc_err tc_hsm_diversify_deferred(struct tc_hsm *h, tc_hsm_obj master,
                                 const uint8_t eid[static TC_HSM_EID_LEN], size_t key_len,
                                 struct tc_hsm_keyset *out)
{
    TC_ENSURE(h != NULL && out != NULL, TC_ERR_ARG);
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    tc_err rc = diversify_check(h, s, master, eid, key_len);
    tc_hsm_session_release(h, s);
    TC_GUARD(rc);
    memset(out, 0, sizeof *out);
    out->enc = out->mac = out->dek = CK_INVALID_HANDLE;
    out->key_len = key_len;
    out->session = true;
    out->master = master;
    memcpy(out->eid, eid, TC_HSM_EID_LEN);
    return TC_OK;
}

tc_err tc_hsm_keyset_key(struct tc_hsm *h, struct tc_hsm_keyset *ks, unsigned type, tc_hsm_obj *out)
{
    TC_ENSURE(h != NULL && ks != NULL && out != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(type >= TC_HSM_KEY_ENC && type <= TC_HSM_KEY_DEK, TC_ERR_ARG,
                  "key type %u is not ENC, MAC or DEK", type);
    tc_hsm_obj *slot = type == TC_HSM_KEY_ENC   ? &ks->enc
                       : type == TC_HSM_KEY_MAC ? &ks->mac
                                                : &ks->dek;
    if (*slot == CK_INVALID_HANDLE && ks->session) {
        /* Deferred: derived now, exactly as tc_hsm_diversify would have. */
        TC_ENSURE_MSG(aes_len_ok(ks->key_len), TC_ERR_RANGE, "device keys must be 16 or 32 bytes");
        CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
        CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
        tc_err rc = derive_key(h, s, ks->master, ks->eid, type - 1, ks->key_len, false, false, &o);
        tc_hsm_session_release(h, s);
        TC_GUARD(rc);
        *slot = o;
    }
    *out = *slot;
    return TC_OK;
}

void tc_hsm_keyset_destroy(struct tc_hsm *h, struct tc_hsm_keyset *ks)
{
    if (h == NULL || ks == NULL || !ks->session)
        return;
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    const tc_hsm_obj keys[3] = {ks->enc, ks->mac, ks->dek};
    for (size_t i = 0; i < 3; i++)
        if (keys[i] != CK_INVALID_HANDLE) /* a deferred key never made */
            (void)h->f->C_DestroyObject(s, keys[i]);
    tc_hsm_session_release(h, s);
    ks->enc = ks->mac = ks->dek = CK_INVALID_HANDLE;
    ks->session = false;
}

/* ------------------------------------------------------------ operations */

/* The KCV of `key` on a session the caller holds. */
static tc_err kcv_on(struct tc_hsm *h, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                     uint8_t kcv[static TC_KCV_LEN])
{
    /* GP Card Specification 2.3 Amendment D §7.2 (KCV for AES): encrypt a
     * block of 16 bytes 0x01 with the key; the KCV is the first 3 bytes. */
    uint8_t ones[TC_AES_BLOCK];
    uint8_t enc[TC_AES_BLOCK];
    memset(ones, 0x01, sizeof ones);
    CK_ULONG enc_len = sizeof enc;
    CK_MECHANISM m = {CKM_AES_ECB, NULL, 0};
    CK_RV rv = h->f->C_EncryptInit(s, &m, key);
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_EncryptInit(CKM_AES_ECB)");
    rv = h->f->C_Encrypt(s, ones, sizeof ones, enc, &enc_len);
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_Encrypt(CKM_AES_ECB)");
    TC_ENSURE(enc_len == TC_AES_BLOCK, TC_ERR_HSM);
    memcpy(kcv, enc, TC_KCV_LEN);
    return TC_OK;
}

tc_err tc_hsm_kcv(struct tc_hsm *h, tc_hsm_obj key, uint8_t kcv[static TC_KCV_LEN])
{
    TC_ENSURE(h != NULL, TC_ERR_ARG);
    TC_GUARD(tc_hsm_require_mech(h, CKM_AES_ECB, CKF_ENCRYPT, "key check values"));
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    tc_err rc = kcv_on(h, s, tc_hsm_work_obj(h, key), kcv);
    tc_hsm_session_release(h, s);
    return rc;
}

tc_err tc_hsm_cmac(struct tc_hsm *h, tc_hsm_obj key, const struct tc_iov *parts, size_t n,
                   uint8_t mac[static TC_CMAC_LEN])
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(h != NULL && (parts != NULL || n == 0), TC_ERR_ARG);
    TC_GUARD(tc_hsm_require_mech(h, CKM_AES_CMAC, CKF_SIGN, "SCP03 session keys"));
    CK_MECHANISM m = {CKM_AES_CMAC, NULL, 0};
    CK_ULONG mac_len = TC_CMAC_LEN;
    /* Short messages (every SCP03 derivation: 16 + up to 32 bytes) go to
     * the token in one C_Sign, which SoftHSM2 serves about a quarter
     * faster than C_SignUpdate + C_SignFinal; longer ones in parts. */
    uint8_t one[256];
    size_t total = 0;
    for (size_t i = 0; i < n && total <= sizeof one; i++)
        total += parts[i].len;
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    CK_RV rv = h->f->C_SignInit(s, &m, tc_hsm_work_obj(h, key));
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_SignInit(CKM_AES_CMAC)");
        goto out;
    }
    if (total <= sizeof one) {
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            if (parts[i].len > 0)
                memcpy(one + at, parts[i].p, parts[i].len);
            at += parts[i].len;
        }
        /* PKCS#11 2.40 §5.12: C_Sign signs single-part data and ends the
         * operation unless it answers CKR_BUFFER_TOO_SMALL (mac holds the
         * whole 16 bytes). */
        rv = h->f->C_Sign(s, one, (CK_ULONG)at, mac, &mac_len);
        tc_memzero(one, at);
        if (rv != CKR_OK) {
            ret = TC_HSM_FAIL_RV(rv, "C_Sign(CKM_AES_CMAC)");
            goto out;
        }
        TC_CHECK(mac_len == TC_CMAC_LEN, TC_ERR_HSM);
        ret = TC_OK;
        goto out;
    }
    /* PKCS#11 2.40 §5.12: a multi-part C_SignUpdate sequence ends with
     * C_SignFinal; a failed update terminates the operation. */
    for (size_t i = 0; i < n; i++) {
        if (parts[i].len == 0)
            continue;
        rv = h->f->C_SignUpdate(s, (CK_BYTE_PTR)(uintptr_t)parts[i].p, (CK_ULONG)parts[i].len);
        if (rv != CKR_OK) {
            ret = TC_HSM_FAIL_RV(rv, "C_SignUpdate(CKM_AES_CMAC)");
            goto out;
        }
    }
    rv = h->f->C_SignFinal(s, mac, &mac_len);
    if (rv != CKR_OK) {
        ret = TC_HSM_FAIL_RV(rv, "C_SignFinal(CKM_AES_CMAC)");
        goto out;
    }
    TC_CHECK(mac_len == TC_CMAC_LEN, TC_ERR_HSM);
    ret = TC_OK;
out:
    tc_hsm_session_release(h, s);
    return ret;
}

tc_err tc_hsm_scp03_kdf(struct tc_hsm *h, tc_hsm_obj key, uint8_t constant, const uint8_t *context,
                        size_t context_len, uint8_t *out, size_t out_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(out != NULL && (context != NULL || context_len == 0), TC_ERR_ARG);
    TC_ENSURE_MSG(out_len == 8 || out_len == 16 || out_len == 24 || out_len == 32, TC_ERR_RANGE,
                  "SCP03 derived data must be 8, 16, 24 or 32 bytes");
    /* GP Amendment D §6.2.2: derivation data = label (11 bytes 0x00 ||
     * derivation constant) || 0x00 separator || L (2 bytes, bits) ||
     * i (1 byte counter) || context; PRF = CMAC with the static key. */
    uint8_t head[16];
    uint8_t block[TC_CMAC_LEN];
    memset(head, 0, 11);
    head[11] = constant;
    head[12] = 0x00;
    uint16_t bits = (uint16_t)(out_len * 8u);
    head[13] = (uint8_t)(bits >> 8);
    head[14] = (uint8_t)(bits & 0xFF);
    /* As many PRF blocks as L needs; the last one is truncated. */
    for (size_t i = 1, done = 0; done < out_len; i++) {
        head[15] = (uint8_t)i;
        const struct tc_iov parts[2] = {{head, sizeof head}, {context, context_len}};
        TC_TRY(tc_hsm_cmac(h, key, parts, 2, block));
        size_t take = out_len - done < TC_CMAC_LEN ? out_len - done : TC_CMAC_LEN;
        memcpy(out + done, block, take);
        done += take;
    }
    ret = TC_OK;
out:
    tc_memzero(block, sizeof block);
    if (ret != TC_OK)
        tc_memzero(out, out_len);
    return ret;
}

/* C_WrapKey on a session the caller holds. */
static tc_err wrap_on(struct tc_hsm *h, CK_SESSION_HANDLE s, tc_hsm_obj dek, tc_hsm_obj key,
                      uint8_t *out, size_t out_size, size_t *out_len)
{
    /* GP Amendment D §7.2 (PUT KEY for AES keys): the key is encrypted with
     * the current DEK, AES-CBC with an ICV of zero; 16- and 32-byte keys are
     * whole blocks, so no padding is involved. */
    uint8_t iv[TC_AES_BLOCK] = {0};
    CK_MECHANISM m = {CKM_AES_CBC, iv, sizeof iv};
    CK_ULONG len = (CK_ULONG)out_size;
    CK_RV rv = h->f->C_WrapKey(s, &m, tc_hsm_work_obj(h, dek), key, out, &len);
    if (rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_KEY_NOT_WRAPPABLE)
        return TC_FAIL(TC_ERR_STATE, "the HSM refuses to wrap this key: it is not extractable (%s)",
                       tc_hsm_rv_name(rv));
    if (rv != CKR_OK)
        return TC_HSM_FAIL_RV(rv, "C_WrapKey(CKM_AES_CBC)");
    TC_ENSURE(len == 16 || len == 32, TC_ERR_HSM);
    *out_len = len;
    return TC_OK;
}

tc_err tc_hsm_wrap(struct tc_hsm *h, tc_hsm_obj dek, tc_hsm_obj key, uint8_t *out, size_t out_size,
                   size_t *out_len)
{
    TC_ENSURE(h != NULL && out != NULL && out_len != NULL, TC_ERR_ARG);
    *out_len = 0;
    TC_GUARD(tc_hsm_require_mech(h, CKM_AES_CBC, CKF_WRAP, "PUT KEY key blocks"));
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    tc_err rc = wrap_on(h, s, dek, key, out, out_size, out_len);
    tc_hsm_session_release(h, s);
    return rc;
}

/* A key block of keyset ks, and with kcv != NULL the key's KCV. */
static tc_err wrap_keyset(struct tc_hsm *h, tc_hsm_obj dek, const struct tc_hsm_keyset *ks,
                          unsigned type, uint8_t *out, size_t out_size, size_t *out_len,
                          uint8_t *kcv)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(h != NULL && ks != NULL && out != NULL && out_len != NULL, TC_ERR_ARG);
    TC_ENSURE(type >= TC_HSM_KEY_ENC && type <= TC_HSM_KEY_DEK, TC_ERR_ARG);
    *out_len = 0;
    const tc_hsm_obj keys[3] = {ks->enc, ks->mac, ks->dek};
    if (!ks->session) { /* token keysets: wrapped as they are, if they may be */
        TC_GUARD(tc_hsm_wrap(h, dek, keys[type - 1], out, out_size, out_len));
        if (kcv != NULL) {
            tc_err rc = tc_hsm_kcv(h, keys[type - 1], kcv);
            if (rc != TC_OK) {
                tc_memzero(out, out_size);
                *out_len = 0;
            }
            return rc;
        }
        return TC_OK;
    }
    TC_ENSURE_MSG(aes_len_ok(ks->key_len), TC_ERR_RANGE, "device keys must be 16 or 32 bytes");
    TC_GUARD(tc_hsm_require_mech(h, CKM_AES_ECB_ENCRYPT_DATA, CKF_DERIVE, "PUT KEY key blocks"));
    TC_GUARD(tc_hsm_require_mech(h, CKM_AES_CBC, CKF_WRAP, "PUT KEY key blocks"));
    if (kcv != NULL)
        TC_GUARD(tc_hsm_require_mech(h, CKM_AES_ECB, CKF_ENCRYPT, "key check values"));
    /* The keyset's own keys never leave the HSM, not even wrapped: the key
     * block is made from a copy derived again from the master for this one
     * C_WrapKey (and its KCV) and destroyed straight after, on every path. */
    CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
    CK_SESSION_HANDLE s = tc_hsm_session_acquire(h);
    TC_TRY(derive_key(h, s, ks->master, ks->eid, type - 1, ks->key_len, true, kcv != NULL, &copy));
    TC_TRY(wrap_on(h, s, dek, copy, out, out_size, out_len));
    if (kcv != NULL)
        TC_TRY(kcv_on(h, s, copy, kcv));
    ret = TC_OK;
out:
    if (copy != CK_INVALID_HANDLE) {
        CK_RV rv = h->f->C_DestroyObject(s, copy);
        if (rv != CKR_OK && ret == TC_OK)
            ret = TC_HSM_FAIL_RV(rv, "C_DestroyObject(PUT KEY copy)");
    }
    if (ret != TC_OK) {
        tc_memzero(out, out_size);
        *out_len = 0;
    }
    tc_hsm_session_release(h, s);
    return ret;
}

tc_err tc_hsm_wrap_keyset_key(struct tc_hsm *h, tc_hsm_obj dek, const struct tc_hsm_keyset *ks,
                              unsigned type, uint8_t *out, size_t out_size, size_t *out_len)
{
    return wrap_keyset(h, dek, ks, type, out, out_size, out_len, NULL);
}

tc_err tc_hsm_wrap_keyset_key_kcv(struct tc_hsm *h, tc_hsm_obj dek, const struct tc_hsm_keyset *ks,
                                  unsigned type, uint8_t *out, size_t out_size, size_t *out_len,
                                  uint8_t kcv[static TC_KCV_LEN])
{
    TC_ENSURE(kcv != NULL, TC_ERR_ARG);
    return wrap_keyset(h, dek, ks, type, out, out_size, out_len, kcv);
}
