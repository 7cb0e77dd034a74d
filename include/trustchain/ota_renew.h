/*
 * trustchain OTA certificate renewal (operation "renew-cert", code
 * TC_OTA_OP_RENEW_CERT; docs/ota.md "Renew the device certificate"): a new
 * key pair on the card beside the working one (identity applet GENERATE KEY
 * P1 02 with the server's nonce and a proof of possession), a certificate
 * for it issued by the device's batch CA, stored (which promotes the new
 * key on the card) and read back, and only then the old certificate
 * revoked.
 *
 * The operation needs two services of the server that only the server's
 * workspace can give (the batch CA key in the HSM, the batch CRL): they are
 * attached to an engine with tc_ota_renew_attach.
 *
 * Must never: revoke the old certificate before the card has proved it
 * holds the new one, revoke the new one once the card has proved (GET
 * PUBLIC KEY) that the new key is its active key, or leave an issued
 * certificate unrevoked when the operation ends with the old key still
 * active on the card.
 */
#ifndef TRUSTCHAIN_OTA_RENEW_H
#define TRUSTCHAIN_OTA_RENEW_H

#include <trustchain/ota_ops.h>
#include <trustchain/pki.h>

/* What the server is asked to certify: the device's new key and its proof
 * of possession (docs/pki.md: ECDSA-SHA256 over EID ‖ point ‖ nonce). */
struct tc_ota_cert_request {
    const char *eid;   /* 32 digits */
    const char *batch; /* the device's batch (registry) */
    const uint8_t *spki;
    size_t spki_len;
    const uint8_t *nonce; /* TC_PKI_NONCE_LEN bytes */
    const uint8_t *pop;   /* DER signature */
    size_t pop_len;
};

struct tc_ota_cert_services {
    void *arg;
    /* The registry the engine appends to (certificates go to its side
     * table before they are logged as issued). */
    struct tc_registry *reg;
    /* Issue a device certificate by the batch CA with the line's profile
     * (tc_pki_device_issue: EID, batch fence and PoP checked before
     * signing). DER into der. */
    tc_err (*issue)(void *arg, const struct tc_ota_cert_request *rq, struct tc_buf *der);
    /* Revoke one certificate of the batch (RFC 5280 CRLReason `reason`) and
     * publish the batch CRL; TC_OK when it was revoked already. */
    tc_err (*revoke)(void *arg, const char *batch, const uint8_t *serial, size_t serial_len,
                     uint16_t reason);
};

/* RFC 5280 §5.3.1 CRLReason values used here. */
#define TC_OTA_CRL_SUPERSEDED 4u /* the old certificate, once the new one is proved */
#define TC_OTA_CRL_CESSATION  5u /* an issued certificate that never reached the card */

/* Attach the services to an engine (kept by the caller until detached);
 * renew-cert fails with TC_OTA_FAIL_UNSUPPORTED, before it touches the
 * card, on an engine without them. TC_ERR_NOMEM past 16 engines. */
TC_MUST_CHECK tc_err tc_ota_renew_attach(const struct tc_ota_ops *engine,
                                         const struct tc_ota_cert_services *svc);
void tc_ota_renew_detach(const struct tc_ota_ops *engine);

extern const struct tc_ota_op_kind tc_ota_op_renew_cert;

#endif
