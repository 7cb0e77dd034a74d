/*
 * trustchain ota agent: the device side of the OTA channel.
 *
 * A relay between the OTA server and the local secure element. Its TLS 1.3
 * client certificate is the one the identity applet stores, and the
 * CertificateVerify signature is made by the applet's SIGN command through
 * an OpenSSL 3 provider (src/ota/provider.c), so the device private key
 * never exists outside the card. The agent runs the GP Amendment B dialog
 * (docs/ota.md): first POST, then each response script POSTed to the
 * X-Admin-Next-URI, until 204; every command script is relayed unchanged
 * with tc_ota_agent_run_script. It holds no SCP03 key.
 *
 * Must never: hold or export the device private key, accept a server whose
 * certificate does not chain to the configured trust anchors, or let a
 * dialog grow without bound (script size, steps, time are capped).
 */
#ifndef TRUSTCHAIN_OTA_AGENT_H
#define TRUSTCHAIN_OTA_AGENT_H

#include <stdint.h>

#include <trustchain/core.h>
#include <trustchain/transport.h>

typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;
struct event_base;

/* ------------------------------------------------------------------ provider */

/*
 * The OpenSSL library context the agent's TLS runs in: OpenSSL's "default"
 * provider plus the card provider "tc-card" (keymgmt "EC" and signature
 * "ECDSA", P-256 only), with the default property query "?provider=default"
 * so that every fetch that does not name a card key gets OpenSSL's own
 * algorithms. Created once per process, thread-safe; never freed.
 */
TC_MUST_CHECK tc_err tc_ota_provider_libctx(OSSL_LIB_CTX **out);

/*
 * A P-256 EVP_PKEY of the card provider: the public point (65 bytes,
 * 04||X||Y) and the card link `t` to sign with. The key has no private
 * component: a signature is the identity applet's SIGN (SELECT the applet,
 * then `80 2A 9E 9A 20 digest 00`) over t, whose DER answer is returned
 * as is. t must outlive the key and be used by one thread at a time.
 */
TC_MUST_CHECK tc_err tc_ota_card_key_new(struct tc_transport *t, const uint8_t point[65],
                                         EVP_PKEY **out);

/*
 * The card transaction behind every signature: SELECT the identity applet,
 * then SIGN (ISO/IEC 7816-8 PERFORM SECURITY OPERATION: COMPUTE DIGITAL
 * SIGNATURE) over a SHA-256 digest. The answer must be one DER
 * ECDSA-Sig-Value (X9.62) and nothing else. TC_ERR_CARD with the SW when
 * the card refuses, TC_ERR_IO when the link fails.
 */
#define TC_OTA_CARD_SIG_MAX 72u
TC_MUST_CHECK tc_err tc_ota_card_sign(struct tc_transport *t, const uint8_t digest[32],
                                      uint8_t *sig, size_t sig_size, size_t *sig_len);

/* ------------------------------------------------------------------ card identity */

#define TC_OTA_CARD_CERT_MAX 2048u /* the applet's certificate cap */

/* What the agent reads from the identity applet: EID, certificate (checked
 * to carry the card's public key) and the card-held key. */
struct tc_ota_card {
    struct tc_transport *t; /* borrowed */
    char eid[33];
    X509 *cert;
    EVP_PKEY *key; /* card provider key */
    uint8_t cert_der[TC_OTA_CARD_CERT_MAX];
    size_t cert_len;
    bool locked; /* CARD_LOCKED: certificate from the device's copy, SIGN by the ISD */
};

/*
 * SELECT the identity applet, GET EID, GET PUBLIC KEY, GET CERTIFICATE; the
 * certificate's subject public key must equal the card's. TC_ERR_CARD when
 * the card refuses (absent applet, locked, no key or certificate: the
 * message names the SW), TC_ERR_IO when the link fails, TC_ERR_FORMAT for
 * a malformed answer or a certificate for another key.
 */
TC_MUST_CHECK tc_err tc_ota_card_open(struct tc_transport *t, struct tc_ota_card *card);
/*
 * As tc_ota_card_open; when the identity applet is not selectable because
 * the card is CARD_LOCKED (SELECT of the ISD answers 6283, GP CS 2.3
 * §5.1.1.4), the identity comes from `cached` (the device's copy of its
 * certificate, DER): profile-checked, and the card must prove it holds the
 * key (a SIGN over a fresh random digest, answered by the ISD, verified
 * against the certificate). card->locked is then true. cached may be NULL.
 */
TC_MUST_CHECK tc_err tc_ota_card_open_ex(struct tc_transport *t, const uint8_t *cached,
                                         size_t cached_len, struct tc_ota_card *card);
void tc_ota_card_close(struct tc_ota_card *card);

/* ------------------------------------------------------------------ the dialog */

#define TC_OTA_AGENT_STEPS_MAX   64u     /* scripts in one dialog (default cap) */
#define TC_OTA_AGENT_TIMEOUT_MS  10000u  /* connect, handshake, each read/write */
#define TC_OTA_AGENT_DEADLINE_MS 120000u /* the whole dialog */
#define TC_OTA_AGENT_HEADERS_MAX 8192u   /* response header block */

struct tc_ota_agent_config {
    const char *url;        /* https://HOST[:PORT][/] (address or name; no other path) */
    const char *trust_file; /* PEM: the pinned server certificate or its CA(s) */
    unsigned timeout_ms;    /* 0: TC_OTA_AGENT_TIMEOUT_MS */
    unsigned deadline_ms;   /* 0: TC_OTA_AGENT_DEADLINE_MS */
    unsigned max_steps;     /* 0: TC_OTA_AGENT_STEPS_MAX */
    bool resume;            /* send X-Admin-Resume: true */
    /* Told of every script relayed (may be NULL): its step (1..), the
     * R-APDUs returned and the last status word. */
    void (*on_script)(void *arg, const char *eid, unsigned step, unsigned apdus, uint16_t last_sw);
    void *arg;
};

/* Why a dialog ended (the exit codes of `trustchain ota agent`). */
enum tc_ota_agent_outcome {
    TC_OTA_AGENT_DONE = 0,         /* 204 received */
    TC_OTA_AGENT_UNREACHABLE,      /* TCP connect failed or timed out */
    TC_OTA_AGENT_SERVER_UNTRUSTED, /* the server certificate did not verify */
    TC_OTA_AGENT_REFUSED,          /* the server refused our certificate (TLS alert) */
    TC_OTA_AGENT_TLS,              /* another TLS failure */
    TC_OTA_AGENT_HTTP,             /* the server answered an error status */
    TC_OTA_AGENT_PROTOCOL,         /* malformed reply: media type, Next URI, script */
    TC_OTA_AGENT_CARD,             /* the card link failed while relaying */
    TC_OTA_AGENT_BOUNDS,           /* too many steps, too large, deadline */
    TC_OTA_AGENT_TIMEOUT,          /* no answer within timeout_ms */
    TC_OTA_AGENT_INTERNAL
};
const char *tc_ota_agent_outcome_name(enum tc_ota_agent_outcome o);

struct tc_ota_agent_result {
    enum tc_ota_agent_outcome outcome;
    int http_status;  /* last HTTP status seen (0: none) */
    unsigned scripts; /* command scripts relayed */
    unsigned apdus;   /* R-APDUs returned to the server */
    uint16_t last_sw; /* SW of the last R-APDU relayed (0: none) */
    char detail[256]; /* one line: what happened */
};

/* The shared part: URL, TLS client context (trust anchors loaded once),
 * bounds. One per process is enough for any number of devices. */
struct tc_ota_agent;

TC_MUST_CHECK tc_err tc_ota_agent_new(const struct tc_ota_agent_config *cfg,
                                      struct tc_ota_agent **out);
void tc_ota_agent_free(struct tc_ota_agent *a);

/*
 * One dialog for one card, blocking (its own event loop). TC_OK when the
 * dialog ran to 204; otherwise TC_ERR_* with res->outcome and res->detail
 * saying why. res is always filled.
 */
TC_MUST_CHECK tc_err tc_ota_agent_run(struct tc_ota_agent *a, struct tc_ota_card *card,
                                      struct tc_ota_agent_result *res);

/*
 * The same dialog driven by the caller's libevent loop, so that many
 * devices share one process and thread: `done` is called once, on the
 * loop's thread, when the dialog ends; free the session after it (or at any
 * time to abort; done is then not called). The card's transport is used
 * synchronously from the loop (the in-process emulator suits load tests).
 */
struct tc_ota_agent_session;
typedef void (*tc_ota_agent_done_fn)(void *arg, const struct tc_ota_agent_result *res);

TC_MUST_CHECK tc_err tc_ota_agent_start(struct tc_ota_agent *a, struct event_base *base,
                                        struct tc_ota_card *card, tc_ota_agent_done_fn done,
                                        void *arg, struct tc_ota_agent_session **out);
void tc_ota_agent_session_free(struct tc_ota_agent_session *s);

#endif
