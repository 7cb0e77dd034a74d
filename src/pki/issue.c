/*
 * Issuance: root, batch CA and device certificates. For the CAs OpenSSL
 * builds and encodes the TBSCertificate (i2d_re_X509_tbs); device TBSs are
 * written here with the DER writer from parts the issuer prepares once. The
 * signer signs those bytes; the Certificate SEQUENCE is assembled here (CA
 * certificates are parsed back with d2i_X509), so no private key is ever
 * handed to OpenSSL.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki_int.h"

/* The CA subject DER kept per issuer (X.520 bounds keep real names far
 * below). */
#define TC_PKI_NAME_DER_MAX 512u

struct tc_pki_issuer {
    const struct tc_signer *signer;
    X509 *cert;
    uint8_t key_id[20];
    bool is_batch;
    struct tc_pki_batch_info batch;
    /* Extensions shared by every certificate this issuer signs. */
    X509_EXTENSION *aki;
    X509_EXTENSION *policy;
    /* Device certificates are encoded here from these prebuilt parts: the
     * CA's subject as encoded in its certificate (the devices' issuer), the
     * Extensions that precede the SKI (basicConstraints, keyUsage) and the
     * ones that follow it (AKI, certificatePolicies), each as DER. */
    uint8_t name_der[TC_PKI_NAME_DER_MAX];
    size_t name_len;
    uint8_t ext_head[32];
    size_t ext_head_len;
    uint8_t ext_tail[96];
    size_t ext_tail_len;
    /* The CA's validity as Unix times (the production-time gate). */
    int64_t not_before, not_after;
    /* Random octets for serial numbers, drawn from the DRBG 512 at a
     * time: one RAND_bytes per certificate cost as much as encoding it.
     * Refilled after a fork (rnd_gen) so a child never repeats a serial. */
    uint8_t rnd[512];
    size_t rnd_pos;
    unsigned rnd_gen;
};

static atomic_uint fork_gen;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_child(void)
{
    atomic_fetch_add(&fork_gen, 1u);
}

static void fork_hook(void)
{
    (void)pthread_atfork(NULL, NULL, fork_child);
}

/* n random octets from the issuer's pool (the issuer serves one thread at
 * a time). */
static tc_err issuer_random(struct tc_pki_issuer *iss, uint8_t *out, size_t n)
{
    unsigned gen = atomic_load(&fork_gen);
    TC_ENSURE(n <= sizeof iss->rnd, TC_ERR_ARG);
    if (iss->rnd_pos + n > sizeof iss->rnd || iss->rnd_gen != gen) {
        TC_GUARD(tc_random(iss->rnd, sizeof iss->rnd));
        iss->rnd_pos = 0;
        iss->rnd_gen = gen;
    }
    memcpy(out, iss->rnd + iss->rnd_pos, n);
    tc_memzero(iss->rnd + iss->rnd_pos, n); /* never handed out twice */
    iss->rnd_pos += n;
    return TC_OK;
}

/* Seconds since the epoch of an ASN1_TIME. */
static tc_err unix_time(const ASN1_TIME *t, int64_t *out)
{
    int days = 0, secs = 0;
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int ok = epoch != NULL && ASN1_TIME_diff(&days, &secs, epoch, t) == 1;
    ASN1_TIME_free(epoch);
    if (!ok)
        return tc_fail_ossl(__FILE__, __LINE__, "certificate validity time");
    *out = (int64_t)days * 86400 + secs;
    return TC_OK;
}

/* Extension values that never change (RFC 5280 §4.2.1.9, §4.2.1.3). */
static const uint8_t bc_ca[] = {0x30, 0x03, 0x01, 0x01, 0xFF};
static const uint8_t bc_ca_pathlen0[] = {0x30, 0x06, 0x01, 0x01, 0xFF, 0x02, 0x01, 0x00};
static const uint8_t bc_leaf[] = {0x30, 0x00};
/* keyCertSign (5) + cRLSign (6): one unused bit. */
static const uint8_t ku_ca[] = {0x03, 0x02, 0x01, 0x06};
/* digitalSignature (0): seven unused bits. */
static const uint8_t ku_leaf[] = {0x03, 0x02, 0x07, 0x80};

/* ----------------------------------------------------------- helpers */

/* Octets of a DER tag and length for n content octets (X.690 §8.1.3). */
static size_t der_len(size_t n)
{
    return n < 0x80 ? 2 : n <= 0xFF ? 3 : n <= 0xFFFF ? 4 : 5;
}

static tc_err new_ext_obj(ASN1_OBJECT *obj, bool critical, const uint8_t *v, size_t n,
                          X509_EXTENSION **out)
{
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    if (os == NULL || ASN1_OCTET_STRING_set(os, v, (int)n) != 1) {
        ASN1_OCTET_STRING_free(os);
        return tc_fail_ossl(__FILE__, __LINE__, "extension value");
    }
    *out = X509_EXTENSION_create_by_OBJ(NULL, obj, critical ? 1 : 0, os);
    ASN1_OCTET_STRING_free(os);
    if (*out == NULL)
        return tc_fail_ossl(__FILE__, __LINE__, "X509_EXTENSION_create_by_OBJ");
    return TC_OK;
}

static tc_err new_ext(int nid, const char *oid_txt, bool critical, const uint8_t *v, size_t n,
                      X509_EXTENSION **out)
{
    ASN1_OBJECT *obj = nid != NID_undef ? OBJ_nid2obj(nid) : OBJ_txt2obj(oid_txt, 1);
    if (obj == NULL)
        return tc_fail_ossl(__FILE__, __LINE__, "extension OID");
    tc_err rc = new_ext_obj(obj, critical, v, n, out);
    ASN1_OBJECT_free(obj); /* a no-op for the static NID objects */
    return rc;
}

static tc_err add_ext(X509 *x, X509_EXTENSION *e)
{
    if (X509_add_ext(x, e, -1) != 1)
        return tc_fail_ossl(__FILE__, __LINE__, "X509_add_ext");
    return TC_OK;
}

tc_err tc_pki_x509_add_ext(X509 *x, int nid, const char *oid_txt, bool critical, const uint8_t *v,
                           size_t n)
{
    X509_EXTENSION *e = NULL;
    TC_GUARD(new_ext(nid, oid_txt, critical, v, n, &e));
    tc_err rc = add_ext(x, e);
    X509_EXTENSION_free(e);
    return rc;
}

tc_err tc_pki_key_id(const uint8_t *spki, size_t spki_len, uint8_t out[20])
{
    /* RFC 5280 §4.2.1.2 (1): the 160-bit SHA-1 hash of the value of the BIT
     * STRING subjectPublicKey (excluding tag, length, and unused bits). */
    struct tc_cursor c, seq, alg, bits;
    const uint8_t *p;
    tc_cursor_init(&c, spki, spki_len);
    TC_GUARD(tc_pki_der_get(&c, DER_SEQUENCE, &seq));
    TC_GUARD(tc_cursor_expect_end(&c));
    TC_GUARD(tc_pki_der_get(&seq, DER_SEQUENCE, &alg));
    TC_GUARD(tc_pki_der_get(&seq, DER_BIT_STRING, &bits));
    TC_GUARD(tc_cursor_expect_end(&seq));
    uint8_t unused;
    TC_GUARD(tc_cursor_u8(&bits, &unused));
    TC_ENSURE_MSG(unused == 0, TC_ERR_FORMAT, "subjectPublicKey has unused bits");
    size_t n = tc_cursor_remaining(&bits);
    TC_GUARD(tc_cursor_view(&bits, n, &p));
    unsigned int olen = 0;
    const EVP_MD *sha1 = tc_pki_md(false);
    if (sha1 == NULL || EVP_Digest(p, n, out, &olen, sha1, NULL) != 1 || olen != 20)
        return tc_fail_ossl(__FILE__, __LINE__, "SHA-1 key identifier");
    return TC_OK;
}

static tc_err aki_value(const uint8_t key_id[20], uint8_t out[24])
{
    /* RFC 5280 §4.2.1.1: AuthorityKeyIdentifier { keyIdentifier [0] } only. */
    out[0] = DER_SEQUENCE;
    out[1] = 22;
    out[2] = DER_CTX0_P;
    out[3] = 20;
    memcpy(out + 4, key_id, 20);
    return TC_OK;
}

static tc_err add_ski_aki(X509 *x, const uint8_t ski[20], const uint8_t aki[20])
{
    uint8_t v[24];
    v[0] = DER_OCTET_STRING;
    v[1] = 20;
    memcpy(v + 2, ski, 20);
    TC_GUARD(tc_pki_x509_add_ext(x, NID_subject_key_identifier, NULL, false, v, 22));
    TC_GUARD(aki_value(aki, v));
    return tc_pki_x509_add_ext(x, NID_authority_key_identifier, NULL, false, v, 24);
}

static int sig_nid(enum tc_sig_alg alg)
{
    switch (alg) {
    case TC_SIG_ECDSA_P256_SHA256:
        return NID_ecdsa_with_SHA256;
    case TC_SIG_ECDSA_P384_SHA384:
        return NID_ecdsa_with_SHA384;
    case TC_SIG_ED25519:
        return NID_ED25519;
    default:
        return NID_undef;
    }
}

/* AlgorithmIdentifier DER for the outer signatureAlgorithm (RFC 5758 §3.2:
 * ECDSA without parameters; RFC 8410 §3: Ed25519 without parameters). */
static tc_err algid_der(enum tc_sig_alg alg, const uint8_t **der, size_t *len)
{
    static const uint8_t p256[] = {0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86,
                                   0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02};
    static const uint8_t p384[] = {0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86,
                                   0x48, 0xCE, 0x3D, 0x04, 0x03, 0x03};
    static const uint8_t ed25519[] = {0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70};
    switch (alg) {
    case TC_SIG_ECDSA_P256_SHA256:
        *der = p256;
        *len = sizeof p256;
        return TC_OK;
    case TC_SIG_ECDSA_P384_SHA384:
        *der = p384;
        *len = sizeof p384;
        return TC_OK;
    case TC_SIG_ED25519:
        *der = ed25519;
        *len = sizeof ed25519;
        return TC_OK;
    default:
        return TC_FAIL(TC_ERR_UNSUPPORTED, "signature algorithm %d", (int)alg);
    }
}

static tc_err set_algor(X509_ALGOR *a, enum tc_sig_alg alg)
{
    int nid = sig_nid(alg);
    TC_ENSURE_MSG(nid != NID_undef, TC_ERR_UNSUPPORTED, "signature algorithm %d", (int)alg);
    if (X509_ALGOR_set0(a, OBJ_nid2obj(nid), V_ASN1_UNDEF, NULL) != 1)
        return tc_fail_ossl(__FILE__, __LINE__, "X509_ALGOR_set0");
    return TC_OK;
}

/* Certificate / CertificateList ::= SEQUENCE { tbs, signatureAlgorithm,
 * signatureValue BIT STRING } (RFC 5280 §4.1, §5.1). */
static tc_err sign_and_wrap(const struct tc_signer *s, const uint8_t *tbs, size_t tbs_len,
                            struct tc_buf *der)
{
    const uint8_t *alg = NULL;
    size_t alg_len = 0, sig_len = 0;
    uint8_t sig[TC_SIG_MAX + 1];
    TC_GUARD(algid_der(s->alg, &alg, &alg_len));
    TC_GUARD(s->sign(s->ctx, tbs, tbs_len, sig + 1, sizeof sig - 1, &sig_len));
    TC_ENSURE_MSG(sig_len > 0 && sig_len <= TC_SIG_MAX, TC_ERR_CRYPTO, "signer returned %zu bytes",
                  sig_len);
    sig[0] = 0; /* no unused bits */
    size_t bs_hdr = sig_len + 1 < 0x80 ? 2 : 3;
    tc_pki_der_header(der, DER_SEQUENCE, tbs_len + alg_len + bs_hdr + sig_len + 1);
    tc_buf_put(der, tbs, tbs_len);
    tc_buf_put(der, alg, alg_len);
    tc_pki_der_put(der, DER_BIT_STRING, sig, sig_len + 1);
    return tc_buf_status(der);
}

/* The assembled Certificate is exactly SEQUENCE { the TBS as encoded, the
 * algorithm, BIT STRING }: checked with the cursor. */
static tc_err check_wrapped(const uint8_t *der, size_t len, size_t tbs_len)
{
    struct tc_cursor c, cert, part;
    tc_cursor_init(&c, der, len);
    TC_GUARD(tc_pki_der_get(&c, DER_SEQUENCE, &cert));
    TC_GUARD(tc_cursor_expect_end(&c));
    TC_GUARD(tc_pki_der_get(&cert, DER_SEQUENCE, &part));
    TC_ENSURE_MSG(cert.pos == tbs_len, TC_ERR_INTERNAL, "assembled TBS has the wrong length");
    TC_GUARD(tc_pki_der_get(&cert, DER_SEQUENCE, &part));
    TC_GUARD(tc_pki_der_get(&cert, DER_BIT_STRING, &part));
    return tc_cursor_expect_end(&cert);
}

/* Encode the TBS with the signer's algorithm named in it and sign it; the
 * Certificate DER is appended to der. */
static tc_err sign_tbs(X509 *x, const struct tc_signer *s, struct tc_buf *der)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t *tbs = NULL;
    size_t start = der->len;
    /* The TBS signature field must name the algorithm before encoding
     * (RFC 5280 §4.1.2.3); OpenSSL 3.0 has no setter for it, but the field
     * belongs to the X509 object being built. */
    X509_ALGOR *a = (X509_ALGOR *)(uintptr_t)X509_get0_tbs_sigalg(x);
    TC_TRY(set_algor(a, s->alg));
    int tl = i2d_re_X509_tbs(x, &tbs);
    TC_CHECK_MSG(tl > 0, TC_ERR_CRYPTO, "cannot encode TBSCertificate");
    TC_TRY(sign_and_wrap(s, tbs, (size_t)tl, der));
    TC_TRY(check_wrapped(der->data + start, der->len - start, (size_t)tl));
    ret = TC_OK;
out:
    OPENSSL_free(tbs);
    return ret;
}

tc_err tc_pki_sign_cert(X509 **x, const struct tc_signer *s, struct tc_buf *der)
{
    size_t start = der->len;
    TC_GUARD(sign_tbs(*x, s, der));
    /* CA certificates are parsed back whole as a last check. */
    const uint8_t *p = der->data + start;
    X509 *parsed = d2i_X509(NULL, &p, (long)(der->len - start));
    if (parsed == NULL || p != der->data + der->len) {
        X509_free(parsed);
        return TC_FAIL(TC_ERR_CRYPTO, "assembled certificate does not parse back");
    }
    X509_free(*x);
    *x = parsed;
    return TC_OK;
}

static tc_err random_serial(X509 *x, uint8_t serial[TC_PKI_SERIAL_LEN])
{
    /* RFC 5280 §4.1.2.2: positive, at most 20 octets. 16 random octets with
     * the top bit clear (positive) and the next bit set (always 16 octets
     * in DER, never zero): 126 random bits. */
    uint8_t s[TC_PKI_SERIAL_LEN];
    TC_GUARD(tc_random(s, sizeof s));
    s[0] = (uint8_t)((s[0] & 0x7Fu) | 0x40u);
    if (ASN1_STRING_set(X509_get_serialNumber(x), s, (int)sizeof s) != 1)
        return tc_fail_ossl(__FILE__, __LINE__, "serial number");
    if (serial != NULL)
        memcpy(serial, s, sizeof s);
    return TC_OK;
}

static tc_err name_add(X509_NAME *n, int nid, const char *v)
{
    /* MBSTRING_UTF8: UTF8String, except where X.520 fixes the type
     * (countryName, serialNumber: PrintableString), per OpenSSL's string table. */
    if (X509_NAME_add_entry_by_NID(n, nid, MBSTRING_UTF8, (const unsigned char *)v, -1, -1, 0) != 1)
        return tc_fail_ossl(__FILE__, __LINE__, "name attribute");
    return TC_OK;
}

static tc_err set_time(X509 *x, bool before, int64_t t)
{
    ASN1_TIME *at = ASN1_TIME_set(NULL, (time_t)t); /* UTCTime until 2049 (RFC 5280 §4.1.2.5) */
    if (at == NULL)
        return tc_fail_ossl(__FILE__, __LINE__, "validity time");
    int ok = before ? X509_set1_notBefore(x, at) : X509_set1_notAfter(x, at);
    ASN1_TIME_free(at);
    if (ok != 1)
        return tc_fail_ossl(__FILE__, __LINE__, "validity");
    return TC_OK;
}

static tc_err set_pubkey_spki(X509 *x, const uint8_t *spki, size_t len)
{
    const uint8_t *p = spki;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)len);
    if (k == NULL || p != spki + len) {
        EVP_PKEY_free(k);
        return tc_fail_ossl(__FILE__, __LINE__, "public key (SubjectPublicKeyInfo)");
    }
    int ok = X509_set_pubkey(x, k);
    EVP_PKEY_free(k);
    if (ok != 1)
        return tc_fail_ossl(__FILE__, __LINE__, "X509_set_pubkey");
    return TC_OK;
}

static bool name_ok(const char *s)
{
    return s != NULL && s[0] != '\0' && strnlen(s, TC_PKI_NAME_MAX + 1) <= TC_PKI_NAME_MAX;
}

/* ----------------------------------------------------------- issuer */

static tc_err leaf_parts(struct tc_pki_issuer *iss, const uint8_t *aki, size_t aki_len,
                         const uint8_t *cp, size_t cp_len);

void tc_pki_issuer_free(struct tc_pki_issuer *iss)
{
    if (iss == NULL)
        return;
    tc_memzero(iss->rnd, sizeof iss->rnd);
    X509_free(iss->cert);
    X509_EXTENSION_free(iss->aki);
    X509_EXTENSION_free(iss->policy);
    free(iss);
}

tc_err tc_pki_issuer_new(const struct tc_signer *signer, const uint8_t *ca_der, size_t ca_len,
                         struct tc_pki_issuer **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_pki_issuer *iss = NULL;
    uint8_t spki[TC_SPKI_MAX], *cspki = NULL;
    size_t spki_len = 0;
    TC_CHECK(signer != NULL && signer->sign != NULL && ca_der != NULL && out != NULL, TC_ERR_ARG);
    iss = calloc(1, sizeof *iss);
    TC_CHECK_MSG(iss != NULL, TC_ERR_NOMEM, "issuer");
    iss->signer = signer;
    const uint8_t *p = ca_der;
    iss->cert = d2i_X509(NULL, &p, (long)ca_len);
    TC_CHECK_MSG(iss->cert != NULL && p == ca_der + ca_len, TC_ERR_FORMAT,
                 "CA certificate does not parse as one DER certificate");
    enum tc_pki_kind kind;
    TC_TRY(tc_pki_kind_of(ca_der, ca_len, &kind));
    TC_CHECK_MSG(kind != TC_PKI_KIND_DEVICE, TC_ERR_ARG, "issuer certificate is not a CA");
    if (kind == TC_PKI_KIND_ROOT) {
        TC_TRY(tc_pki_check_root(ca_der, ca_len));
    } else {
        TC_TRY(tc_pki_check_batch(ca_der, ca_len, &iss->batch));
        iss->is_batch = true;
    }
    TC_TRY(unix_time(X509_get0_notBefore(iss->cert), &iss->not_before));
    TC_TRY(unix_time(X509_get0_notAfter(iss->cert), &iss->not_after));
    (void)pthread_once(&fork_once, fork_hook);
    iss->rnd_pos = sizeof iss->rnd; /* empty: filled on first use */
    /* The signer must hold the key the certificate names. */
    TC_TRY(signer->public_key(signer->ctx, spki, sizeof spki, &spki_len));
    int cl = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(iss->cert), &cspki);
    TC_CHECK_MSG(cl > 0 && (size_t)cl == spki_len && memcmp(cspki, spki, spki_len) == 0, TC_ERR_ARG,
                 "the signer's key is not the key of the CA certificate");
    TC_TRY(tc_pki_key_id(spki, spki_len, iss->key_id));
    uint8_t v[64];
    TC_TRY(aki_value(iss->key_id, v));
    TC_TRY(new_ext(NID_authority_key_identifier, NULL, false, v, 24, &iss->aki));
    struct tc_buf pb;
    tc_buf_init_fixed(&pb, v, sizeof v);
    TC_TRY(tc_pki_ext_policy(&pb));
    TC_TRY(new_ext(NID_certificate_policies, NULL, false, pb.data, pb.len, &iss->policy));
    uint8_t akv[24];
    TC_TRY(aki_value(iss->key_id, akv));
    TC_TRY(leaf_parts(iss, akv, sizeof akv, pb.data, pb.len));
    *out = iss;
    iss = NULL;
    ret = TC_OK;
out:
    OPENSSL_free(cspki);
    tc_pki_issuer_free(iss);
    return ret;
}

/* ----------------------------------------------------------- root */

tc_err tc_pki_root_create(const struct tc_signer *signer, const struct tc_pki_root_params *p,
                          struct tc_buf *der)
{
    tc_err ret = TC_ERR_INTERNAL;
    X509 *x = NULL;
    X509_NAME *name = NULL;
    uint8_t spki[TC_SPKI_MAX], kid[20];
    size_t spki_len = 0;
    TC_CHECK(signer != NULL && p != NULL && der != NULL, TC_ERR_ARG);
    TC_CHECK_MSG(signer->alg == TC_SIG_ECDSA_P256_SHA256 || signer->alg == TC_SIG_ECDSA_P384_SHA384,
                 TC_ERR_UNSUPPORTED, "the root key must be ECDSA P-256 or P-384");
    TC_CHECK_MSG(name_ok(p->common_name) && name_ok(p->organization), TC_ERR_ARG,
                 "root common name and organization must be 1-64 characters");
    TC_CHECK_MSG(p->country == NULL || strlen(p->country) == 2, TC_ERR_ARG,
                 "country must be two letters");
    TC_CHECK_MSG(p->not_after > p->not_before && p->not_before >= 0, TC_ERR_ARG,
                 "validity: not_after must follow not_before");
    TC_TRY(signer->public_key(signer->ctx, spki, sizeof spki, &spki_len));
    TC_TRY(tc_pki_key_id(spki, spki_len, kid));
    x = X509_new();
    name = X509_NAME_new();
    TC_CHECK_MSG(x != NULL && name != NULL, TC_ERR_NOMEM, "X509");
    TC_TRY_OSSL(X509_set_version(x, X509_VERSION_3));
    TC_TRY(random_serial(x, NULL));
    if (p->country != NULL)
        TC_TRY(name_add(name, NID_countryName, p->country));
    TC_TRY(name_add(name, NID_organizationName, p->organization));
    TC_TRY(name_add(name, NID_commonName, p->common_name));
    TC_TRY_OSSL(X509_set_subject_name(x, name));
    TC_TRY_OSSL(X509_set_issuer_name(x, name));
    TC_TRY(set_time(x, true, p->not_before));
    TC_TRY(set_time(x, false, p->not_after));
    TC_TRY(set_pubkey_spki(x, spki, spki_len));
    TC_TRY(tc_pki_x509_add_ext(x, NID_basic_constraints, NULL, true, bc_ca, sizeof bc_ca));
    TC_TRY(tc_pki_x509_add_ext(x, NID_key_usage, NULL, true, ku_ca, sizeof ku_ca));
    TC_TRY(add_ski_aki(x, kid, kid));
    TC_TRY(tc_pki_sign_cert(&x, signer, der));
    ret = TC_OK;
out:
    X509_NAME_free(name);
    X509_free(x);
    return ret;
}

/* ----------------------------------------------------------- batch CA */

tc_err tc_pki_ext_nc(const char *o, const char *ou, struct tc_buf *out)
{
    /* RFC 5280 §4.2.1.10: NameConstraints { permittedSubtrees [0]
     * GeneralSubtrees { GeneralSubtree { base directoryName [4] Name } } }.
     * A directoryName is within the subtree when its RDN sequence starts
     * with the subtree's: every device subject must begin O=<o>, OU=<ou>. */
    tc_err ret = TC_ERR_INTERNAL;
    X509_NAME *n = X509_NAME_new();
    uint8_t *nd = NULL;
    uint8_t m1[300], m2[310], m3[320];
    struct tc_buf a, b, c;
    TC_CHECK_MSG(n != NULL, TC_ERR_NOMEM, "X509_NAME");
    TC_TRY(name_add(n, NID_organizationName, o));
    TC_TRY(name_add(n, NID_organizationalUnitName, ou));
    int nl = i2d_X509_NAME(n, &nd);
    TC_CHECK_MSG(nl > 0, TC_ERR_CRYPTO, "encode name");
    tc_buf_init_fixed(&a, m1, sizeof m1);
    tc_pki_der_put(&a, DER_CTX4_C, nd, (size_t)nl);
    TC_TRY(tc_buf_status(&a));
    tc_buf_init_fixed(&b, m2, sizeof m2);
    tc_pki_der_put(&b, DER_SEQUENCE, a.data, a.len);
    TC_TRY(tc_buf_status(&b));
    tc_buf_init_fixed(&c, m3, sizeof m3);
    tc_pki_der_put(&c, DER_CTX0_C, b.data, b.len);
    TC_TRY(tc_buf_status(&c));
    tc_pki_der_put(out, DER_SEQUENCE, c.data, c.len);
    ret = tc_buf_status(out);
out:
    OPENSSL_free(nd);
    X509_NAME_free(n);
    return ret;
}

tc_err tc_pki_batch_ca_create(struct tc_pki_issuer *root, const uint8_t *spki, size_t spki_len,
                              const struct tc_pki_batch_params *p, struct tc_buf *der)
{
    tc_err ret = TC_ERR_INTERNAL;
    X509 *x = NULL;
    X509_NAME *name = NULL;
    uint8_t kid[20], m[600];
    char cn[TC_PKI_NAME_MAX + 1];
    struct tc_buf v;
    TC_CHECK(root != NULL && spki != NULL && p != NULL && der != NULL, TC_ERR_ARG);
    TC_CHECK_MSG(!root->is_batch, TC_ERR_ARG, "batch CAs are issued by the root only");
    TC_CHECK_MSG(tc_pki_id_ok(p->batch_id), TC_ERR_ARG,
                 "batch ID must be 1-64 printable characters");
    TC_TRY(tc_pki_eid_prefix_check(p->eid_prefix));
    TC_CHECK_MSG(name_ok(p->manufacturer), TC_ERR_ARG, "manufacturer must be 1-64 characters");
    TC_CHECK_MSG(p->not_after > p->not_before && p->not_before >= 0, TC_ERR_ARG,
                 "validity: not_after must follow not_before");
    if (p->common_name != NULL) {
        TC_CHECK_MSG(name_ok(p->common_name), TC_ERR_ARG, "common name must be 1-64 characters");
        (void)snprintf(cn, sizeof cn, "%s", p->common_name);
    } else {
        int n = snprintf(cn, sizeof cn, "%s Batch CA %s", p->manufacturer, p->batch_id);
        TC_CHECK_MSG(n > 0 && (size_t)n < sizeof cn, TC_ERR_ARG,
                     "default common name too long: give one");
    }
    /* Batch keys sign device certificates: P-256 (or P-384). */
    const uint8_t *q = spki;
    EVP_PKEY *k = d2i_PUBKEY(NULL, &q, (long)spki_len);
    bool ec = k != NULL && q == spki + spki_len && EVP_PKEY_is_a(k, "EC");
    EVP_PKEY_free(k);
    TC_CHECK_MSG(ec, TC_ERR_FORMAT, "batch public key is not an EC SubjectPublicKeyInfo");
    TC_TRY(tc_pki_key_id(spki, spki_len, kid));

    x = X509_new();
    name = X509_NAME_new();
    TC_CHECK_MSG(x != NULL && name != NULL, TC_ERR_NOMEM, "X509");
    TC_TRY_OSSL(X509_set_version(x, X509_VERSION_3));
    TC_TRY(random_serial(x, NULL));
    TC_TRY(name_add(name, NID_organizationName, p->manufacturer));
    TC_TRY(name_add(name, NID_organizationalUnitName, p->batch_id));
    TC_TRY(name_add(name, NID_commonName, cn));
    TC_TRY_OSSL(X509_set_subject_name(x, name));
    TC_TRY_OSSL(X509_set_issuer_name(x, X509_get_subject_name(root->cert)));
    TC_TRY(set_time(x, true, p->not_before));
    TC_TRY(set_time(x, false, p->not_after));
    TC_TRY(set_pubkey_spki(x, spki, spki_len));
    TC_TRY(tc_pki_x509_add_ext(x, NID_basic_constraints, NULL, true, bc_ca_pathlen0,
                               sizeof bc_ca_pathlen0));
    TC_TRY(tc_pki_x509_add_ext(x, NID_key_usage, NULL, true, ku_ca, sizeof ku_ca));
    TC_TRY(add_ski_aki(x, kid, root->key_id));
    TC_TRY(add_ext(x, root->policy));
    tc_buf_init_fixed(&v, m, sizeof m);
    TC_TRY(tc_pki_ext_nc(p->manufacturer, p->batch_id, &v));
    /* RFC 5280 §4.2.1.10: "Conforming CAs MUST mark this extension as critical". */
    TC_TRY(tc_pki_x509_add_ext(x, NID_name_constraints, NULL, true, v.data, v.len));
    if (p->crl_url != NULL) {
        tc_buf_init_fixed(&v, m, sizeof m);
        TC_TRY(tc_pki_ext_cdp(p->crl_url, &v));
        TC_TRY(tc_pki_x509_add_ext(x, NID_crl_distribution_points, NULL, false, v.data, v.len));
    }
    tc_buf_init_fixed(&v, m, sizeof m);
    TC_TRY(tc_pki_ext_batch(p->batch_id, p->eid_prefix, &v));
    TC_TRY(tc_pki_x509_add_ext(x, NID_undef, TC_PKI_OID_EXT_BATCH, false, v.data, v.len));
    TC_TRY(tc_pki_sign_cert(&x, root->signer, der));
    ret = TC_OK;
out:
    X509_NAME_free(name);
    X509_free(x);
    return ret;
}

/* ----------------------------------------------------------- device */

/* Extension ::= SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN
 * DEFAULT FALSE, extnValue OCTET STRING } (RFC 5280 §4.1); DER leaves
 * critical out when it is FALSE (X.690 §11.5). */
static void ext_put(struct tc_buf *b, const uint8_t *oid, size_t oid_len, bool critical,
                    const uint8_t *v, size_t n)
{
    size_t os_len = der_len(n) + n;
    tc_pki_der_header(b, DER_SEQUENCE, 2 + oid_len + (critical ? 3u : 0u) + os_len);
    tc_pki_der_put(b, DER_OID, oid, oid_len);
    if (critical)
        tc_buf_put(b, (const uint8_t[]){DER_BOOLEAN, 0x01, 0xFF}, 3);
    tc_pki_der_put(b, DER_OCTET_STRING, v, n);
}

/* id-ce arcs (RFC 5280 §4.2.1): 2.5.29.x. */
static const uint8_t oid_bc[] = {0x55, 0x1D, 0x13}, oid_ku[] = {0x55, 0x1D, 0x0F},
                     oid_ski[] = {0x55, 0x1D, 0x0E}, oid_aki[] = {0x55, 0x1D, 0x23},
                     oid_cp[] = {0x55, 0x1D, 0x20}, oid_san[] = {0x55, 0x1D, 0x11};

static tc_err leaf_parts(struct tc_pki_issuer *iss, const uint8_t *aki, size_t aki_len,
                         const uint8_t *cp, size_t cp_len)
{
    struct tc_buf b;
    uint8_t *nd = iss->name_der;
    int nl = i2d_X509_NAME(X509_get_subject_name(iss->cert), NULL);
    TC_ENSURE_MSG(nl > 0 && (size_t)nl <= sizeof iss->name_der, TC_ERR_FORMAT,
                  "CA subject name too long");
    TC_ENSURE_MSG(i2d_X509_NAME(X509_get_subject_name(iss->cert), &nd) == nl, TC_ERR_CRYPTO,
                  "encode CA subject name");
    iss->name_len = (size_t)nl;
    tc_buf_init_fixed(&b, iss->ext_head, sizeof iss->ext_head);
    ext_put(&b, oid_bc, sizeof oid_bc, true, bc_leaf, sizeof bc_leaf);
    ext_put(&b, oid_ku, sizeof oid_ku, true, ku_leaf, sizeof ku_leaf);
    TC_GUARD(tc_buf_status(&b));
    iss->ext_head_len = b.len;
    tc_buf_init_fixed(&b, iss->ext_tail, sizeof iss->ext_tail);
    ext_put(&b, oid_aki, sizeof oid_aki, false, aki, aki_len);
    ext_put(&b, oid_cp, sizeof oid_cp, false, cp, cp_len);
    TC_GUARD(tc_buf_status(&b));
    iss->ext_tail_len = b.len;
    return TC_OK;
}

/* A DirectoryString value: 1..64 octets of well-formed UTF-8 (RFC 3629 §4)
 * without NUL (X.520 ub-organization-name). */
static bool utf8_name_ok(const char *s)
{
    size_t n = strnlen(s, TC_PKI_NAME_MAX + 1);
    if (n == 0 || n > TC_PKI_NAME_MAX)
        return false;
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1Fu;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0Fu;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (n - i <= k)
            return false; /* truncated sequence */
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0u) != 0x80u)
                return false;
            cp = cp << 6 | (p[i + j] & 0x3Fu);
        }
        /* Overlong forms, surrogates, beyond U+10FFFF. */
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

/* One RDN: SET { AttributeTypeAndValue { type, value } } (RFC 5280
 * §4.1.2.4) for an attribute under id-at (2.5.4). */
static void rdn_put(struct tc_buf *b, uint8_t at, uint8_t str_tag, const char *v)
{
    size_t n = strlen(v);
    size_t atv = 5 + der_len(n) + n;
    tc_pki_der_header(b, 0x31, der_len(atv) + atv);
    tc_pki_der_header(b, DER_SEQUENCE, atv);
    tc_pki_der_put(b, DER_OID, (const uint8_t[]){0x55, 0x04, at}, 3);
    tc_pki_der_put(b, str_tag, (const uint8_t *)v, n);
}

/* Time ::= CHOICE { utcTime, generalTime }: UTCTime through 2049,
 * GeneralizedTime from 2050 (RFC 5280 §4.1.2.5). */
static tc_err time_put(struct tc_buf *b, int64_t t)
{
    char gt[16];
    TC_GUARD(tc_pki_gentime_format(t, gt));
    if (t < 2524608000) /* 2050-01-01T00:00:00Z */
        tc_pki_der_put(b, 0x17, (const uint8_t *)gt + 2, 13);
    else
        tc_pki_der_put(b, DER_GENTIME, (const uint8_t *)gt, 15);
    return TC_OK;
}

tc_err tc_pki_device_build(struct tc_pki_issuer *batch, const struct tc_pki_device_fields *f,
                           const uint8_t *spki, size_t spki_len, struct tc_buf *der,
                           uint8_t serial[TC_PKI_SERIAL_LEN])
{
    /* The TBSCertificate of the device profile (docs/cert-profile.md),
     * encoded in DER here from the issuer's prebuilt parts: building it as
     * an X509 object and encoding it with OpenSSL cost more than a quarter
     * of an issuance. The tests parse every certificate back with OpenSSL
     * and compare its own re-encoding of the TBS with these bytes. */
    uint8_t kid[20], bcd[TC_PKI_EID_BCD_LEN], sn[TC_PKI_SERIAL_LEN], m[256], body[1200], subj[200],
        tbs[1210];
    struct tc_buf v, b, s, t;
    TC_ENSURE(batch != NULL && f != NULL && spki != NULL && der != NULL, TC_ERR_ARG);
    size_t eid_n = strnlen(f->eid, TC_PKI_EID_DIGITS + 1);
    TC_ENSURE_MSG(eid_n == TC_PKI_EID_DIGITS, TC_ERR_FORMAT, "EID must be 32 digits");
    for (size_t i = 0; i < TC_PKI_EID_BCD_LEN; i++) {
        unsigned hi = (unsigned)(f->eid[2 * i] - '0'), lo = (unsigned)(f->eid[2 * i + 1] - '0');
        TC_ENSURE_MSG(hi <= 9 && lo <= 9, TC_ERR_FORMAT, "EID must be 32 digits");
        bcd[i] = (uint8_t)(hi << 4 | lo);
    }
    TC_ENSURE_MSG(utf8_name_ok(f->o) && utf8_name_ok(f->ou), TC_ERR_ARG,
                  "subject O and OU must be 1-64 octets of UTF-8");
    /* RFC 5480 §2: the device key is a named-curve P-256 SPKI, copied as is. */
    TC_GUARD(tc_pki_p256_spki(spki, spki_len, NULL, NULL));
    TC_GUARD(tc_pki_key_id(spki, spki_len, kid));
    /* RFC 5280 §4.1.2.2: positive, at most 20 octets. 16 random octets with
     * the top bit clear (positive) and the next bit set (always 16 octets
     * in DER, never zero): 126 random bits. */
    TC_GUARD(issuer_random(batch, sn, sizeof sn));
    sn[0] = (uint8_t)((sn[0] & 0x7Fu) | 0x40u);

    tc_buf_init_fixed(&b, body, sizeof body);
    /* version [0] EXPLICIT v3(2) */
    tc_buf_put(&b, (const uint8_t[]){DER_CTX0_C, 0x03, DER_INTEGER, 0x01, 0x02}, 5);
    tc_pki_der_put(&b, DER_INTEGER, sn, sizeof sn);
    /* signature: the signer's algorithm (RFC 5280 §4.1.2.3). */
    const uint8_t *alg = NULL;
    size_t alg_len = 0;
    TC_GUARD(algid_der(batch->signer->alg, &alg, &alg_len));
    tc_buf_put(&b, alg, alg_len);
    tc_buf_put(&b, batch->name_der, batch->name_len);
    /* validity: notBefore = production time; notAfter 99991231235959Z as
     * GeneralizedTime (IEEE 802.1AR §8.5, RFC 5280 §4.1.2.5: no
     * well-defined expiration). */
    uint8_t vm[40];
    tc_buf_init_fixed(&v, vm, sizeof vm);
    TC_GUARD(time_put(&v, f->production_time));
    tc_pki_der_put(&v, DER_GENTIME, (const uint8_t *)TC_PKI_NOT_AFTER_MAX, 15);
    TC_GUARD(tc_buf_status(&v));
    tc_pki_der_put(&b, DER_SEQUENCE, v.data, v.len);
    /* Subject: O, OU (the batch's name constraint) and serialNumber = EID
     * (IEEE 802.1AR §8.6), as UTF8String, UTF8String, PrintableString. */
    tc_buf_init_fixed(&s, subj, sizeof subj);
    rdn_put(&s, 0x0A, DER_UTF8STRING, f->o);
    rdn_put(&s, 0x0B, DER_UTF8STRING, f->ou);
    rdn_put(&s, 0x05, DER_PRINTABLE, f->eid);
    TC_GUARD(tc_buf_status(&s));
    tc_pki_der_put(&b, DER_SEQUENCE, s.data, s.len);
    tc_buf_put(&b, spki, spki_len);
    /* extensions [3] EXPLICIT Extensions, in the profile's order. */
    uint8_t em[600];
    struct tc_buf e;
    tc_buf_init_fixed(&e, em, sizeof em);
    tc_buf_put(&e, batch->ext_head, batch->ext_head_len);
    uint8_t ski[22] = {DER_OCTET_STRING, 20};
    memcpy(ski + 2, kid, 20);
    ext_put(&e, oid_ski, sizeof oid_ski, false, ski, sizeof ski);
    tc_buf_put(&e, batch->ext_tail, batch->ext_tail_len);
    tc_buf_init_fixed(&v, m, sizeof m);
    TC_GUARD(tc_pki_ext_hmn(bcd, &v));
    ext_put(&e, oid_san, sizeof oid_san, false, v.data, v.len);
    tc_buf_init_fixed(&v, m, sizeof m);
    TC_GUARD(tc_pki_ext_mfg(f->batch_id, f->station_id, f->production_time, &v));
    ext_put(&e, tc_pki_oid_ext_mfg, sizeof tc_pki_oid_ext_mfg, false, v.data, v.len);
    TC_GUARD(tc_buf_status(&e));
    tc_pki_der_header(&b, 0xA3, der_len(e.len) + e.len);
    tc_pki_der_put(&b, DER_SEQUENCE, e.data, e.len);
    TC_GUARD(tc_buf_status(&b));
    tc_buf_init_fixed(&t, tbs, sizeof tbs);
    tc_pki_der_put(&t, DER_SEQUENCE, b.data, b.len);
    TC_GUARD(tc_buf_status(&t));
    size_t start = der->len;
    TC_GUARD(sign_and_wrap(batch->signer, t.data, t.len, der));
    TC_GUARD(check_wrapped(der->data + start, der->len - start, t.len));
    if (serial != NULL)
        memcpy(serial, sn, sizeof sn);
    return TC_OK;
}

tc_err tc_pki_device_issue(struct tc_pki_issuer *batch, const struct tc_pki_device_req *r,
                           struct tc_buf *der, uint8_t serial[TC_PKI_SERIAL_LEN])
{
    TC_ENSURE(batch != NULL && r != NULL && der != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(batch->is_batch, TC_ERR_ARG, "device certificates are issued by a batch CA");
    TC_ENSURE_MSG(r->nonce != NULL && r->pop != NULL, TC_ERR_ARG,
                  "issuance needs the host nonce and the proof of possession");
    TC_ENSURE_MSG(tc_pki_id_ok(r->station_id), TC_ERR_ARG,
                  "station ID must be 1-64 printable characters");
    TC_GUARD(tc_pki_eid_check(r->eid));
    size_t pl = strlen(batch->batch.eid_prefix);
    TC_ENSURE_MSG(strncmp(r->eid, batch->batch.eid_prefix, pl) == 0, TC_ERR_VERIFY,
                  "EID %s is outside batch %s (EID prefix %s)", r->eid, batch->batch.batch_id,
                  batch->batch.eid_prefix);
    /* Production time within the batch CA's validity. */
    TC_ENSURE_MSG(r->production_time >= batch->not_before && r->production_time <= batch->not_after,
                  TC_ERR_RANGE, "production time is outside the batch CA's validity");
    /* Proof of possession before anything is signed. */
    TC_GUARD(tc_pki_p256_spki(r->spki, r->spki_len, NULL, NULL));
    TC_GUARD(tc_pki_pop_verify(r->eid, r->spki, r->spki_len, r->nonce, r->pop, r->pop_len));
    struct tc_pki_device_fields f = {
        .eid = r->eid,
        .ou = batch->batch.batch_id,
        .o = batch->batch.manufacturer,
        .batch_id = batch->batch.batch_id,
        .station_id = r->station_id,
        .production_time = r->production_time,
    };
    return tc_pki_device_build(batch, &f, r->spki, r->spki_len, der, serial);
}

/* ----------------------------------------------------------- CRL */

tc_err tc_pki_crl_create(struct tc_pki_issuer *iss, uint64_t crl_number, int64_t this_update,
                         int64_t next_update, const struct tc_pki_revoked *list, size_t n,
                         struct tc_buf *der)
{
    tc_err ret = TC_ERR_INTERNAL;
    X509_CRL *crl = NULL;
    ASN1_TIME *t = NULL;
    ASN1_INTEGER *num = NULL;
    X509_REVOKED *rev = NULL;
    ASN1_ENUMERATED *reason = NULL;
    uint8_t *tbs = NULL;
    TC_CHECK(iss != NULL && der != NULL && (list != NULL || n == 0), TC_ERR_ARG);
    TC_CHECK_MSG(next_update > this_update && this_update >= 0, TC_ERR_ARG,
                 "nextUpdate must follow thisUpdate");
    /* OpenSSL 3.0 cannot set the TBSCertList signature field directly, so
     * start from a parsed skeleton CRL that names the algorithm and let the
     * setters fill in the rest; i2d_re_X509_CRL_tbs re-encodes it all. */
    const uint8_t *alg = NULL;
    size_t alg_len = 0;
    TC_TRY(algid_der(iss->signer->alg, &alg, &alg_len));
    uint8_t sk[64], tm[] = "700101000000Z";
    struct tc_buf s, tb;
    uint8_t tbm[48];
    tc_buf_init_fixed(&tb, tbm, sizeof tbm);
    tc_buf_put(&tb, (const uint8_t[]){0x02, 0x01, 0x01}, 3); /* version v2 */
    tc_buf_put(&tb, alg, alg_len);
    tc_buf_put(&tb, (const uint8_t[]){0x30, 0x00}, 2); /* issuer, set below */
    tc_pki_der_put(&tb, 0x17, tm, 13);
    TC_TRY(tc_buf_status(&tb));
    tc_buf_init_fixed(&s, sk, sizeof sk);
    tc_pki_der_header(&s, DER_SEQUENCE, 2 + tb.len + alg_len + 3);
    tc_pki_der_put(&s, DER_SEQUENCE, tb.data, tb.len);
    tc_buf_put(&s, alg, alg_len);
    tc_buf_put(&s, (const uint8_t[]){0x03, 0x01, 0x00}, 3);
    TC_TRY(tc_buf_status(&s));
    const uint8_t *p = s.data;
    crl = d2i_X509_CRL(NULL, &p, (long)s.len);
    TC_CHECK_MSG(crl != NULL, TC_ERR_INTERNAL, "CRL skeleton does not parse");

    TC_TRY_OSSL(X509_CRL_set_issuer_name(crl, X509_get_subject_name(iss->cert)));
    t = ASN1_TIME_set(NULL, (time_t)this_update);
    TC_CHECK_MSG(t != NULL, TC_ERR_RANGE, "thisUpdate");
    TC_TRY_OSSL(X509_CRL_set1_lastUpdate(crl, t));
    TC_CHECK_MSG(ASN1_TIME_set(t, (time_t)next_update) != NULL, TC_ERR_RANGE, "nextUpdate");
    /* RFC 5280 §5.1.2.5: conforming CAs MUST include nextUpdate. */
    TC_TRY_OSSL(X509_CRL_set1_nextUpdate(crl, t));
    for (size_t i = 0; i < n; i++) {
        const struct tc_pki_revoked *r = &list[i];
        TC_CHECK_MSG(r->serial_len >= 1 && r->serial_len <= TC_PKI_SERIAL_MAX, TC_ERR_ARG,
                     "revoked serial length %zu", r->serial_len);
        rev = X509_REVOKED_new();
        TC_CHECK_MSG(rev != NULL, TC_ERR_NOMEM, "X509_REVOKED");
        ASN1_INTEGER *sn = ASN1_INTEGER_new();
        TC_CHECK_MSG(sn != NULL, TC_ERR_NOMEM, "serial");
        int ok = ASN1_STRING_set(sn, r->serial, (int)r->serial_len) == 1 &&
                 X509_REVOKED_set_serialNumber(rev, sn) == 1;
        ASN1_INTEGER_free(sn);
        TC_CHECK_MSG(ok, TC_ERR_CRYPTO, "revoked serial");
        TC_CHECK_MSG(ASN1_TIME_set(t, (time_t)r->revoked_at) != NULL, TC_ERR_RANGE,
                     "revocation date");
        TC_TRY_OSSL(X509_REVOKED_set_revocationDate(rev, t));
        if (r->reason >= 0) {
            /* RFC 5280 §5.3.1: reasonCode; 7 is unused, 0..10 otherwise. */
            TC_CHECK_MSG(r->reason <= 10 && r->reason != 7, TC_ERR_ARG, "CRL reason %d", r->reason);
            reason = ASN1_ENUMERATED_new();
            TC_CHECK_MSG(reason != NULL, TC_ERR_NOMEM, "reason");
            TC_TRY_OSSL(ASN1_ENUMERATED_set(reason, r->reason));
            TC_TRY_OSSL(X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0));
            ASN1_ENUMERATED_free(reason);
            reason = NULL;
        }
        TC_TRY_OSSL(X509_CRL_add0_revoked(crl, rev));
        rev = NULL;
    }
    TC_TRY_OSSL(X509_CRL_sort(crl));
    /* RFC 5280 §5.2.1, §5.2.3: AKI (keyIdentifier) and CRL number. */
    TC_TRY_OSSL(X509_CRL_add_ext(crl, iss->aki, -1));
    num = ASN1_INTEGER_new();
    TC_CHECK_MSG(num != NULL, TC_ERR_NOMEM, "CRL number");
    TC_TRY_OSSL(ASN1_INTEGER_set_uint64(num, crl_number));
    TC_TRY_OSSL(X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0));
    int tl = i2d_re_X509_CRL_tbs(crl, &tbs);
    TC_CHECK_MSG(tl > 0, TC_ERR_CRYPTO, "cannot encode TBSCertList");
    size_t start = der->len;
    TC_TRY(sign_and_wrap(iss->signer, tbs, (size_t)tl, der));
    p = der->data + start;
    X509_CRL *back = d2i_X509_CRL(NULL, &p, (long)(der->len - start));
    bool parsed = back != NULL && p == der->data + der->len;
    X509_CRL_free(back);
    TC_CHECK_MSG(parsed, TC_ERR_CRYPTO, "assembled CRL does not parse back");
    ret = TC_OK;
out:
    OPENSSL_free(tbs);
    ASN1_ENUMERATED_free(reason);
    X509_REVOKED_free(rev);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return ret;
}
