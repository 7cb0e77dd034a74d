/*
 * The card provider: an OpenSSL 3 provider ("tc-card") whose EC keys have
 * no private component. A key is a P-256 public point plus the card link;
 * signing sends the identity applet's SIGN over the link and returns the
 * card's DER signature (docs/ota-agent.md).
 *
 * Why a dedicated library context: the provider implements "EC" and
 * "ECDSA" next to OpenSSL's default provider. In the process-wide context
 * an unqualified fetch of "EC" (a server's key generation, the HSM module,
 * libssl's key shares) could land on this keymgmt, which cannot generate
 * keys. In its own OSSL_LIB_CTX, loaded with OSSL_PROVIDER_add_builtin and
 * with the default property query "?provider=default", every unqualified
 * fetch prefers OpenSSL's algorithms; the agent's SSL_CTX is created there
 * with SSL_CTX_new_ex. A card key is made with the explicit query
 * "provider=tc-card". When libssl signs (EVP_DigestSignInit_ex), OpenSSL
 * 3.0 first tries the ECDSA its property query finds (the default
 * provider's) and exports the key to that provider's keymgmt; the export
 * asks for the private key too, which this keymgmt refuses, so OpenSSL
 * falls back to the signature implementation of the key's own provider:
 * this one.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include <trustchain/ota_agent.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>

#include "card_int.h"

#define PROV_NAME  "tc-card"
#define PARAM_LINK "tc-card-link" /* octet pointer: the struct tc_transport */
#define POINT_LEN  65u
#define GROUP_NAME "prime256v1"
#define SIG_MAX    TC_OTA_CARD_SIG_MAX
#define DIGEST_LEN 32u
#define ALG_PROPS  "provider=" PROV_NAME

/* ------------------------------------------------------------------ card SIGN */

/* X9.62 Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }, DER: short
 * lengths only for P-256, each INTEGER minimal and positive. */
static tc_err check_der_sig(const uint8_t *p, size_t n)
{
    struct tc_cursor c, seq;
    uint8_t tag = 0, len = 0;
    tc_cursor_init(&c, p, n);
    TC_GUARD(tc_cursor_u8(&c, &tag));
    TC_GUARD(tc_cursor_u8(&c, &len));
    TC_ENSURE_MSG(tag == 0x30 && len < 0x80, TC_ERR_FORMAT, "signature: not a short SEQUENCE");
    TC_GUARD(tc_cursor_sub(&c, len, &seq));
    TC_GUARD(tc_cursor_expect_end(&c));
    for (int i = 0; i < 2; i++) {
        const uint8_t *v = NULL;
        TC_GUARD(tc_cursor_u8(&seq, &tag));
        TC_GUARD(tc_cursor_u8(&seq, &len));
        TC_ENSURE_MSG(tag == 0x02 && len >= 1 && len <= 33, TC_ERR_FORMAT,
                      "signature: bad INTEGER");
        TC_GUARD(tc_cursor_view(&seq, len, &v));
        /* X.690 §8.3.2: minimal; r and s are positive (§8.3.3). */
        TC_ENSURE_MSG((v[0] & 0x80) == 0, TC_ERR_FORMAT, "signature: negative INTEGER");
        TC_ENSURE_MSG(!(len > 1 && v[0] == 0 && (v[1] & 0x80) == 0), TC_ERR_FORMAT,
                      "signature: INTEGER not minimal");
    }
    return tc_cursor_expect_end(&seq);
}

tc_err tc_ota_card_sign(struct tc_transport *t, const uint8_t digest[32], uint8_t *sig,
                        size_t sig_size, size_t *sig_len)
{
    uint8_t cmd[5 + DIGEST_LEN + 1], resp[TC_TRANSPORT_MAX_RESPONSE];
    size_t rl = 0;
    uint16_t sw = 0;
    bool locked = false;
    TC_ENSURE(t != NULL && t->transmit != NULL && digest != NULL && sig != NULL && sig_len != NULL,
              TC_ERR_ARG);
    /* The applet, or in CARD_LOCKED the ISD, answers SIGN. */
    TC_GUARD(tc_ota_card_select_identity(t, resp, true, &locked));
    /* ISO/IEC 7816-8 §5.2 PERFORM SECURITY OPERATION, COMPUTE DIGITAL
     * SIGNATURE: P1 9E (digital signature data object out), P2 9A (data
     * field: input to the signature), Le 00 (docs/identity-applet.md). */
    cmd[0] = TC_SE_ID_CLA;
    cmd[1] = TC_SE_ID_INS_SIGN;
    cmd[2] = 0x9E;
    cmd[3] = 0x9A;
    cmd[4] = (uint8_t)DIGEST_LEN;
    memcpy(cmd + 5, digest, DIGEST_LEN);
    cmd[5 + DIGEST_LEN] = 0x00;
    TC_GUARD(tc_ota_card_cmd(t, cmd, sizeof cmd, resp, &rl, &sw));
    TC_ENSURE_MSG(sw == 0x9000, TC_ERR_CARD, "SIGN: SW %04X", sw);
    TC_ENSURE_MSG(rl <= SIG_MAX, TC_ERR_FORMAT, "SIGN: %zu bytes answered", rl);
    TC_GUARD(check_der_sig(resp, rl));
    TC_ENSURE_MSG(rl <= sig_size, TC_ERR_SPACE, "signature buffer too small");
    memcpy(sig, resp, rl);
    *sig_len = rl;
    return TC_OK;
}

/* ------------------------------------------------------------------ keymgmt */

struct card_key {
    bool have_pub;
    uint8_t point[POINT_LEN];
    struct tc_transport *link; /* NULL: a public key only (e.g. imported from a certificate) */
};

static bool is_p256(const char *name)
{
    return strcasecmp(name, "prime256v1") == 0 || strcasecmp(name, "P-256") == 0 ||
           strcasecmp(name, "secp256r1") == 0;
}

static void *km_new(void *provctx)
{
    (void)provctx;
    return calloc(1, sizeof(struct card_key));
}

static void km_free(void *kd)
{
    if (kd != NULL) {
        tc_memzero(kd, sizeof(struct card_key));
        free(kd);
    }
}

static int km_has(const void *kd, int selection)
{
    const struct card_key *k = kd;
    if (k == NULL)
        return 0;
    /* No private component exists, whatever the card can do. */
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0 && !k->have_pub)
        return 0;
    return 1;
}

static int km_import(void *kd, int selection, const OSSL_PARAM params[])
{
    struct card_key *k = kd;
    const OSSL_PARAM *p;
    if (k == NULL)
        return 0;
    /* A private key is never accepted: this keymgmt has nowhere to put it. */
    if (OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY) != NULL)
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
    if (p != NULL) {
        const char *g = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &g) || !is_p256(g))
            return 0;
    } else if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) != 0) {
        return 0;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
        const void *v = NULL;
        size_t n = 0;
        p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY);
        /* SEC 1 §2.3.3 uncompressed point only. */
        if (p == NULL || !OSSL_PARAM_get_octet_string_ptr(p, &v, &n) || n != POINT_LEN ||
            ((const uint8_t *)v)[0] != 0x04)
            return 0;
        memcpy(k->point, v, POINT_LEN);
        k->have_pub = true;
    }
    p = OSSL_PARAM_locate_const(params, PARAM_LINK);
    if (p != NULL) {
        const void *v = NULL;
        size_t n = 0;
        if (!OSSL_PARAM_get_octet_ptr(p, &v, &n) || v == NULL || n != sizeof(struct tc_transport))
            return 0;
        k->link = (struct tc_transport *)(uintptr_t)v;
    }
    return 1;
}

static const OSSL_PARAM km_import_list[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_octet_ptr(PARAM_LINK, NULL, 0), OSSL_PARAM_END};
static const OSSL_PARAM km_export_list[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM *km_import_types(int selection)
{
    (void)selection;
    return km_import_list;
}

static const OSSL_PARAM *km_export_types(int selection)
{
    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 ? NULL : km_export_list;
}

static int km_export(void *kd, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    struct card_key *k = kd;
    /* The private half is on the card and nowhere else: any export that
     * asks for it fails (this is also what sends OpenSSL to this
     * provider's own signature, see the top of the file). */
    if (k == NULL || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0)
        return 0;
    OSSL_PARAM params[3];
    size_t n = 0;
    if ((selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) != 0 ||
        (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0)
        params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                       (char *)(uintptr_t)GROUP_NAME, 0);
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0) {
        if (!k->have_pub)
            return 0;
        params[n++] =
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, k->point, POINT_LEN);
    }
    params[n] = OSSL_PARAM_construct_end();
    return cb(params, cbarg);
}

static const OSSL_PARAM km_gettable_list[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END};

static const OSSL_PARAM *km_gettable_params(void *provctx)
{
    (void)provctx;
    return km_gettable_list;
}

/* Answer `key` if the caller asked for it (OSSL_PARAM get contract). */
static int put_int(OSSL_PARAM params[], const char *key, int v)
{
    OSSL_PARAM *p = OSSL_PARAM_locate(params, key);
    return p == NULL || OSSL_PARAM_set_int(p, v);
}

static int put_str(OSSL_PARAM params[], const char *key, const char *v)
{
    OSSL_PARAM *p = OSSL_PARAM_locate(params, key);
    return p == NULL || OSSL_PARAM_set_utf8_string(p, v);
}

static int put_octets(OSSL_PARAM params[], const char *key, const void *v, size_t n)
{
    OSSL_PARAM *p = OSSL_PARAM_locate(params, key);
    return p == NULL || (v != NULL && OSSL_PARAM_set_octet_string(p, v, n));
}

static int km_get_params(void *kd, OSSL_PARAM params[])
{
    struct card_key *k = kd;
    if (k == NULL)
        return 0;
    const uint8_t *pub = k->have_pub ? k->point : NULL;
    /* P-256: 256-bit group, 128-bit security (NIST SP 800-57 Part 1
     * Table 2); the largest DER signature is 72 bytes. Nothing answers a
     * private key parameter: the caller sees it unset. */
    return put_int(params, OSSL_PKEY_PARAM_BITS, 256) &&
           put_int(params, OSSL_PKEY_PARAM_SECURITY_BITS, 128) &&
           put_int(params, OSSL_PKEY_PARAM_MAX_SIZE, (int)SIG_MAX) &&
           put_str(params, OSSL_PKEY_PARAM_GROUP_NAME, GROUP_NAME) &&
           put_str(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST, "SHA256") &&
           put_str(params, OSSL_PKEY_PARAM_EC_ENCODING, OSSL_PKEY_EC_ENCODING_GROUP) &&
           put_str(params, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                   OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED) &&
           put_octets(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, POINT_LEN) &&
           put_octets(params, OSSL_PKEY_PARAM_PUB_KEY, pub, POINT_LEN);
}

static int km_match(const void *a, const void *b, int selection)
{
    const struct card_key *x = a, *y = b;
    if (x == NULL || y == NULL)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 &&
        (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) == 0)
        return 0; /* no private component to compare */
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0)
        return x->have_pub && y->have_pub && memcmp(x->point, y->point, POINT_LEN) == 0;
    return 1; /* domain parameters: both P-256 */
}

static const char *km_query_operation_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? "ECDSA" : NULL;
}

static const OSSL_DISPATCH km_functions[] = {
    {OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))km_new},
    {OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))km_free},
    {OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))km_has},
    {OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))km_match},
    {OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))km_import},
    {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))km_import_types},
    {OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))km_export},
    {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))km_export_types},
    {OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))km_get_params},
    {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))km_gettable_params},
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))km_query_operation_name},
    {0, NULL}};

/* ------------------------------------------------------------------ signature */

struct sig_ctx {
    struct card_key *key;
    EVP_MD_CTX *md; /* digest-sign: SHA-256 of the message */
};

static void *sig_newctx(void *provctx, const char *propq)
{
    (void)provctx;
    (void)propq;
    return calloc(1, sizeof(struct sig_ctx));
}

static void sig_freectx(void *vctx)
{
    struct sig_ctx *c = vctx;
    if (c == NULL)
        return;
    EVP_MD_CTX_free(c->md);
    free(c);
}

static void *sig_dupctx(void *vctx)
{
    const struct sig_ctx *c = vctx;
    struct sig_ctx *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->key = c->key;
    if (c->md != NULL) {
        d->md = EVP_MD_CTX_new();
        if (d->md == NULL || EVP_MD_CTX_copy_ex(d->md, c->md) != 1) {
            sig_freectx(d);
            return NULL;
        }
    }
    return d;
}

static int sig_init(void *vctx, void *kd, const OSSL_PARAM params[])
{
    struct sig_ctx *c = vctx;
    struct card_key *k = kd;
    (void)params;
    /* Only a key bound to a card can sign. */
    if (c == NULL || k == NULL || k->link == NULL || !k->have_pub)
        return 0;
    c->key = k;
    return 1;
}

/* sig == NULL asks for the size (OSSL_FUNC_signature_sign contract). */
static int card_sign(struct sig_ctx *c, const uint8_t *digest, unsigned char *sig, size_t *siglen,
                     size_t sigsize)
{
    size_t n = 0;
    if (c == NULL || c->key == NULL || c->key->link == NULL)
        return 0;
    if (tc_ota_card_sign(c->key->link, digest, sig, sigsize, &n) != TC_OK)
        return 0;
    *siglen = n;
    return 1;
}

static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen)
{
    if (sig == NULL) {
        *siglen = SIG_MAX;
        return 1;
    }
    /* The input is the SHA-256 digest the applet signs. */
    if (tbslen != DIGEST_LEN)
        return 0;
    return card_sign(vctx, tbs, sig, siglen, sigsize);
}

static bool is_sha256(const char *mdname)
{
    return mdname == NULL || mdname[0] == '\0' || strcasecmp(mdname, "SHA256") == 0 ||
           strcasecmp(mdname, "SHA2-256") == 0 || strcasecmp(mdname, "SHA-256") == 0 ||
           strcmp(mdname, "2.16.840.1.101.3.4.2.1") == 0;
}

static int sig_digest_sign_init(void *vctx, const char *mdname, void *kd, const OSSL_PARAM params[])
{
    struct sig_ctx *c = vctx;
    /* The applet signs SHA-256 digests only: ecdsa_secp256r1_sha256 (RFC
     * 8446 §4.2.3). */
    if (!is_sha256(mdname) || !sig_init(vctx, kd, params))
        return 0;
    if (c->md == NULL && (c->md = EVP_MD_CTX_new()) == NULL)
        return 0;
    return EVP_DigestInit_ex(c->md, EVP_sha256(), NULL);
}

static int sig_digest_sign_update(void *vctx, const unsigned char *data, size_t len)
{
    struct sig_ctx *c = vctx;
    if (c == NULL || c->md == NULL)
        return 0;
    return EVP_DigestUpdate(c->md, data, len);
}

static int sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    struct sig_ctx *c = vctx;
    uint8_t d[DIGEST_LEN];
    unsigned dl = 0;
    if (c == NULL || c->md == NULL)
        return 0;
    if (sig == NULL) {
        *siglen = SIG_MAX;
        return 1;
    }
    if (EVP_DigestFinal_ex(c->md, d, &dl) != 1 || dl != DIGEST_LEN)
        return 0;
    int ok = card_sign(c, d, sig, siglen, sigsize);
    tc_memzero(d, sizeof d);
    return ok;
}

static int sig_digest_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                           const unsigned char *tbs, size_t tbslen)
{
    struct sig_ctx *c = vctx;
    if (sig == NULL) {
        *siglen = SIG_MAX;
        return 1;
    }
    if (c == NULL || c->md == NULL || EVP_DigestUpdate(c->md, tbs, tbslen) != 1)
        return 0;
    return sig_digest_sign_final(vctx, sig, siglen, sigsize);
}

/* ecdsa-with-SHA256 AlgorithmIdentifier (RFC 5758 §3.2: parameters absent). */
static const uint8_t ALG_ID[] = {0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86,
                                 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02};

static int sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    (void)vctx;
    return put_octets(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID, ALG_ID, sizeof ALG_ID) &&
           put_str(params, OSSL_SIGNATURE_PARAM_DIGEST, "SHA256");
}

static const OSSL_PARAM sig_gettable_list[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM *sig_gettable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return sig_gettable_list;
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    (void)vctx;
    /* Only SHA-256 can be named. */
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST);
    const char *md = NULL;
    if (p != NULL && (!OSSL_PARAM_get_utf8_string_ptr(p, &md) || !is_sha256(md)))
        return 0;
    return 1;
}

static const OSSL_PARAM sig_settable_list[] = {
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0), OSSL_PARAM_END};

static const OSSL_PARAM *sig_settable_ctx_params(void *vctx, void *provctx)
{
    (void)vctx;
    (void)provctx;
    return sig_settable_list;
}

static const OSSL_DISPATCH sig_functions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))sig_newctx},
    {OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))sig_freectx},
    {OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))sig_dupctx},
    {OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))sig_init},
    {OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))sig_sign},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))sig_digest_sign_init},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))sig_digest_sign_update},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))sig_digest_sign_final},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN, (void (*)(void))sig_digest_sign},
    {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))sig_get_ctx_params},
    {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))sig_gettable_ctx_params},
    {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))sig_set_ctx_params},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))sig_settable_ctx_params},
    {0, NULL}};

/* ------------------------------------------------------------------ provider */

static const OSSL_ALGORITHM keymgmt_algs[] = {{"EC:id-ecPublicKey:1.2.840.10045.2.1", ALG_PROPS,
                                               km_functions,
                                               "P-256 key held by the identity applet"},
                                              {NULL, NULL, NULL, NULL}};
static const OSSL_ALGORITHM signature_algs[] = {
    {"ECDSA", ALG_PROPS, sig_functions, "ECDSA by the identity applet's SIGN"},
    {NULL, NULL, NULL, NULL}};

static const OSSL_ALGORITHM *prov_query(void *provctx, int operation_id, int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    switch (operation_id) {
    case OSSL_OP_KEYMGMT:
        return keymgmt_algs;
    case OSSL_OP_SIGNATURE:
        return signature_algs;
    default:
        return NULL;
    }
}

static const OSSL_DISPATCH prov_functions[] = {
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_query}, {0, NULL}};

static int prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                     const OSSL_DISPATCH **out, void **provctx)
{
    (void)handle;
    (void)in;
    *out = prov_functions;
    *provctx = NULL;
    return 1;
}

static pthread_once_t libctx_once = PTHREAD_ONCE_INIT;
static OSSL_LIB_CTX *libctx;

static void libctx_init(void)
{
    OSSL_LIB_CTX *l = OSSL_LIB_CTX_new();
    if (l == NULL)
        return;
    if (OSSL_PROVIDER_add_builtin(l, PROV_NAME, prov_init) != 1 ||
        OSSL_PROVIDER_load(l, "default") == NULL || OSSL_PROVIDER_load(l, PROV_NAME) == NULL ||
        EVP_set_default_properties(l, "?provider=default") != 1) {
        OSSL_LIB_CTX_free(l);
        return;
    }
    libctx = l;
}

tc_err tc_ota_provider_libctx(OSSL_LIB_CTX **out)
{
    TC_ENSURE(out != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(pthread_once(&libctx_once, libctx_init) == 0, TC_ERR_INTERNAL, "pthread_once");
    TC_ENSURE_MSG(libctx != NULL, TC_ERR_CRYPTO, "card provider: library context not created");
    *out = libctx;
    return TC_OK;
}

tc_err tc_ota_card_key_new(struct tc_transport *t, const uint8_t point[65], EVP_PKEY **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    OSSL_LIB_CTX *l = NULL;
    EVP_PKEY_CTX *ctx = NULL, *chk = NULL;
    EVP_PKEY *pk = NULL, *soft = NULL;
    TC_ENSURE(t != NULL && t->transmit != NULL && point != NULL && out != NULL, TC_ERR_ARG);
    *out = NULL;
    TC_GUARD(tc_ota_provider_libctx(&l));
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                            (char *)(uintptr_t)GROUP_NAME, 0),
                           OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                             (void *)(uintptr_t)point, POINT_LEN),
                           OSSL_PARAM_construct_octet_ptr(PARAM_LINK, (void **)&t, sizeof *t),
                           OSSL_PARAM_construct_end()};
    /* SEC 1 §3.2.2.1: the point must be on the curve; OpenSSL's own EC
     * keymgmt checks it (the card provider only carries it). */
    ctx = EVP_PKEY_CTX_new_from_name(l, "EC", "provider=default");
    TC_CHECK_MSG(ctx != NULL, TC_ERR_CRYPTO, "EC keymgmt");
    TC_TRY_OSSL(EVP_PKEY_fromdata_init(ctx));
    TC_CHECK_MSG(EVP_PKEY_fromdata(ctx, &soft, EVP_PKEY_PUBLIC_KEY, params) == 1, TC_ERR_FORMAT,
                 "card public key is not a P-256 point");
    chk = EVP_PKEY_CTX_new_from_pkey(l, soft, "provider=default");
    TC_CHECK_MSG(chk != NULL && EVP_PKEY_public_check(chk) == 1, TC_ERR_FORMAT,
                 "card public key is not on P-256");
    EVP_PKEY_CTX_free(ctx);
    ctx = EVP_PKEY_CTX_new_from_name(l, "EC", ALG_PROPS);
    TC_CHECK_MSG(ctx != NULL, TC_ERR_CRYPTO, "card provider keymgmt not found");
    TC_TRY_OSSL(EVP_PKEY_fromdata_init(ctx));
    TC_TRY_OSSL(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params));
    *out = pk;
    pk = NULL;
    ret = TC_OK;
out:
    EVP_PKEY_free(pk);
    EVP_PKEY_free(soft);
    EVP_PKEY_CTX_free(chk);
    EVP_PKEY_CTX_free(ctx);
    return ret;
}
