/*
 * trustchain pki: the fleet PKI. An offline root CA issues one intermediate
 * CA per production batch; a batch CA issues the device certificates of its
 * batch (IEEE 802.1AR IDevID style, subject serialNumber = EID). OpenSSL
 * builds and encodes the CA certificates and CRLs, the module's DER writer
 * the device certificates; the signature comes only from a struct tc_signer, so CA private keys
 * stay where the signer keeps them (an HSM). Also: EID helpers (GSMA SGP.29 check digits), proof of
 * possession, CRLs and a verifier (chain + CRLs + the profile of
 * docs/cert-profile.md) that gives one reason on failure.
 *
 * Must never: sign a device certificate for a key whose proof of possession
 * did not verify, for an EID with bad check digits or outside the batch's
 * EID prefix, or touch private key material (there is none here).
 */
#ifndef TRUSTCHAIN_PKI_H
#define TRUSTCHAIN_PKI_H

#include <trustchain/core.h>
#include <trustchain/crypto.h>

#define TC_PKI_EID_DIGITS    32u
#define TC_PKI_EID_BCD_LEN   16u
#define TC_PKI_NONCE_LEN     16u
#define TC_PKI_P256_POINT    65u /* 04 || X || Y */
#define TC_PKI_POP_MSG_LEN   (TC_PKI_EID_BCD_LEN + TC_PKI_P256_POINT + TC_PKI_NONCE_LEN)
#define TC_PKI_SERIAL_LEN    16u /* issued serials: 16 octets, positive */
#define TC_PKI_SERIAL_MAX    20u /* RFC 5280 §4.1.2.2 */
#define TC_PKI_ID_MAX        64u /* batch ID, station ID: 1..64 printable chars */
#define TC_PKI_NAME_MAX      64u /* organization, common name (X.520 ub-name) */
#define TC_PKI_URL_MAX       256u
#define TC_PKI_CERT_MAX      4096u
#define TC_PKI_CRL_MAX       (1024u * 1024u * 16u)
#define TC_PKI_NOT_AFTER_MAX "99991231235959Z" /* RFC 5280 §4.1.2.5: no expiry */

/* The arc of the project's own OIDs (sub-arcs in docs/cert-profile.md).
 * It is the IANA enterprise number RFC 5612 reserves for documentation,
 * 32473, standing in until the project has its own; a deployment that
 * registers a PEN changes this arc and ARC_BYTES in src/pki/der.c. A UUID
 * arc (2.25.<uuid>, X.667) needs no registration but GnuTLS (libtasn1)
 * cannot decode arcs above 64 bits, so such certificates fail certtool. */
#define TC_PKI_OID_ARC            "1.3.6.1.4.1.32473"
#define TC_PKI_OID_POLICY         TC_PKI_OID_ARC ".1.1" /* device identity policy */
#define TC_PKI_OID_EXT_MFG        TC_PKI_OID_ARC ".2.1" /* device: manufacturing info */
#define TC_PKI_OID_EXT_BATCH      TC_PKI_OID_ARC ".2.2" /* batch CA: batch ID, EID prefix */
#define TC_PKI_OID_HW_TYPE        TC_PKI_OID_ARC ".3.1" /* HardwareModuleName hwType */
#define TC_PKI_OID_HW_MODULE_NAME "1.3.6.1.5.5.7.8.4"   /* RFC 4108 §5 */

/* ------------------------------------------------------------------ EID */

/* GSMA SGP.29 §10: exactly 32 decimal digits whose value mod 97 is 1.
 * TC_ERR_FORMAT for anything but 32 digits, TC_ERR_VERIFY for bad check
 * digits. */
TC_MUST_CHECK tc_err tc_pki_eid_check(const char *eid);
/* Compute the two check digits for the first 30 digits of `eid` (30 or 32
 * digits given; the last two are replaced). out: 33 bytes, NUL-terminated. */
TC_MUST_CHECK tc_err tc_pki_eid_complete(const char *eid, char out[static 33]);
/* EID as 16 packed BCD bytes, first digit in the high nibble (SGP.22 EID
 * ::= OCTET STRING (SIZE(16))). The EID is checked first. */
TC_MUST_CHECK tc_err tc_pki_eid_to_bcd(const char *eid, uint8_t out[static TC_PKI_EID_BCD_LEN]);
TC_MUST_CHECK tc_err tc_pki_eid_from_bcd(const uint8_t bcd[static TC_PKI_EID_BCD_LEN],
                                         char out[static 33]);
/* A batch's EID prefix: 1..30 digits. */
TC_MUST_CHECK tc_err tc_pki_eid_prefix_check(const char *prefix);

/* ------------------------------------------------------- proof of possession */

/*
 * The device proves possession of its identity key by signing, with
 * ECDSA-SHA256 (DER signature), the 97 bytes
 *   EID (16 BCD bytes) || public key (65-byte uncompressed P-256 point)
 *   || host nonce (16 bytes)
 * (docs/pki.md). spki is the device's SubjectPublicKeyInfo (DER); only a
 * named-curve P-256 key is accepted.
 */
TC_MUST_CHECK tc_err tc_pki_pop_message(const char *eid, const uint8_t *spki, size_t spki_len,
                                        const uint8_t nonce[static TC_PKI_NONCE_LEN],
                                        uint8_t out[static TC_PKI_POP_MSG_LEN]);
/* TC_ERR_VERIFY when the signature does not verify. */
TC_MUST_CHECK tc_err tc_pki_pop_verify(const char *eid, const uint8_t *spki, size_t spki_len,
                                       const uint8_t nonce[static TC_PKI_NONCE_LEN],
                                       const uint8_t *sig, size_t sig_len);

/* ------------------------------------------------------------------ issuers */

/*
 * A CA ready to issue: its certificate plus the signer holding its key. The
 * signer's public key must match the certificate. The issuer keeps a
 * reference to the signer (the caller keeps it alive) and copies the
 * certificate. Safe to use from one thread at a time; use one issuer per
 * thread for parallel issuance.
 */
struct tc_pki_issuer;

TC_MUST_CHECK tc_err tc_pki_issuer_new(const struct tc_signer *signer, const uint8_t *ca_der,
                                       size_t ca_len, struct tc_pki_issuer **out);
void tc_pki_issuer_free(struct tc_pki_issuer *iss);

/* Times are seconds since the Unix epoch (UTC). */
struct tc_pki_root_params {
    const char *common_name;  /* required */
    const char *organization; /* required */
    const char *country;      /* optional, two letters */
    int64_t not_before;
    int64_t not_after; /* > not_before */
};

/* Self-signed root certificate for the signer's key (P-256 or P-384). */
TC_MUST_CHECK tc_err tc_pki_root_create(const struct tc_signer *signer,
                                        const struct tc_pki_root_params *p, struct tc_buf *der);

struct tc_pki_batch_params {
    const char *batch_id;     /* 1..64 printable; the OU of every device */
    const char *eid_prefix;   /* 1..30 digits every device EID starts with */
    const char *manufacturer; /* the O of the batch CA and every device */
    const char *common_name;  /* optional; default "<manufacturer> Batch CA <batch_id>" */
    const char *crl_url;      /* optional; where the root's CRL is published */
    int64_t not_before;
    int64_t not_after;
};

/* Batch intermediate CA for `spki` (the batch key, e.g. an HSM key), signed
 * by the root issuer. */
TC_MUST_CHECK tc_err tc_pki_batch_ca_create(struct tc_pki_issuer *root, const uint8_t *spki,
                                            size_t spki_len, const struct tc_pki_batch_params *p,
                                            struct tc_buf *der);

struct tc_pki_device_req {
    const char *eid; /* 32 digits */
    const uint8_t *spki;
    size_t spki_len;
    const uint8_t *nonce; /* TC_PKI_NONCE_LEN bytes the PoP covers */
    const uint8_t *pop;   /* DER ECDSA-SHA256 signature */
    size_t pop_len;
    const char *station_id; /* 1..64 printable */
    int64_t production_time;
};

/* Device certificate under a batch issuer: the EID is checked (SGP.29) and
 * must carry the batch's EID prefix, and the PoP must verify, before
 * anything is signed. serial (optional, TC_PKI_SERIAL_LEN bytes) receives
 * the serial number. */
TC_MUST_CHECK tc_err tc_pki_device_issue(struct tc_pki_issuer *batch,
                                         const struct tc_pki_device_req *r, struct tc_buf *der,
                                         uint8_t serial[TC_PKI_SERIAL_LEN]);

/* ------------------------------------------------------------------ CRLs */

struct tc_pki_revoked {
    uint8_t serial[TC_PKI_SERIAL_MAX];
    size_t serial_len;
    int64_t revoked_at;
    int reason; /* RFC 5280 §5.3.1 CRLReason, or -1 for none */
};

/* RFC 5280 §5: a v2 CRL with CRL number, AKI and nextUpdate, signed by the
 * issuer (the root's lists batch CAs, a batch CA's lists devices). */
TC_MUST_CHECK tc_err tc_pki_crl_create(struct tc_pki_issuer *iss, uint64_t crl_number,
                                       int64_t this_update, int64_t next_update,
                                       const struct tc_pki_revoked *list, size_t n,
                                       struct tc_buf *der);

/* ------------------------------------------------------------------ profile */

struct tc_pki_batch_info {
    char batch_id[TC_PKI_ID_MAX + 1];
    char eid_prefix[TC_PKI_EID_DIGITS + 1];
    char manufacturer[TC_PKI_NAME_MAX + 1];
};

struct tc_pki_device_info {
    char eid[TC_PKI_EID_DIGITS + 1];
    char manufacturer[TC_PKI_NAME_MAX + 1];
    char batch_id[TC_PKI_ID_MAX + 1];
    char station_id[TC_PKI_ID_MAX + 1];
    int64_t production_time;
    uint8_t serial[TC_PKI_SERIAL_MAX];
    size_t serial_len;
};

enum tc_pki_kind { TC_PKI_KIND_ROOT = 1, TC_PKI_KIND_BATCH, TC_PKI_KIND_DEVICE };

/* Profile checks on one certificate (DER, consumed exactly), no signature
 * or chain: TC_ERR_FORMAT when it does not parse, TC_ERR_VERIFY naming the
 * first rule broken (tc_error_last()->msg). */
TC_MUST_CHECK tc_err tc_pki_check_root(const uint8_t *der, size_t len);
TC_MUST_CHECK tc_err tc_pki_check_batch(const uint8_t *der, size_t len,
                                        struct tc_pki_batch_info *info);
TC_MUST_CHECK tc_err tc_pki_check_device(const uint8_t *der, size_t len,
                                         struct tc_pki_device_info *info);
/* Which profile a certificate claims (CA and self-issued or not). */
TC_MUST_CHECK tc_err tc_pki_kind_of(const uint8_t *der, size_t len, enum tc_pki_kind *kind);

/* ------------------------------------------------------------------ verify */

struct tc_pki_chain {
    const uint8_t *root; /* trusted root certificate (DER) */
    size_t root_len;
    const uint8_t *batch; /* batch CA certificate */
    size_t batch_len;
    const uint8_t *device; /* device certificate; NULL to verify the batch CA */
    size_t device_len;
    const uint8_t *root_crl; /* the root's CRL (required) */
    size_t root_crl_len;
    const uint8_t *batch_crl; /* the batch's CRL (required with a device) */
    size_t batch_crl_len;
    int64_t at; /* verification time; 0 = now */
};

/*
 * RFC 5280 path validation (OpenSSL: strict, policy checking, CRLs for every
 * certificate), then every profile rule of root, batch and device and the
 * batch fence (device EID within the batch's EID prefix, O/OU and batch ID
 * matching, policy covered). TC_OK or TC_ERR_VERIFY with one reason in
 * `reason` (NUL-terminated) and tc_error_last(); other codes for bad input.
 */
TC_MUST_CHECK tc_err tc_pki_verify(const struct tc_pki_chain *c, char *reason, size_t reason_size);

/* ------------------------------------------------------ prepared verifier */

/*
 * tc_pki_verify prepared once for a trust that verifies many device
 * certificates (the OTA server, one per handshake). Built from the root and
 * its CRL, then each batch CA and its CRL: every one parsed, profile-checked
 * and signature-checked when added (CRLs by their issuer), so a bad root,
 * batch CA or CRL is refused here, not at each verification. Per
 * verification the device certificate is profile-checked, its batch CA
 * found by issuer name and key identifier, and the path validated by
 * OpenSSL with tc_pki_verify's flags (strict, policy checking, both CRLs:
 * their signatures verified when added, their validity window against the
 * time given at every call), then the batch fence.
 * Threads: add every batch before the verifier is shared; from then on it
 * is only read, and one verifier may be used by many threads at once (the
 * verify calls; free it when none is running). The caches OpenSSL fills on
 * first use of the shared root, batch CA and CRL objects are filled when a
 * batch is added, so concurrent verifications do not race on them.
 */
struct tc_pki_verifier;

/* Which check refused a device certificate. */
enum tc_pki_refusal {
    TC_PKI_REFUSED_NONE = 0,
    TC_PKI_REFUSED_PROFILE, /* not a device certificate of docs/cert-profile.md */
    TC_PKI_REFUSED_BATCH,   /* no trusted batch CA issued it */
    TC_PKI_REFUSED_CHAIN,   /* RFC 5280 path validation (incl. revocation, time) */
    TC_PKI_REFUSED_FENCE    /* EID prefix, manufacturer or batch ID of its batch */
};

TC_MUST_CHECK tc_err tc_pki_verifier_new(const uint8_t *root, size_t root_len,
                                         const uint8_t *root_crl, size_t root_crl_len,
                                         struct tc_pki_verifier **out);
/* TC_ERR_STATE if the batch ID is already present; TC_ERR_VERIFY for a
 * batch CA the root did not issue, a CRL that its CA did not sign or a
 * partial or delta CRL (tc_pki_verifier_new likewise for the root CRL). info
 * (optional) receives the batch's profile fields. */
TC_MUST_CHECK tc_err tc_pki_verifier_add_batch(struct tc_pki_verifier *v, const uint8_t *ca,
                                               size_t ca_len, const uint8_t *crl, size_t crl_len,
                                               struct tc_pki_batch_info *info);
size_t tc_pki_verifier_batches(const struct tc_pki_verifier *v);
void tc_pki_verifier_free(struct tc_pki_verifier *v);
/* TC_OK with the device's info (optional), or TC_ERR_VERIFY with one reason
 * (the same text tc_pki_verify gives for the same chain when only one check
 * fails; a certificate failing the device profile is refused for that
 * before its path is tried) and *refusal (optional) naming the check. at:
 * verification time, 0 = now. */
TC_MUST_CHECK tc_err tc_pki_verifier_verify(const struct tc_pki_verifier *v, const uint8_t *device,
                                            size_t device_len, int64_t at,
                                            struct tc_pki_device_info *info,
                                            enum tc_pki_refusal *refusal, char *reason,
                                            size_t reason_size);
/* The same for a certificate OpenSSL has already parsed (an X509, e.g.
 * libssl's peer certificate): the profile is checked on its DER encoding
 * (i2d_X509), the path on the object itself, so it is not parsed again. */
struct x509_st;
TC_MUST_CHECK tc_err tc_pki_verifier_verify_x509(const struct tc_pki_verifier *v,
                                                 struct x509_st *device, int64_t at,
                                                 struct tc_pki_device_info *info,
                                                 enum tc_pki_refusal *refusal, char *reason,
                                                 size_t reason_size);

/*
 * The times a TC_OK verdict holds for, as Unix seconds: from <= t < until.
 * It is every period the verification checked `at` against intersected:
 * the device's, the batch CA's and the root's notBefore..notAfter (RFC 5280
 * §6.1.3 (a)(2)) and both CRLs' thisUpdate..nextUpdate (§6.3.3 (a)), with
 * OpenSSL's comparison (a time equal to notAfter or nextUpdate is past it).
 * Nothing else a verification checks depends on the time, so the same
 * certificate on the same verifier gets TC_OK at any t in the window and is
 * refused outside it. Empty (from > until) on any refusal.
 */
struct tc_pki_window {
    int64_t from;
    int64_t until;
};
/* tc_pki_verifier_verify / _verify_x509 that also give the window of a
 * TC_OK verdict (window optional). */
TC_MUST_CHECK tc_err tc_pki_verifier_verify_window(const struct tc_pki_verifier *v,
                                                   const uint8_t *device, size_t device_len,
                                                   int64_t at, struct tc_pki_device_info *info,
                                                   struct tc_pki_window *window,
                                                   enum tc_pki_refusal *refusal, char *reason,
                                                   size_t reason_size);
TC_MUST_CHECK tc_err tc_pki_verifier_verify_x509_window(const struct tc_pki_verifier *v,
                                                        struct x509_st *device, int64_t at,
                                                        struct tc_pki_device_info *info,
                                                        struct tc_pki_window *window,
                                                        enum tc_pki_refusal *refusal, char *reason,
                                                        size_t reason_size);

/* ------------------------------------------------------------------ helpers */

/* PEM <-> DER for "CERTIFICATE" and "X509 CRL"; der_from_pem accepts DER
 * unchanged too. */
TC_MUST_CHECK tc_err tc_pki_pem_encode(const char *label, const uint8_t *der, size_t len,
                                       struct tc_buf *pem);
TC_MUST_CHECK tc_err tc_pki_der_from_pem(const uint8_t *in, size_t len, struct tc_buf *der);

#endif
