/*
 * Shared fixture of the OTA tests (tests/ota): a SoftHSM2 workspace in its
 * own mkdtemp directory (own SOFTHSM2_CONF and token), the software
 * reference of the docs/hsm.md key derivation, a software root + batch CA
 * that records every device certificate it issues and every serial it
 * revokes (and the renew-cert issue/revoke services over it), the line's
 * identity on an emulated card (GENERATE KEY, certificate, STORE
 * CERTIFICATE, SECURED) with the registry events the line logs, and the
 * Amendment B relay dialog (the test is the server loop and the agent).
 */
#ifndef TC_TESTS_OTA_FIXTURE_H
#define TC_TESTS_OTA_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <pthread.h>

#include <trustchain/hsm.h>
#include <trustchain/ota.h>
#include <trustchain/ota_ops.h>
#include <trustchain/ota_renew.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>
#include <trustchain/scp03.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>

#define OTA_FX_DAY 86400

/* ------------------------------------------------------------------ SoftHSM2 */

/* The process's SoftHSM2 workspace, made at the first call: a directory
 * /tmp/<prefix>-XXXXXX with a workspace "ws" (own softhsm2.conf and token
 * directory), token `token` initialised with fixed test PINs, opened with a
 * session pool of 2. NULL (and a failed expectation) when it cannot be. */
struct tc_hsm *ota_fx_hsm(const char *prefix, const char *token);
const char *ota_fx_dir(void);   /* the mkdtemp directory ("" before ota_fx_hsm) */
const char *ota_fx_wsdir(void); /* its workspace, for tc_ota_ops_config.workspace */
/* Import a master key under `name` unless one of that name exists. */
void ota_fx_master(const char *name, const uint8_t master[16]);
/* Close the HSM and remove the directory. */
void ota_fx_hsm_cleanup(void);

/* docs/hsm.md, in software: key t = AES-ECB(master, D(t, 1)) for the EID's
 * BCD form; Amendment D §7.2 KCV = AES(key, 16 x '01')[0..2]. */
bool ota_fx_ref_keys(const uint8_t master[16], const char *eid, uint8_t k[3][16]);
bool ota_fx_ref_kcvs(const uint8_t master[16], const char *eid, uint8_t kcv[3][3]);

/* ------------------------------------------------------------------ PKI */

#define OTA_FX_CERTS_MAX 64u

struct ota_fx_pki {
    struct tc_signer root_key, batch_key;
    struct tc_buf root, batch;
    struct tc_pki_issuer *root_iss, *batch_iss;
    char batch_id[32];
    int64_t t0; /* 30 days ago, whole days */
    /* Every device certificate issued, and the serials revoked. */
    uint8_t issued[OTA_FX_CERTS_MAX][TC_SE_MAX_CERT];
    size_t issued_len[OTA_FX_CERTS_MAX];
    size_t nissued;
    uint8_t revoked[OTA_FX_CERTS_MAX][TC_PKI_SERIAL_LEN];
    size_t nrevoked;
    unsigned revoke_calls;
    bool fail_issue; /* the issue service fails once */
};

/* Root and batch CA (software P-256 keys) for `batch` over EID `prefix`. */
bool ota_fx_pki_setup(struct ota_fx_pki *p, const char *batch, const char *prefix);
void ota_fx_pki_free(struct ota_fx_pki *p);
/* Forget the certificates issued and revoked (the CAs stay). */
void ota_fx_pki_reset(struct ota_fx_pki *p);
/* tc_pki_device_issue by the batch CA, recorded. */
tc_err ota_fx_pki_issue(struct ota_fx_pki *p, const struct tc_pki_device_req *r,
                        struct tc_buf *der);
bool ota_fx_pki_is_revoked(const struct ota_fx_pki *p, const uint8_t *serial, size_t len);
/* How many issued certificates pass RFC 5280 validation (tc_pki_verify)
 * with a batch CRL of the revoked serials, and whether `der` is one. */
size_t ota_fx_pki_valid(struct ota_fx_pki *p, const uint8_t *der, size_t der_len, bool *der_valid);
/* The renew-cert services over `p` (arg = the struct ota_fx_pki); revoke
 * is idempotent and counts its calls. */
tc_err ota_fx_svc_issue(void *arg, const struct tc_ota_cert_request *rq, struct tc_buf *der);
tc_err ota_fx_svc_revoke(void *arg, const char *batch, const uint8_t *serial, size_t len,
                         uint16_t reason);
/* A device certificate by `iss` for the EID whose first 30 digits are
 * `prefix` and `number` zero-padded (check digits added), with a PoP by a
 * fresh software key; its serial to `serial` (optional). der is
 * initialised here (the caller frees it). */
bool ota_fx_device_cert(struct tc_pki_issuer *iss, int64_t production_time, const char *prefix,
                        unsigned number, struct tc_buf *der, uint8_t serial[TC_PKI_SERIAL_LEN]);
/* A CRL entry (no reason code) for the certificate `der`: its
 * serialNumber (RFC 5280 §4.1.2.2, read from the TBS), revoked at `at`. */
bool ota_fx_crl_entry(const uint8_t *der, size_t len, int64_t at, struct tc_pki_revoked *e);

/* ------------------------------------------------------------------ card */

/* RFC 5480 §2: the SubjectPublicKeyInfo of an uncompressed P-256 point. */
void ota_fx_spki_of(const uint8_t pub[TC_SE_EC_PUB_LEN], uint8_t out[91]);
void ota_fx_sha256(const uint8_t *p, size_t n, uint8_t out[32]);

/* A plain command to the card; the response data in ota_fx_resp /
 * ota_fx_resp_len, the status word returned (0 on a transport error). */
extern uint8_t ota_fx_resp[TC_SE_MAX_RESPONSE];
extern size_t ota_fx_resp_len;
uint16_t ota_fx_plain(struct tc_transport *t, const uint8_t *cmd, size_t n);
uint16_t ota_fx_select(struct tc_transport *t, const uint8_t *aid, size_t aid_len);
/* A command under an open SCP03 session (CLA 80, Le 256), as above. */
uint16_t ota_fx_sm(struct tc_scp03_host *h, uint8_t ins, uint8_t p1, uint8_t p2,
                   const uint8_t *data, size_t lc);

/* The line's identity on a powered card. */
struct ota_fx_identity {
    uint8_t cert[TC_SE_MAX_CERT];
    size_t cert_len;
    uint8_t pub[TC_SE_EC_PUB_LEN];
    uint8_t serial[TC_PKI_SERIAL_LEN];
    uint8_t cert_sha[32], pub_sha[32];
};

/* With keyset `kvn` of `kp` (level 33, the ISD's challenge): SELECT the
 * identity applet, GENERATE KEY, a certificate by the batch CA (station
 * "line-1"), STORE CERTIFICATE, then INITIALIZED and SECURED; the card is
 * reset afterwards. */
bool ota_fx_card_identity(struct tc_transport *t, const struct tc_scp03_key_provider *kp,
                          uint8_t kvn, struct ota_fx_pki *p, const char *eid,
                          struct ota_fx_identity *id);

/* The line's log of that card: [injection-confirmed (kvn, kcv) when kcv is
 * not NULL], keypair-generated, cert-issued, cert-stored, lifecycle
 * SECURED; the certificate in the registry's side table. */
void ota_fx_log_line(struct tc_registry *reg, const char *eid, const char *batch,
                     const struct ota_fx_identity *id, uint8_t kvn, const uint8_t (*kcv)[3]);

/* ------------------------------------------------------------------ log */

/* How many events of each type the device's history holds. */
struct ota_fx_counts {
    unsigned by_type[0x30];
};
struct ota_fx_counts ota_fx_count(struct tc_registry *reg, const uint8_t *eid, size_t eid_len);

/* ------------------------------------------------------------------ dialog */

enum ota_fx_end { OTA_FX_DONE = 1, OTA_FX_DROPPED, OTA_FX_ABORTED };

/* One engine step: tc_ota_app.next, or whatever the test drives instead. */
typedef tc_err (*ota_fx_step_fn)(void *arg, const struct tc_ota_admin_in *in,
                                 struct tc_buf *script);

struct ota_fx_dialog {
    const struct tc_ota_app *app;
    struct tc_transport *t; /* the card, through tc_ota_agent_run_script */
    const char *eid;
    unsigned drop_after; /* > 0: the connection drops after this many scripts */
    unsigned tamper;     /* > 0: a byte of the response to that script flips */
    ota_fx_step_fn step; /* NULL: app->next */
    void *step_arg;
};

/* One Amendment B dialog: the server's scripts run on the card until the
 * engine has nothing more (DONE), the connection drops (DROPPED) or the
 * engine fails a step (ABORTED); `scripts` gets the number run. */
enum ota_fx_end ota_fx_dialog(const struct ota_fx_dialog *d, unsigned *scripts);

/* ------------------------------------------------------------------ server */

/* A tc_ota_server on 127.0.0.1 (any free port), its event loop on its own
 * thread. */
struct ota_fx_server {
    struct event_base *base;
    struct event *stop;
    struct tc_ota_server *s;
    pthread_t th;
    uint16_t port;
};

/* libevent's pthread locking on (so that the stop wakes the loop from
 * another thread), tc_ota_server_new(cfg) on a new event base, then the
 * loop thread. False (and a failed expectation) when it cannot be;
 * ota_fx_server_stop then frees what was made. */
bool ota_fx_server_start(struct ota_fx_server *v, const struct tc_ota_server_config *cfg);
/* Stops the loop (an active event: never lost, even before the loop has
 * started), joins the thread, frees the server and the base. The trust and
 * the application of the config stay the caller's. */
void ota_fx_server_stop(struct ota_fx_server *v);

#endif
