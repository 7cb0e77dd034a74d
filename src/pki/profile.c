/*
 * The certificate profiles of docs/cert-profile.md, checked rule by rule on
 * one certificate at a time (no signatures, no chain). Every failure names
 * the rule it broke. The input must be exactly one DER certificate that
 * re-encodes to the same bytes.
 */
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "pki_int.h"

static const uint8_t bc_ca[] = {0x30, 0x03, 0x01, 0x01, 0xFF};
static const uint8_t bc_ca_pathlen0[] = {0x30, 0x06, 0x01, 0x01, 0xFF, 0x02, 0x01, 0x00};
static const uint8_t bc_leaf[] = {0x30, 0x00};
static const uint8_t ku_ca[] = {0x03, 0x02, 0x01, 0x06};
static const uint8_t ku_leaf[] = {0x03, 0x02, 0x07, 0x80};

#define REJECT(...) TC_FAIL(TC_ERR_VERIFY, __VA_ARGS__)

/* Re-record the last failure as a profile violation with context. The
 * message is copied first: tc_fail writes the buffer it would read. */
static tc_err rewrap(const char *what)
{
    char msg[sizeof(((struct tc_error *)0)->msg)];
    (void)snprintf(msg, sizeof msg, "%s", tc_error_last()->msg);
    return TC_FAIL(TC_ERR_VERIFY, "%s: %s", what, msg);
}

static tc_err parse(const uint8_t *der, size_t len, X509 **out)
{
    TC_ENSURE(der != NULL && len > 0, TC_ERR_ARG);
    TC_ENSURE_MSG(len <= TC_PKI_CERT_MAX, TC_ERR_FORMAT, "certificate larger than %u bytes",
                  TC_PKI_CERT_MAX);
    const uint8_t *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL || p != der + len) {
        X509_free(x);
        return TC_FAIL(TC_ERR_FORMAT, "not one DER certificate");
    }
    /* X.690 DER: the encoding must be the canonical one. */
    uint8_t *re = NULL;
    int rl = i2d_X509(x, &re);
    bool same = rl > 0 && (size_t)rl == len && memcmp(re, der, len) == 0;
    OPENSSL_free(re);
    if (!same) {
        X509_free(x);
        return TC_FAIL(TC_ERR_FORMAT, "certificate is not in canonical DER");
    }
    *out = x;
    return TC_OK;
}

/* ----------------------------------------------------------- extensions */

enum ext_id { E_BC, E_KU, E_SKI, E_AKI, E_POL, E_NC, E_CDP, E_SAN, E_MFG, E_BATCH, E_COUNT };

static const char *const ext_names[E_COUNT] = {
    "basicConstraints",    "keyUsage",        "subjectKeyIdentifier",  "authorityKeyIdentifier",
    "certificatePolicies", "nameConstraints", "cRLDistributionPoints", "subjectAltName",
    "manufacturing info",  "batch info"};

struct exts {
    bool seen[E_COUNT];
    bool crit[E_COUNT];
    const uint8_t *v[E_COUNT];
    size_t n[E_COUNT];
};

static bool oid_is(const ASN1_OBJECT *o, const uint8_t *der, size_t n)
{
    return (size_t)OBJ_length(o) == n && memcmp(OBJ_get0_data(o), der, n) == 0;
}

static tc_err collect(const X509 *x, unsigned allowed, struct exts *e)
{
    memset(e, 0, sizeof *e);
    int count = X509_get_ext_count(x);
    for (int i = 0; i < count; i++) {
        const X509_EXTENSION *ext = X509_get_ext(x, i);
        const ASN1_OBJECT *o = X509_EXTENSION_get_object((X509_EXTENSION *)(uintptr_t)ext);
        int id;
        switch (OBJ_obj2nid(o)) {
        case NID_basic_constraints:
            id = E_BC;
            break;
        case NID_key_usage:
            id = E_KU;
            break;
        case NID_subject_key_identifier:
            id = E_SKI;
            break;
        case NID_authority_key_identifier:
            id = E_AKI;
            break;
        case NID_certificate_policies:
            id = E_POL;
            break;
        case NID_name_constraints:
            id = E_NC;
            break;
        case NID_crl_distribution_points:
            id = E_CDP;
            break;
        case NID_subject_alt_name:
            id = E_SAN;
            break;
        default:
            if (oid_is(o, tc_pki_oid_ext_mfg, sizeof tc_pki_oid_ext_mfg))
                id = E_MFG;
            else if (oid_is(o, tc_pki_oid_ext_batch, sizeof tc_pki_oid_ext_batch))
                id = E_BATCH;
            else
                id = -1;
            break;
        }
        if (id < 0 || !(allowed & (1u << id))) {
            char txt[80];
            int nid = OBJ_obj2nid(o);
            if (nid != NID_undef)
                (void)snprintf(txt, sizeof txt, "%s", OBJ_nid2sn(nid));
            else
                (void)OBJ_obj2txt(txt, sizeof txt, o, 1);
            return REJECT("extension %s is not allowed in this profile",
                          id < 0 ? txt : ext_names[id]);
        }
        /* RFC 5280 §4.2: "A certificate MUST NOT include more than one
         * instance of a particular extension." */
        if (e->seen[id])
            return REJECT("extension %s appears twice", ext_names[id]);
        const ASN1_OCTET_STRING *d = X509_EXTENSION_get_data((X509_EXTENSION *)(uintptr_t)ext);
        e->seen[id] = true;
        e->crit[id] = X509_EXTENSION_get_critical(ext) == 1;
        e->v[id] = ASN1_STRING_get0_data(d);
        e->n[id] = (size_t)ASN1_STRING_length(d);
    }
    return TC_OK;
}

static tc_err need(const struct exts *e, enum ext_id id, bool critical)
{
    if (!e->seen[id])
        return REJECT("extension %s is missing", ext_names[id]);
    if (e->crit[id] != critical)
        return REJECT("extension %s must be %s", ext_names[id],
                      critical ? "critical" : "non-critical");
    return TC_OK;
}

static tc_err exact(const struct exts *e, enum ext_id id, const uint8_t *v, size_t n,
                    const char *want)
{
    if (e->n[id] != n || memcmp(e->v[id], v, n) != 0)
        return REJECT("extension %s must be exactly %s", ext_names[id], want);
    return TC_OK;
}

/* SKI: a non-empty OCTET STRING equal to the SHA-1 key identifier. */
static tc_err check_ski(const struct exts *e, const X509 *x, uint8_t kid[20])
{
    struct tc_cursor c, os;
    const uint8_t *p;
    uint8_t *spki = NULL;
    TC_GUARD(need(e, E_SKI, false));
    tc_cursor_init(&c, e->v[E_SKI], e->n[E_SKI]);
    if (tc_pki_der_get(&c, DER_OCTET_STRING, &os) != TC_OK || tc_cursor_expect_end(&c) != TC_OK)
        return REJECT("subjectKeyIdentifier is not one OCTET STRING");
    if (tc_cursor_remaining(&os) == 0)
        return REJECT("subjectKeyIdentifier is empty");
    int sl = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki);
    if (sl <= 0)
        return TC_FAIL(TC_ERR_CRYPTO, "encode public key");
    tc_err rc = tc_pki_key_id(spki, (size_t)sl, kid);
    OPENSSL_free(spki);
    TC_GUARD(rc);
    if (tc_cursor_remaining(&os) != 20 || tc_cursor_view(&os, 20, &p) != TC_OK ||
        memcmp(p, kid, 20) != 0)
        return REJECT("subjectKeyIdentifier is not the SHA-1 of the public key");
    return TC_OK;
}

/* AKI: keyIdentifier only (RFC 5280 §4.2.1.1), non-empty. */
static tc_err check_aki(const struct exts *e, uint8_t *kid, size_t *kid_len)
{
    struct tc_cursor c, seq, k;
    TC_GUARD(need(e, E_AKI, false));
    tc_cursor_init(&c, e->v[E_AKI], e->n[E_AKI]);
    if (tc_pki_der_get(&c, DER_SEQUENCE, &seq) != TC_OK || tc_cursor_expect_end(&c) != TC_OK ||
        tc_pki_der_get(&seq, DER_CTX0_P, &k) != TC_OK || tc_cursor_remaining(&seq) != 0)
        return REJECT("authorityKeyIdentifier must hold the keyIdentifier only");
    size_t n = tc_cursor_remaining(&k);
    if (n == 0 || n > 64)
        return REJECT("authorityKeyIdentifier keyIdentifier is empty or too long");
    *kid_len = n;
    return tc_cursor_copy(&k, kid, n);
}

static tc_err check_policy(const struct exts *e)
{
    uint8_t m[40];
    struct tc_buf b;
    tc_buf_init_fixed(&b, m, sizeof m);
    TC_GUARD(tc_pki_ext_policy(&b));
    TC_GUARD(need(e, E_POL, false));
    return exact(e, E_POL, b.data, b.len,
                 "the one trustchain device identity policy " TC_PKI_OID_POLICY);
}

/* ----------------------------------------------------------- common */

static tc_err check_common(const X509 *x, bool ca)
{
    if (X509_get_version(x) != X509_VERSION_3)
        return REJECT("version is not v3");
    /* RFC 5280 §4.1.2.2: positive, non-zero, at most 20 octets. */
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    const uint8_t *sd = ASN1_STRING_get0_data(sn);
    int sl = ASN1_STRING_length(sn);
    if (ASN1_STRING_type(sn) != V_ASN1_INTEGER || sl <= 0 || (sl == 1 && sd[0] == 0))
        return REJECT("serial number must be positive");
    if (sl + ((sd[0] & 0x80) ? 1 : 0) > (int)TC_PKI_SERIAL_MAX)
        return REJECT("serial number longer than 20 octets");
    /* RFC 5280 §4.1.1.2: signatureAlgorithm equals the TBS signature field. */
    const X509_ALGOR *outer = NULL;
    X509_get0_signature(NULL, &outer, x);
    if (outer == NULL || X509_ALGOR_cmp(outer, X509_get0_tbs_sigalg(x)) != 0)
        return REJECT("signature algorithm differs from the TBS signature field");
    int nid = X509_get_signature_nid(x);
    if (nid != NID_ecdsa_with_SHA256 && nid != NID_ecdsa_with_SHA384)
        return REJECT("signature algorithm must be ecdsa-with-SHA256 or ecdsa-with-SHA384");
    const ASN1_OBJECT *ao = NULL;
    int ptype = 0;
    X509_ALGOR_get0(&ao, &ptype, NULL, outer);
    if (ptype != V_ASN1_UNDEF)
        return REJECT("ECDSA signature algorithm must have absent parameters (RFC 5758 §3.2)");
    if (X509_get0_extensions(x) == NULL)
        return REJECT("no extensions");
    /* Key: EC on a named curve, P-256 (all) or P-384 (CAs). */
    EVP_PKEY *k = X509_get0_pubkey(x);
    if (k == NULL || !EVP_PKEY_is_a(k, "EC"))
        return REJECT("public key is not an EC key");
    char curve[32];
    size_t cl = 0;
    if (EVP_PKEY_get_utf8_string_param(k, "group", curve, sizeof curve, &cl) != 1)
        return REJECT("public key is not on a named curve");
    bool p256 = strcmp(curve, "prime256v1") == 0;
    bool p384 = strcmp(curve, "secp384r1") == 0;
    if (!(p256 || (ca && p384)))
        return REJECT("public key curve %s is not allowed (P-256%s)", curve, ca ? " or P-384" : "");
    return TC_OK;
}

/* Subject RDNs, one attribute each, in the order given; values copied out
 * (max TC_PKI_NAME_MAX). types: the ASN.1 string type each must have. */
struct rdn_rule {
    int nid;
    int type; /* V_ASN1_UTF8STRING or V_ASN1_PRINTABLESTRING */
    char *out;
    bool optional;
};

static tc_err check_name(const X509_NAME *n, const char *what, struct rdn_rule *rules,
                         size_t nrules)
{
    int count = X509_NAME_entry_count(n);
    int idx = 0;
    for (size_t r = 0; r < nrules; r++) {
        const X509_NAME_ENTRY *ne = idx < count ? X509_NAME_get_entry(n, idx) : NULL;
        int nid = ne ? OBJ_obj2nid(X509_NAME_ENTRY_get_object(ne)) : NID_undef;
        if (nid != rules[r].nid) {
            if (rules[r].optional)
                continue;
            return REJECT("%s: attribute %d must be %s", what, idx + 1, OBJ_nid2sn(rules[r].nid));
        }
        if (X509_NAME_ENTRY_set(ne) != idx)
            return REJECT("%s: multi-valued RDN", what);
        const ASN1_STRING *v = X509_NAME_ENTRY_get_data(ne);
        int vl = ASN1_STRING_length(v);
        if (ASN1_STRING_type(v) != rules[r].type)
            return REJECT("%s: %s must be a %s", what, OBJ_nid2sn(nid),
                          rules[r].type == V_ASN1_UTF8STRING ? "UTF8String" : "PrintableString");
        if (vl < 1 || vl > (int)TC_PKI_NAME_MAX)
            return REJECT("%s: %s must be 1-64 bytes", what, OBJ_nid2sn(nid));
        memcpy(rules[r].out, ASN1_STRING_get0_data(v), (size_t)vl);
        rules[r].out[vl] = '\0';
        if (strlen(rules[r].out) != (size_t)vl)
            return REJECT("%s: %s contains NUL", what, OBJ_nid2sn(nid));
        idx++;
    }
    if (idx != count)
        return REJECT("%s has unexpected attributes", what);
    return TC_OK;
}

static bool self_issued(const X509 *x)
{
    return X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0;
}

tc_err tc_pki_kind_of(const uint8_t *der, size_t len, enum tc_pki_kind *kind)
{
    X509 *x = NULL;
    TC_GUARD(parse(der, len, &x));
    uint32_t flags = X509_get_extension_flags(x);
    if (flags & EXFLAG_CA)
        *kind = self_issued(x) ? TC_PKI_KIND_ROOT : TC_PKI_KIND_BATCH;
    else
        *kind = TC_PKI_KIND_DEVICE;
    X509_free(x);
    return TC_OK;
}

/* ----------------------------------------------------------- root */

tc_err tc_pki_check_root(const uint8_t *der, size_t len)
{
    tc_err ret = TC_ERR_INTERNAL;
    X509 *x = NULL;
    struct exts e;
    char c[TC_PKI_NAME_MAX + 1], o[TC_PKI_NAME_MAX + 1], cn[TC_PKI_NAME_MAX + 1];
    uint8_t kid[20], aki[64];
    size_t aki_len = 0;
    TC_TRY(parse(der, len, &x));
    TC_TRY(check_common(x, true));
    TC_CHECK_MSG(self_issued(x), TC_ERR_VERIFY, "root: subject and issuer differ");
    struct rdn_rule rules[] = {{NID_countryName, V_ASN1_PRINTABLESTRING, c, true},
                               {NID_organizationName, V_ASN1_UTF8STRING, o, false},
                               {NID_commonName, V_ASN1_UTF8STRING, cn, false}};
    TC_TRY(check_name(X509_get_subject_name(x), "root subject", rules, TC_ARRAY_LEN(rules)));
    TC_TRY(collect(x, 1u << E_BC | 1u << E_KU | 1u << E_SKI | 1u << E_AKI, &e));
    TC_TRY(need(&e, E_BC, true));
    TC_TRY(exact(&e, E_BC, bc_ca, sizeof bc_ca, "CA:TRUE without pathLen"));
    TC_TRY(need(&e, E_KU, true));
    TC_TRY(exact(&e, E_KU, ku_ca, sizeof ku_ca, "keyCertSign, cRLSign"));
    TC_TRY(check_ski(&e, x, kid));
    if (e.seen[E_AKI]) {
        TC_TRY(check_aki(&e, aki, &aki_len));
        TC_CHECK_MSG(aki_len == 20 && memcmp(aki, kid, 20) == 0, TC_ERR_VERIFY,
                     "root: authorityKeyIdentifier differs from its subjectKeyIdentifier");
    }
    ret = TC_OK;
out:
    X509_free(x);
    return ret;
}

/* ----------------------------------------------------------- batch */

static tc_err check_nc(const struct exts *e, const char *o, const char *ou)
{
    struct tc_cursor c, nc, perm, sub, base;
    const uint8_t *p;
    TC_GUARD(need(e, E_NC, true));
    tc_cursor_init(&c, e->v[E_NC], e->n[E_NC]);
    if (tc_pki_der_get(&c, DER_SEQUENCE, &nc) != TC_OK || tc_cursor_expect_end(&c) != TC_OK ||
        tc_pki_der_get(&nc, DER_CTX0_C, &perm) != TC_OK || tc_cursor_remaining(&nc) != 0 ||
        tc_pki_der_get(&perm, DER_SEQUENCE, &sub) != TC_OK || tc_cursor_remaining(&perm) != 0 ||
        tc_pki_der_get(&sub, DER_CTX4_C, &base) != TC_OK || tc_cursor_remaining(&sub) != 0)
        return REJECT("nameConstraints must permit exactly one directoryName subtree");
    size_t n = tc_cursor_remaining(&base);
    TC_GUARD(tc_cursor_view(&base, n, &p));
    const uint8_t *q = p;
    X509_NAME *name = d2i_X509_NAME(NULL, &q, (long)n);
    if (name == NULL || q != p + n) {
        X509_NAME_free(name);
        return REJECT("nameConstraints directoryName does not parse");
    }
    char no[TC_PKI_NAME_MAX + 1], nou[TC_PKI_NAME_MAX + 1];
    struct rdn_rule rules[] = {{NID_organizationName, V_ASN1_UTF8STRING, no, false},
                               {NID_organizationalUnitName, V_ASN1_UTF8STRING, nou, false}};
    tc_err rc = check_name(name, "nameConstraints subtree", rules, TC_ARRAY_LEN(rules));
    X509_NAME_free(name);
    TC_GUARD(rc);
    if (strcmp(no, o) != 0 || strcmp(nou, ou) != 0)
        return REJECT("nameConstraints subtree is not O=%s, OU=%s", o, ou);
    return TC_OK;
}

tc_err tc_pki_check_batch(const uint8_t *der, size_t len, struct tc_pki_batch_info *info)
{
    tc_err ret = TC_ERR_INTERNAL;
    X509 *x = NULL;
    struct exts e;
    struct tc_pki_batch_info bi;
    char ou[TC_PKI_NAME_MAX + 1], cn[TC_PKI_NAME_MAX + 1], bid[TC_PKI_ID_MAX + 1];
    uint8_t kid[20], aki[64];
    size_t aki_len = 0;
    memset(&bi, 0, sizeof bi);
    TC_TRY(parse(der, len, &x));
    TC_TRY(check_common(x, true));
    TC_CHECK_MSG(!self_issued(x), TC_ERR_VERIFY, "batch CA: must not be self-issued");
    struct rdn_rule rules[] = {{NID_organizationName, V_ASN1_UTF8STRING, bi.manufacturer, false},
                               {NID_organizationalUnitName, V_ASN1_UTF8STRING, ou, false},
                               {NID_commonName, V_ASN1_UTF8STRING, cn, false}};
    TC_TRY(check_name(X509_get_subject_name(x), "batch CA subject", rules, TC_ARRAY_LEN(rules)));
    TC_TRY(collect(x,
                   1u << E_BC | 1u << E_KU | 1u << E_SKI | 1u << E_AKI | 1u << E_POL | 1u << E_NC |
                       1u << E_CDP | 1u << E_BATCH,
                   &e));
    TC_TRY(need(&e, E_BC, true));
    TC_TRY(exact(&e, E_BC, bc_ca_pathlen0, sizeof bc_ca_pathlen0, "CA:TRUE, pathLen 0"));
    TC_TRY(need(&e, E_KU, true));
    TC_TRY(exact(&e, E_KU, ku_ca, sizeof ku_ca, "keyCertSign, cRLSign"));
    TC_TRY(check_ski(&e, x, kid));
    TC_TRY(check_aki(&e, aki, &aki_len));
    TC_TRY(check_policy(&e));
    TC_TRY(check_nc(&e, bi.manufacturer, ou));
    if (e.seen[E_CDP]) {
        struct tc_cursor c, s;
        tc_cursor_init(&c, e.v[E_CDP], e.n[E_CDP]);
        TC_CHECK_MSG(!e.crit[E_CDP] && tc_pki_der_get(&c, DER_SEQUENCE, &s) == TC_OK &&
                         tc_cursor_expect_end(&c) == TC_OK && tc_cursor_remaining(&s) > 0,
                     TC_ERR_VERIFY, "cRLDistributionPoints must be one non-critical SEQUENCE");
    }
    TC_TRY(need(&e, E_BATCH, false));
    tc_err rc = tc_pki_parse_batch(e.v[E_BATCH], e.n[E_BATCH], bid, bi.eid_prefix);
    if (rc != TC_OK) {
        ret = rewrap("batch info extension");
        goto out;
    }
    TC_CHECK_MSG(strcmp(bid, ou) == 0, TC_ERR_VERIFY,
                 "batch info batch ID %s differs from the subject OU %s", bid, ou);
    memcpy(bi.batch_id, bid, sizeof bi.batch_id);
    if (info != NULL)
        *info = bi;
    ret = TC_OK;
out:
    X509_free(x);
    return ret;
}

/* ----------------------------------------------------------- device */

/* The device profile's rules on a parsed certificate. */
static tc_err check_device(X509 *x, struct tc_pki_device_info *info)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct exts e;
    struct tc_pki_device_info di;
    char ou[TC_PKI_NAME_MAX + 1], eid[TC_PKI_NAME_MAX + 1];
    uint8_t kid[20], aki[64], bcd[TC_PKI_EID_BCD_LEN], want[TC_PKI_EID_BCD_LEN];
    uint8_t *spki = NULL;
    size_t aki_len = 0;
    ASN1_TIME *pt = NULL;
    memset(&di, 0, sizeof di);
    TC_TRY(check_common(x, false));
    TC_CHECK_MSG(!(X509_get_extension_flags(x) & EXFLAG_CA), TC_ERR_VERIFY,
                 "device: must not be a CA");
    struct rdn_rule rules[] = {{NID_organizationName, V_ASN1_UTF8STRING, di.manufacturer, false},
                               {NID_organizationalUnitName, V_ASN1_UTF8STRING, ou, false},
                               {NID_serialNumber, V_ASN1_PRINTABLESTRING, eid, false}};
    TC_TRY(check_name(X509_get_subject_name(x), "device subject", rules, TC_ARRAY_LEN(rules)));
    /* SGP.29 §10 check digits on the subject serialNumber. */
    tc_err rc = tc_pki_eid_check(eid);
    if (rc != TC_OK) {
        ret = rewrap("device subject serialNumber");
        goto out;
    }
    memcpy(di.eid, eid, TC_PKI_EID_DIGITS + 1);
    /* The device key: P-256, named curve, uncompressed point. */
    int sl = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki);
    TC_CHECK_MSG(sl > 0 && tc_pki_p256_spki(spki, (size_t)sl, NULL, NULL) == TC_OK, TC_ERR_VERIFY,
                 "device key must be a named-curve P-256 key with an uncompressed point");
    /* IEEE 802.1AR §8.5: notAfter 99991231235959Z, GeneralizedTime. */
    const ASN1_TIME *na = X509_get0_notAfter(x);
    TC_CHECK_MSG(ASN1_STRING_type(na) == V_ASN1_GENERALIZEDTIME && ASN1_STRING_length(na) == 15 &&
                     memcmp(ASN1_STRING_get0_data(na), TC_PKI_NOT_AFTER_MAX, 15) == 0,
                 TC_ERR_VERIFY, "device notAfter must be GeneralizedTime 99991231235959Z");
    TC_TRY(collect(x,
                   1u << E_BC | 1u << E_KU | 1u << E_SKI | 1u << E_AKI | 1u << E_POL | 1u << E_SAN |
                       1u << E_MFG,
                   &e));
    TC_TRY(need(&e, E_BC, true));
    TC_TRY(exact(&e, E_BC, bc_leaf, sizeof bc_leaf, "CA:FALSE"));
    TC_TRY(need(&e, E_KU, true));
    TC_TRY(exact(&e, E_KU, ku_leaf, sizeof ku_leaf, "digitalSignature"));
    TC_TRY(check_ski(&e, x, kid));
    TC_TRY(check_aki(&e, aki, &aki_len));
    TC_TRY(check_policy(&e));
    TC_TRY(need(&e, E_SAN, false));
    rc = tc_pki_parse_hmn(e.v[E_SAN], e.n[E_SAN], bcd);
    if (rc != TC_OK) {
        ret = rewrap("subjectAltName HardwareModuleName");
        goto out;
    }
    TC_TRY(tc_pki_eid_to_bcd(eid, want));
    TC_CHECK_MSG(memcmp(bcd, want, sizeof want) == 0, TC_ERR_VERIFY,
                 "HardwareModuleName hwSerialNum differs from the subject EID");
    TC_TRY(need(&e, E_MFG, false));
    rc = tc_pki_parse_mfg(e.v[E_MFG], e.n[E_MFG], di.batch_id, di.station_id, &di.production_time);
    if (rc != TC_OK) {
        ret = rewrap("manufacturing info extension");
        goto out;
    }
    TC_CHECK_MSG(strcmp(di.batch_id, ou) == 0, TC_ERR_VERIFY,
                 "manufacturing info batch ID %s differs from the subject OU %s", di.batch_id, ou);
    pt = ASN1_TIME_set(NULL, (time_t)di.production_time);
    TC_CHECK_MSG(pt != NULL && ASN1_TIME_compare(pt, X509_get0_notBefore(x)) == 0, TC_ERR_VERIFY,
                 "device notBefore differs from the production time");
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    di.serial_len = (size_t)ASN1_STRING_length(sn);
    memcpy(di.serial, ASN1_STRING_get0_data(sn), di.serial_len);
    if (info != NULL)
        *info = di;
    ret = TC_OK;
out:
    ASN1_TIME_free(pt);
    OPENSSL_free(spki);
    return ret;
}

tc_err tc_pki_check_device(const uint8_t *der, size_t len, struct tc_pki_device_info *info)
{
    X509 *x = NULL;
    TC_GUARD(parse(der, len, &x));
    tc_err rc = check_device(x, info);
    X509_free(x);
    return rc;
}

tc_err tc_pki_check_device_x509(X509 *x, const uint8_t *der, size_t len,
                                struct tc_pki_device_info *info)
{
    TC_ENSURE(x != NULL && der != NULL && len > 0, TC_ERR_ARG);
    TC_ENSURE_MSG(len <= TC_PKI_CERT_MAX, TC_ERR_FORMAT, "certificate larger than %u bytes",
                  TC_PKI_CERT_MAX);
    /* As parse(): der is one certificate in canonical DER (X.690) and it is
     * the one x holds. */
    uint8_t *re = NULL;
    int rl = i2d_X509(x, &re);
    bool same = rl > 0 && (size_t)rl == len && memcmp(re, der, len) == 0;
    OPENSSL_free(re);
    TC_ENSURE_MSG(same, TC_ERR_FORMAT, "certificate is not in canonical DER");
    return check_device(x, info);
}
