/*
 * trustchain ota: the over-the-air channel to deployed devices. The server
 * speaks HTTP/1.1 over TLS 1.3 only (libevent evhttp on OpenSSL
 * bufferevents) with mutual authentication: during the handshake, before
 * any HTTP byte is read, the device certificate is verified to the fleet
 * root with the root CRL (revoked batches) and the batch CRL (revoked
 * devices) by the pki module's verifier. Every connection is bounded in
 * memory and time (header and body caps, read/write timeouts, a connection
 * cap).
 *
 * Must never: read a request from a peer whose certificate chain and CRLs
 * did not verify, accept anything below TLS 1.3, or hold unbounded state for
 * a connection.
 */
#ifndef TRUSTCHAIN_OTA_H
#define TRUSTCHAIN_OTA_H

#include <stdint.h>

#include <trustchain/codec.h>
#include <trustchain/core.h>
#include <trustchain/hsm.h>
#include <trustchain/pki.h>
#include <trustchain/scp03.h>

#define TC_OTA_BATCHES_MAX     256u
#define TC_OTA_HEADERS_MAX     8192u         /* default cap on the request header block */
#define TC_OTA_BODY_MAX        (64u * 1024u) /* default cap on a request body */
#define TC_OTA_TIMEOUT_MS      10000u
#define TC_OTA_CONNECTIONS_MAX 20000u
#define TC_OTA_REASON_MAX      160u

/* ------------------------------------------------------------------ scripts */

/*
 * The bodies GP Amendment B carries (its §3.5 refers to the expanded remote
 * command format of ETSI TS 102 226 §5.2.2), in the indefinite-length form:
 *   command script   AE 80 { 22 L C-APDU }...              00 00
 *   response script  AF 80 [ 80 01 n ] { 23 L R-APDU }...  00 00
 * Inner lengths are BER definite. Every C-APDU must decode as an ISO/IEC
 * 7816-4 command; every R-APDU carries at least SW1 SW2. The subset: no
 * Immediate Action, Error Action or Script Chaining TLVs, no definite-length
 * AA/AB templates (docs/ota.md).
 */
#define TC_OTA_SCRIPT_MAX       32u /* APDUs in one script */
#define TC_OTA_SCRIPT_BYTES_MAX (TC_OTA_SCRIPT_MAX * (5u + 261u) + 8u)

struct tc_ota_bytes {
    const uint8_t *p; /* points into the decoded input */
    size_t len;
};

TC_MUST_CHECK tc_err tc_ota_script_encode(const struct tc_ota_bytes *capdus, size_t n,
                                          struct tc_buf *out);
TC_MUST_CHECK tc_err tc_ota_script_decode(const uint8_t *in, size_t len,
                                          struct tc_ota_bytes capdus[TC_OTA_SCRIPT_MAX], size_t *n);
/* executed: the Number of executed C-APDUs TLV (always written first). */
TC_MUST_CHECK tc_err tc_ota_response_encode(const struct tc_ota_bytes *rapdus, size_t n,
                                            struct tc_buf *out);
/* *executed is the '80' TLV's value, or n when the TLV is absent. */
TC_MUST_CHECK tc_err tc_ota_response_decode(const uint8_t *in, size_t len,
                                            struct tc_ota_bytes rapdus[TC_OTA_SCRIPT_MAX],
                                            size_t *n, size_t *executed);

/* ------------------------------------------------------------------ agent relay */

struct tc_transport;

/*
 * The agent's relay of one command script to the card: each C-APDU is sent
 * as it is (the agent holds no SCP03 key and cannot read or change
 * protected commands undetected) and the R-APDUs come back as a response
 * script. Execution stops after the first response whose SW1 is not 90, 61,
 * 62 or 63 (ISO/IEC 7816-4 §5.6: an error), and the executed count says how
 * many ran. TC_ERR_FORMAT etc. for a malformed script (nothing is sent),
 * TC_ERR_IO when the card link fails.
 */
TC_MUST_CHECK tc_err tc_ota_agent_run_script(struct tc_transport *t, const uint8_t *script,
                                             size_t script_len, struct tc_buf *response);

/* ------------------------------------------------------------------ remote SCP03 */

/*
 * The server's side of an SCP03 session (GP Amendment D) carried by
 * Amendment B scripts: the agent only relays, so commands are protected end
 * to end between the server and the card. Steps:
 *   1. SELECT the ISD (plain) + INITIALIZE UPDATE
 *   2. EXTERNAL AUTHENTICATE (card cryptogram verified first)
 *   3.. one wrapped command per script, its response unwrapped (R-MAC
 *      verified at levels with R-MAC) before the next is sent
 * A wrapped command per script because the R-MAC of each response depends
 * on the MAC chaining value of its own command (Amendment D §6.2.5). The
 * static keys stay in the key provider (an HSM); session keys live in
 * `host` for the session only and are wiped by tc_ota_remote_wipe and on any
 * failure.
 */
#define TC_OTA_REMOTE_CMDS_MAX 8u
#define TC_OTA_REMOTE_DATA_MAX 258u

struct tc_ota_remote {
    struct tc_scp03_host host;
    int state;
    uint8_t aid[16];
    size_t aid_len;
    const struct tc_apdu *cmds; /* plain commands, kept by the caller */
    size_t ncmds, next;
    uint16_t sw[TC_OTA_REMOTE_CMDS_MAX];
    uint8_t data[TC_OTA_REMOTE_CMDS_MAX][TC_OTA_REMOTE_DATA_MAX];
    size_t data_len[TC_OTA_REMOTE_CMDS_MAX];
};

/* cfg->aid names the ISD (required: the pseudo-random card challenge is
 * checked against it). */
TC_MUST_CHECK tc_err tc_ota_remote_init(struct tc_ota_remote *r,
                                        const struct tc_scp03_key_provider *keys,
                                        const struct tc_scp03_host_config *cfg,
                                        const struct tc_apdu *cmds, size_t ncmds);
/*
 * Consumes the response script to the previous step (NULL at the start) and
 * appends the next command script to `script`; *done once every command has
 * been answered. TC_ERR_CARD when the card refused a step of the handshake,
 * TC_ERR_VERIFY when a card cryptogram or R-MAC does not verify (the
 * session keys are then wiped).
 */
TC_MUST_CHECK tc_err tc_ota_remote_step(struct tc_ota_remote *r, const uint8_t *response,
                                        size_t response_len, struct tc_buf *script, bool *done);
void tc_ota_remote_wipe(struct tc_ota_remote *r);

/*
 * A struct tc_ota_app that runs one remote SCP03 session per connected
 * device (the same commands for every device) over the Amendment B
 * framing. For each session `keys` supplies the device's key provider (for
 * instance tc_ota_device_keys into an HSM provider) and `release` frees it at
 * the end; `done` reports the outcome (TC_OK with every response in r). At
 * most max_sessions devices at once; a new session of a device restarts it.
 */
struct tc_ota_scp03_app_config {
    void *ctx;
    tc_err (*keys)(void *ctx, const char *eid, struct tc_scp03_key_provider *p, void **token);
    void (*release)(void *ctx, void *token);
    void (*done)(void *ctx, const char *eid, const struct tc_ota_remote *r, tc_err rc);
    struct tc_scp03_host_config host; /* kvn, level, aid (copied with the AID) */
    const struct tc_apdu *cmds;       /* kept by the caller */
    size_t ncmds;
    size_t max_sessions;
};

struct tc_ota_scp03_app;
struct tc_ota_app;

TC_MUST_CHECK tc_err tc_ota_scp03_app_new(const struct tc_ota_scp03_app_config *cfg,
                                          struct tc_ota_scp03_app **out, struct tc_ota_app *app);
void tc_ota_scp03_app_free(struct tc_ota_scp03_app *a);

/*
 * The device's SCP03 keyset, re-derived in the HSM for this session from the
 * master diversification key and the EID (of the verified client
 * certificate): tc_hsm_diversify, so the keys are born in the HSM as session
 * objects and never leave it in the clear. Registered as keyset `kvn` of
 * the HSM provider m; the caller destroys ks (tc_hsm_keyset_destroy) when
 * the session ends.
 */
TC_MUST_CHECK tc_err tc_ota_device_keys(struct tc_hsm *h, tc_hsm_obj master, const char *eid,
                                        uint8_t kvn, size_t key_len,
                                        struct tc_hsm_scp03_provider *m, struct tc_hsm_keyset *ks);

/* ------------------------------------------------------------------ trust */

/*
 * What the server trusts: the fleet root, its CRL, and each batch CA with
 * its CRL. Copies everything given. Build it (new, add_batch, set_cache) on
 * one thread; from then on it is immutable and one trust may be used by
 * many threads at once: tc_ota_trust_verify and _verify_x509 may run
 * concurrently on it (the server's loop threads do), as may
 * tc_ota_trust_cache_stats. Free it when no call is running.
 *
 * A trust keeps the devices it verified: a bounded cache of TC_OK verdicts
 * (TC_OTA_TRUST_CACHE_DEFAULT entries unless set_cache says otherwise),
 * keyed by the SHA-256 of the certificate's whole DER, each with the
 * device's info and the window of times the verdict holds for
 * (tc_pki_window: the device's, batch CA's and root's validity, both CRLs'
 * thisUpdate..nextUpdate). A certificate found there, at a time inside its
 * window, is answered from it (the same TC_OK and info as the full check);
 * anything else runs the full check. Refusals are never kept. New CRLs
 * make a new trust (tc_ota_server_set_trust) whose cache starts empty, so
 * a revocation is honoured from the first handshake on the new trust.
 */
struct tc_ota_trust;

#define TC_OTA_TRUST_CACHE_DEFAULT 16384u
#define TC_OTA_TRUST_CACHE_MAX     (1u << 20)

TC_MUST_CHECK tc_err tc_ota_trust_new(const uint8_t *root, size_t root_len, const uint8_t *root_crl,
                                      size_t root_crl_len, struct tc_ota_trust **out);
/* Adds a batch CA and its CRL, both prepared once (tc_pki_verifier_add_batch:
 * profile-checked, the CA issued and signed by the root, the CRL a full CRL
 * signed by the CA). TC_ERR_VERIFY when one of those fails, TC_ERR_STATE if
 * the batch ID is already present, TC_ERR_NOMEM past TC_OTA_BATCHES_MAX. */
TC_MUST_CHECK tc_err tc_ota_trust_add_batch(struct tc_ota_trust *t, const uint8_t *ca,
                                            size_t ca_len, const uint8_t *crl, size_t crl_len);
/* Loads <ws>/pki/root.pem, root-crl.pem and every batches/<b>/{ca,crl}.pem
 * (docs/pki.md workspace layout). */
TC_MUST_CHECK tc_err tc_ota_trust_load(const char *workspace, struct tc_ota_trust **out);
void tc_ota_trust_free(struct tc_ota_trust *t);
/* Replaces the verify cache with an empty one of at least `entries`
 * entries (rounded up to a power of two, at most TC_OTA_TRUST_CACHE_MAX);
 * 0: no cache, every call runs the full check. Before the trust is shared.
 * TC_ERR_RANGE past the maximum, TC_ERR_NOMEM. */
TC_MUST_CHECK tc_err tc_ota_trust_set_cache(struct tc_ota_trust *t, size_t entries);
struct tc_ota_trust_cache_stats {
    uint64_t hits;      /* answered from the cache */
    uint64_t misses;    /* full checks while the cache is on (stale included) */
    uint64_t stale;     /* found, but the time asked for is outside its window */
    uint64_t inserts;   /* TC_OK verdicts kept */
    uint64_t evictions; /* kept verdicts replaced by another certificate's */
    size_t entries;     /* verdicts kept now */
    size_t capacity;    /* 0: no cache */
};
void tc_ota_trust_cache_stats(const struct tc_ota_trust *t, struct tc_ota_trust_cache_stats *out);

/*
 * Verifies a device certificate (DER) at `at` (0: now) with the prepared
 * verifier: the device profile, its batch CA found by issuer name and key
 * identifier, RFC 5280 path validation to the root with the root CRL and
 * the batch CRL (validity windows checked at that time), and the batch
 * fence. The same verdicts as tc_pki_verify (docs/pki.md, "Prepared
 * verifier"). TC_OK with the device's info, or TC_ERR_VERIFY with one reason.
 */
TC_MUST_CHECK tc_err tc_ota_trust_verify(const struct tc_ota_trust *t, const uint8_t *device,
                                         size_t device_len, int64_t at,
                                         struct tc_pki_device_info *info, char *reason,
                                         size_t reason_size);
/* The same for a certificate OpenSSL has already parsed (the server's
 * handshake: libssl's X509 of the peer), without parsing it again. Its
 * cache key is the SHA-256 of i2d_X509 of it, encoded on the stack: a hit
 * allocates nothing. */
TC_MUST_CHECK tc_err tc_ota_trust_verify_x509(const struct tc_ota_trust *t, struct x509_st *device,
                                              int64_t at, struct tc_pki_device_info *info,
                                              char *reason, size_t reason_size);

/* ------------------------------------------------------------------ server */

typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;
struct event_base;

struct tc_ota_server_config {
    const char *host;                 /* numeric address to listen on: 127.0.0.1 or ::1 */
    uint16_t port;                    /* 0: an ephemeral port (tc_ota_server_port) */
    X509 *cert;                       /* the server's TLS certificate (a reference is taken) */
    EVP_PKEY *key;                    /* its key (a reference is taken) */
    const struct tc_ota_trust *trust; /* kept by the caller while the server runs */
    size_t max_headers;               /* 0: TC_OTA_HEADERS_MAX */
    size_t max_body;                  /* 0: TC_OTA_BODY_MAX */
    unsigned timeout_ms;              /* handshake/read/write; 0: TC_OTA_TIMEOUT_MS */
    unsigned max_connections;         /* 0: TC_OTA_CONNECTIONS_MAX */
    const struct tc_ota_app *app;     /* NULL: every session ends at once (204) */
    /* Loop threads carrying the connections (TLS handshakes, HTTP), each
     * with its own event base, all accepting on the one listening socket,
     * each with an even share of max_connections. 0: the caller's loop
     * carries them. The application runs on the caller's loop either way,
     * so that loop must run while the server serves. */
    unsigned threads;
};
#define TC_OTA_THREADS_MAX 64u

/*
 * GP Amendment B remote administration over the channel (subset in
 * docs/ota.md). The agent opens a session with
 *   POST /ota/v1/admin   X-Admin-Protocol: globalplatform-remote-admin/1.0
 *                        X-Admin-From: //se-id/eid/<EID of its certificate>
 * and the server answers 200 with the next command script
 * (Content-Type application/vnd.globalplatform.card-content-mgt;version=1.0)
 * and X-Admin-Next-URI, or 204 without a Next URI to end the session. The
 * agent POSTs the card's response script (the -response content type and
 * X-Admin-Script-Status) to exactly that Next URI, which names a random
 * session token and the step; any other URI (a replayed or reordered step)
 * ends the session with 409.
 */
#define TC_OTA_ADMIN_PROTOCOL "globalplatform-remote-admin/1.0"
#define TC_OTA_CT_SCRIPT      "application/vnd.globalplatform.card-content-mgt;version=1.0"
#define TC_OTA_CT_RESPONSE    "application/vnd.globalplatform.card-content-mgt-response;version=1.0"
#define TC_OTA_ADMIN_PATH     "/ota/v1/admin"

enum tc_ota_script_status {
    TC_OTA_STATUS_NONE = 0, /* the session's first POST */
    TC_OTA_STATUS_OK,
    TC_OTA_STATUS_UNKNOWN_APPLICATION,
    TC_OTA_STATUS_NOT_A_SECURITY_DOMAIN,
    TC_OTA_STATUS_SECURITY_ERROR
};

struct tc_ota_admin_in {
    const char *eid; /* from the verified certificate */
    uint32_t step;   /* 0 for the first POST */
    bool resume;     /* X-Admin-Resume: true */
    enum tc_ota_script_status status;
    const uint8_t *response; /* the response script (validated), or NULL */
    size_t response_len;
};

/* What the server runs inside a session; called on the thread of the
 * caller's loop (the base given to tc_ota_server_new), whatever thread
 * carries the connection. */
struct tc_ota_app {
    void *ctx;
    /* Append the next command script (tc_ota_script_encode) to `script`, or
     * leave it empty to end the session. A failure ends it with 500. */
    tc_err (*next)(void *ctx, const struct tc_ota_admin_in *in, struct tc_buf *script);
    /* The session ended: completed (204 sent) or aborted (error, replay,
     * disconnect). Optional. */
    void (*end)(void *ctx, const char *eid, bool completed);
    /* Optional asynchronous form of next, used instead of it when set: the
     * server holds the request until the application calls reply(arg, ...)
     * exactly once for every call that returned TC_OK — during the call or
     * later, on the caller's loop thread, even after `end` or after the
     * server is freed (the server then only frees the request). rc != TC_OK answers 500; an empty
     * script 204. `in` is valid during the call only. A failure returned here answers 500 and reply
     * is never called. */
    tc_err (*next_async)(void *ctx, const struct tc_ota_admin_in *in,
                         void (*reply)(void *arg, tc_err rc, const uint8_t *script, size_t len),
                         void *arg);
};

/* Counters, for logs and tests. */
struct tc_ota_stats {
    uint64_t accepted;          /* TCP connections accepted */
    uint64_t open;              /* connections open now */
    uint64_t handshakes;        /* TLS handshakes completed (certificate verified) */
    uint64_t cert_rejected;     /* peer certificate missing, invalid or revoked */
    uint64_t handshake_failed;  /* not TLS 1.3, garbage, timeout during the handshake */
    uint64_t requests;          /* HTTP requests dispatched */
    uint64_t closed_no_request; /* verified connections closed without a complete request */
    uint64_t paused;            /* times the listener paused at the connection cap */
    uint64_t admin_refused;     /* Amendment B requests refused (headers, replay, format) */
    uint64_t sessions_done;     /* sessions that ended with 204 */
};

struct tc_ota_server;

/* Binds and listens on `base` (the caller runs the loop). The process must
 * ignore SIGPIPE: peers that close early make socket writes fail. */
TC_MUST_CHECK tc_err tc_ota_server_new(struct event_base *base,
                                       const struct tc_ota_server_config *cfg,
                                       struct tc_ota_server **out);
uint16_t tc_ota_server_port(const struct tc_ota_server *s);
/* Replaces the trust (new CRLs) for handshakes from now on; call it from
 * the caller's loop thread. When it returns no handshake uses the previous
 * trust any more (one in progress on a loop thread is waited for); it is
 * returned for the caller to free. */
const struct tc_ota_trust *tc_ota_server_set_trust(struct tc_ota_server *s,
                                                   const struct tc_ota_trust *t);
void tc_ota_server_stats(const struct tc_ota_server *s, struct tc_ota_stats *out);
/* Stops the loop threads and closes every connection; call it from the
 * caller's loop thread or with that loop stopped (it runs one non-blocking
 * pass of each loop for libevent's deferred frees). Sessions still open
 * are ended (the application's `end`); a request the application still
 * holds is dropped when it answers. */
void tc_ota_server_free(struct tc_ota_server *s);

#endif
