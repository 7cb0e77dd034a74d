/*
 * pki internals shared by the module's files: a small DER reader and writer
 * for the extensions the project defines, OID encodings, and the signing
 * step (OpenSSL encodes the TBS, the signer signs, we assemble).
 */
#ifndef TC_PKI_INT_H
#define TC_PKI_INT_H

#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <trustchain/pki.h>

/* DER tags used here. */
#define DER_BOOLEAN      0x01u
#define DER_INTEGER      0x02u
#define DER_BIT_STRING   0x03u
#define DER_OCTET_STRING 0x04u
#define DER_OID          0x06u
#define DER_UTF8STRING   0x0Cu
#define DER_NUMERIC      0x12u
#define DER_PRINTABLE    0x13u
#define DER_GENTIME      0x18u
#define DER_SEQUENCE     0x30u
#define DER_CTX0_C       0xA0u
#define DER_CTX4_C       0xA4u
#define DER_CTX0_P       0x80u
#define DER_CTX6_P       0x86u

/* Content octets (no tag/length) of the OIDs the profile uses. */
extern const uint8_t tc_pki_oid_policy[10];
extern const uint8_t tc_pki_oid_ext_mfg[10];
extern const uint8_t tc_pki_oid_ext_batch[10];
extern const uint8_t tc_pki_oid_hw_type[10];
extern const uint8_t tc_pki_oid_hmn[8];

/* SHA-1 (key identifiers) or SHA-256 (PoP), fetched once; NULL if the
 * provider lacks it. */
const EVP_MD *tc_pki_md(bool sha256);

/* Append tag and DER length (content follows). */
void tc_pki_der_header(struct tc_buf *b, uint8_t tag, size_t n);
/* Append tag, DER length and content. */
void tc_pki_der_put(struct tc_buf *b, uint8_t tag, const uint8_t *v, size_t n);
/* Read one element with the given tag; its content as a sub-cursor. Definite
 * minimal lengths only; on failure the cursor does not move. */
TC_MUST_CHECK tc_err tc_pki_der_get(struct tc_cursor *c, uint8_t tag, struct tc_cursor *content);

/* Extension values (the extnValue contents) the profile defines. */
TC_MUST_CHECK tc_err tc_pki_ext_hmn(const uint8_t eid_bcd[static TC_PKI_EID_BCD_LEN],
                                    struct tc_buf *out);
TC_MUST_CHECK tc_err tc_pki_ext_mfg(const char *batch_id, const char *station_id,
                                    int64_t production_time, struct tc_buf *out);
TC_MUST_CHECK tc_err tc_pki_ext_batch(const char *batch_id, const char *eid_prefix,
                                      struct tc_buf *out);
TC_MUST_CHECK tc_err tc_pki_ext_policy(struct tc_buf *out);
TC_MUST_CHECK tc_err tc_pki_ext_cdp(const char *url, struct tc_buf *out);
TC_MUST_CHECK tc_err tc_pki_ext_nc(const char *o, const char *ou, struct tc_buf *out);
/* Parse the same values back (strict DER, consumed exactly). */
TC_MUST_CHECK tc_err tc_pki_parse_hmn(const uint8_t *v, size_t n,
                                      uint8_t eid_bcd[static TC_PKI_EID_BCD_LEN]);
TC_MUST_CHECK tc_err tc_pki_parse_mfg(const uint8_t *v, size_t n, char *batch_id, char *station_id,
                                      int64_t *production_time);
TC_MUST_CHECK tc_err tc_pki_parse_batch(const uint8_t *v, size_t n, char *batch_id,
                                        char *eid_prefix);

/* 1..64 printable ASCII (0x20..0x7E), no leading/trailing space. */
bool tc_pki_id_ok(const char *s);
/* GeneralizedTime "YYYYMMDDHHMMSSZ" <-> Unix time. */
TC_MUST_CHECK tc_err tc_pki_gentime_format(int64_t t, char out[static 16]);
TC_MUST_CHECK tc_err tc_pki_gentime_parse(const uint8_t *s, size_t n, int64_t *t);

/* A P-256 SPKI (named curve, uncompressed point) parsed to an EVP_PKEY; the
 * point is copied to `point` if not NULL. */
TC_MUST_CHECK tc_err tc_pki_p256_spki(const uint8_t *spki, size_t spki_len, EVP_PKEY **key,
                                      uint8_t point[TC_PKI_P256_POINT]);

/* out = a^-1 mod m for 1 <= a < m, m odd (256-bit big-endian values);
 * TC_ERR_ARG otherwise or when gcd(a, m) > 1. Variable time: public
 * values only. */
TC_MUST_CHECK tc_err tc_pki_inv_mod(const uint8_t a[static 32], const uint8_t m[static 32],
                                    uint8_t out[static 32]);

/* ECDSA P-256 / SHA-256 verification of a DER signature (strict DER, r and
 * s in [1, n-1]) over msg with the uncompressed point. TC_ERR_CRYPTO for a
 * point not on the curve, TC_ERR_VERIFY for a signature that is malformed
 * or does not verify. */
TC_MUST_CHECK tc_err tc_pki_p256_verify(const uint8_t point[TC_PKI_P256_POINT], const uint8_t *msg,
                                        size_t msg_len, const uint8_t *sig, size_t sig_len);

/* Add an extension from its encoded value. */
TC_MUST_CHECK tc_err tc_pki_x509_add_ext(X509 *x, int nid, const char *oid_txt, bool critical,
                                         const uint8_t *v, size_t n);
/* Fill `out` with the SHA-1 of the subjectPublicKey BIT STRING of an SPKI
 * (RFC 5280 §4.2.1.2 method 1). */
TC_MUST_CHECK tc_err tc_pki_key_id(const uint8_t *spki, size_t spki_len, uint8_t out[20]);
/* Sign a prepared X509 with the signer and replace *x by the parsed-back
 * certificate; its DER goes to der. */
TC_MUST_CHECK tc_err tc_pki_sign_cert(X509 **x, const struct tc_signer *s, struct tc_buf *der);

/* Internal issuance without the EID/prefix/PoP gates; tests use it to build
 * certificates the issuer refuses to make (bad check digits, outside the
 * batch). */
struct tc_pki_device_fields {
    const char *eid;
    const char *ou; /* batch ID in the subject */
    const char *o;
    const char *batch_id; /* in the manufacturing extension */
    const char *station_id;
    int64_t production_time;
};
TC_MUST_CHECK tc_err tc_pki_device_build(struct tc_pki_issuer *batch,
                                         const struct tc_pki_device_fields *f, const uint8_t *spki,
                                         size_t spki_len, struct tc_buf *der,
                                         uint8_t serial[TC_PKI_SERIAL_LEN]);

/* tc_pki_check_device on a certificate OpenSSL has already parsed (the
 * server's handshake: libssl's X509 of the peer): der must be x's DER, in
 * canonical form (i2d_X509(x) == der), else TC_ERR_FORMAT; then the same
 * rules, the same verdicts and messages, without parsing it again. */
TC_MUST_CHECK tc_err tc_pki_check_device_x509(X509 *x, const uint8_t *der, size_t len,
                                              struct tc_pki_device_info *info);

/* Shared by tc_pki_verify and the prepared verifier (verify.c). */
/* Record a TC_ERR_VERIFY with the message, copied to reason too. */
TC_MUST_CHECK tc_err tc_pki_reject(char *reason, size_t size, const char *fmt, ...) TC_PRINTF(3, 4);
/* Exactly one DER certificate / CRL within the size caps, or NULL. */
X509 *tc_pki_parse_cert(const uint8_t *der, size_t len);
X509_CRL *tc_pki_parse_crl(const uint8_t *der, size_t len);
/* RFC 5280 §5: v2, nextUpdate, CRL number, AKI; *why names the missing one. */
bool tc_pki_crl_profile_ok(const X509_CRL *crl, const char **why);
/* "device certificate", "batch CA certificate", "root certificate" for an
 * OpenSSL error depth. */
const char *tc_pki_depth_name(int depth, bool with_device);
/* RFC 5280 §6.1 path validation of leaf to the store's root with `crls`
 * for every certificate (§6.3), strict, policy tree built (§6.1.3 (d)), at
 * `at` (0 = now): TC_OK or a rejection naming the certificate and
 * OpenSSL's reason. ctx is initialised here; the caller frees it. */
TC_MUST_CHECK tc_err tc_pki_path_verify(X509_STORE_CTX *ctx, X509_STORE *store, X509 *leaf,
                                        STACK_OF(X509) * untrusted, STACK_OF(X509_CRL) * crls,
                                        int64_t at, bool with_device, char *reason,
                                        size_t reason_size);
/* The batch fence: device EID within the batch's EID prefix, O and batch ID
 * equal to the batch CA's. TC_OK or a rejection with its reason. */
TC_MUST_CHECK tc_err tc_pki_batch_fence(const struct tc_pki_device_info *di,
                                        const struct tc_pki_batch_info *bi, char *reason,
                                        size_t reason_size);

#endif
