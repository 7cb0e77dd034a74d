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

#include <trustchain/core.h>
#include <trustchain/pki.h>

#define TC_OTA_BATCHES_MAX     256u
#define TC_OTA_HEADERS_MAX     8192u         /* default cap on the request header block */
#define TC_OTA_BODY_MAX        (64u * 1024u) /* default cap on a request body */
#define TC_OTA_TIMEOUT_MS      10000u
#define TC_OTA_CONNECTIONS_MAX 20000u
#define TC_OTA_REASON_MAX      160u

/* ------------------------------------------------------------------ trust */

/*
 * What the server trusts: the fleet root, its CRL, and each batch CA with
 * its CRL. Copies everything given; immutable once built, so one trust may
 * be shared read-only by many connections.
 */
struct tc_ota_trust;

TC_MUST_CHECK tc_err tc_ota_trust_new(const uint8_t *root, size_t root_len, const uint8_t *root_crl,
                                      size_t root_crl_len, struct tc_ota_trust **out);
/* Adds a batch CA (profile-checked) and its CRL. TC_ERR_STATE if the batch ID
 * is already present, TC_ERR_NOMEM past TC_OTA_BATCHES_MAX. */
TC_MUST_CHECK tc_err tc_ota_trust_add_batch(struct tc_ota_trust *t, const uint8_t *ca,
                                            size_t ca_len, const uint8_t *crl, size_t crl_len);
/* Loads <ws>/pki/root.pem, root-crl.pem and every batches/<b>/{ca,crl}.pem
 * (docs/pki.md workspace layout). */
TC_MUST_CHECK tc_err tc_ota_trust_load(const char *workspace, struct tc_ota_trust **out);
void tc_ota_trust_free(struct tc_ota_trust *t);

/*
 * Verifies a device certificate (DER) now: its batch is found by the subject
 * OU, then tc_pki_verify runs with the root, the batch CA and both CRLs.
 * TC_OK with the device's info, or TC_ERR_VERIFY with one reason.
 */
TC_MUST_CHECK tc_err tc_ota_trust_verify(const struct tc_ota_trust *t, const uint8_t *device,
                                         size_t device_len, int64_t at,
                                         struct tc_pki_device_info *info, char *reason,
                                         size_t reason_size);

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
};

struct tc_ota_server;

/* Binds and listens on `base` (the caller runs the loop). The process must
 * ignore SIGPIPE: peers that close early make socket writes fail. */
TC_MUST_CHECK tc_err tc_ota_server_new(struct event_base *base,
                                       const struct tc_ota_server_config *cfg,
                                       struct tc_ota_server **out);
uint16_t tc_ota_server_port(const struct tc_ota_server *s);
/* Replaces the trust (new CRLs) for handshakes from now on; call it from
 * the loop's thread. Returns the previous trust, which the caller frees. */
const struct tc_ota_trust *tc_ota_server_set_trust(struct tc_ota_server *s,
                                                   const struct tc_ota_trust *t);
void tc_ota_server_stats(const struct tc_ota_server *s, struct tc_ota_stats *out);
void tc_ota_server_free(struct tc_ota_server *s);

#endif
