/*
 * trustchain registry: devices, batches and stations as a projection of the
 * audit log (docs/registry.md).
 *
 * A registry owns an audit log kept in one SQLite database (WAL) and writes
 * its projection tables from the log's batch hook, so events, tree head and
 * projection commit in one transaction: an append that returns TC_OK is
 * durable and already projected. Every device state can be recomputed by
 * folding the device's events in log order (tc_registry_device_at), and the
 * whole projection can be rebuilt from the log byte for byte
 * (tc_registry_rebuild, tc_registry_check).
 *
 * Must never: hold a fact that is not derived from a logged event (the
 * certificate side table is content-addressed by the SHA-256 the log
 * carries, so it adds bytes, never facts), project an event that did not
 * commit, or report a state it cannot prove from the log.
 *
 * Thread safety: appends may come from any number of threads (the log group
 * commits them); queries are serialised on the registry's own read
 * connection and see only committed data.
 */
#ifndef TRUSTCHAIN_REGISTRY_H
#define TRUSTCHAIN_REGISTRY_H

#include <stdio.h>

#include <trustchain/audit.h>
#include <trustchain/core.h>
#include <trustchain/crypto.h>

#define TC_REGISTRY_DB_NAME        "registry.db" /* <workspace>/registry.db */
#define TC_REGISTRY_ORIGIN_DEFAULT "trustchain/audit"
#define TC_REGISTRY_CERT_MAX       8192u /* certificate DER stored in the side table */

/* Device states (docs/registry.md, "Projection rules"). */
enum tc_registry_state {
    TC_REG_RECEIVED = 1,        /* card received */
    TC_REG_KEYS_DERIVED = 2,    /* the HSM derived the device keyset */
    TC_REG_KEYS_INJECTED = 3,   /* PUT KEY done, KCVs returned by the card */
    TC_REG_CONFIRMED = 4,       /* injection confirmed (new keys proved) */
    TC_REG_KEYPAIR = 5,         /* identity key pair generated on the card */
    TC_REG_CERT_ISSUED = 6,     /* batch CA issued the certificate */
    TC_REG_CERT_STORED = 7,     /* certificate stored and read back */
    TC_REG_PROVISIONED = 8,     /* certificate stored and card SECURED */
    TC_REG_REJECTED = 9,        /* the line rejected it (reason, step) */
    TC_REG_LOCKED = 10,         /* life cycle CARD_LOCKED */
    TC_REG_DECOMMISSIONED = 11, /* life cycle TERMINATED */
    TC_REG_REVOKED = 12,        /* its current certificate was revoked */
    TC_REG_STATE_MAX_ = 12
};

/* "received", "keys-derived", ... ; NULL for an unknown value. */
const char *tc_registry_state_name(enum tc_registry_state s);
/* The inverse; TC_ERR_ARG for an unknown name. */
TC_MUST_CHECK tc_err tc_registry_state_parse(const char *name, enum tc_registry_state *s);

/* A certificate of a device as the log names it. */
struct tc_registry_cert_ref {
    uint8_t serial[TC_AUDIT_SERIAL_MAX];
    size_t serial_len;
    uint8_t sha256[TC_AUDIT_HASH_LEN];        /* of the certificate's DER */
    uint8_t pubkey_sha256[TC_AUDIT_HASH_LEN]; /* of its SPKI DER (cert-issued) */
    bool stored;                              /* the card returned it */
};

/* Other unrevoked certificates a device row remembers (an older one beyond
 * these is forgotten: docs/registry.md, "Current certificate"). */
#define TC_REGISTRY_PREV_CERTS 4u

/*
 * One device as the log says it is (the fold of its events).
 *
 * Current certificate: the most recently issued certificate of the device
 * that is not revoked; if every one is revoked, the last that was current,
 * with cert_revoked set (and the state revoked unless decommissioned).
 */
struct tc_registry_device {
    uint8_t eid[TC_AUDIT_EID_MAX];
    size_t eid_len;
    char batch[TC_AUDIT_ID_MAX + 1];
    char station[TC_AUDIT_ID_MAX + 1]; /* station of the last event that named one */
    enum tc_registry_state state;
    uint8_t kvn; /* current keyset version, 0 if none known */
    uint8_t kcv[TC_AUDIT_KEYS][TC_KCV_LEN];
    bool has_kcv;
    bool has_pubkey;
    uint8_t pubkey_sha256[TC_AUDIT_HASH_LEN];
    uint8_t cert_serial[TC_AUDIT_SERIAL_MAX]; /* current certificate, if any */
    size_t cert_serial_len;
    uint8_t cert_sha256[TC_AUDIT_HASH_LEN];
    bool has_cert;
    bool cert_stored;  /* the card returned the current certificate */
    bool cert_revoked; /* the current certificate is revoked (all are) */
    uint8_t cert_pubkey_sha256[TC_AUDIT_HASH_LEN]; /* the current certificate's key */
    /* The device's other certificates that are not revoked, oldest first. */
    struct tc_registry_cert_ref prev[TC_REGISTRY_PREV_CERTS];
    size_t n_prev;
    uint8_t lifecycle;                /* GP card life cycle byte, 0 if none known */
    uint16_t reason;                  /* rejection reason or CRLReason of the revocation */
    uint8_t step;                     /* rejecting station step */
    uint64_t first_index, last_index; /* log indices of its first and last event */
    uint64_t last_time_ms;            /* time of its last event */
    uint64_t events;                  /* events folded */
};

/* A batch: revoked by a batch-revoked event (devices keep their own state). */
struct tc_registry_batch {
    char id[TC_AUDIT_ID_MAX + 1];
    bool revoked;
    uint16_t reason;
    uint64_t revoked_index;
    uint64_t first_index, last_index, events;
};

struct tc_registry;

/* Opens (creating if needed) the registry and its log in the database at
 * path. origin names the log and its checkpoint key; NULL takes the origin
 * stored in the database (TC_REGISTRY_ORIGIN_DEFAULT for a new one). An
 * origin different from the stored one is refused (TC_ERR_STATE). */
TC_MUST_CHECK tc_err tc_registry_open(const char *path, const char *origin,
                                      struct tc_registry **out);
/* <workspace>/registry.db, creating the workspace directory if needed. */
TC_MUST_CHECK tc_err tc_registry_open_workspace(const char *workspace, struct tc_registry **out);
/* Opens an existing registry for queries, certificates, checks, rebuild and
 * verification only: the log is not loaded (so a damaged database still
 * opens for tc_registry_verify) and appends are refused (TC_ERR_STATE). */
TC_MUST_CHECK tc_err tc_registry_open_reader(const char *path, struct tc_registry **out);
void tc_registry_close(struct tc_registry *r);

/* The log underneath (proofs, checkpoints, tiles). Owned by the registry;
 * NULL when opened with tc_registry_open_reader. */
struct tc_audit_log *tc_registry_log(struct tc_registry *r);
const char *tc_registry_origin(const struct tc_registry *r);
const char *tc_registry_path(const struct tc_registry *r);

/* Append events: durable and projected when it returns TC_OK. An event
 * the projection refuses (none today: every canonical event projects)
 * fails the whole batch. */
TC_MUST_CHECK tc_err tc_registry_append(struct tc_registry *r, const struct tc_audit_event *ev,
                                        uint64_t *index);
TC_MUST_CHECK tc_err tc_registry_append_encoded(struct tc_registry *r, const uint8_t *const *events,
                                                const size_t *lens, size_t n,
                                                uint64_t *first_index);
/* A certificate for the side table, stored by the append that names it. */
struct tc_registry_cert {
    const uint8_t *der;
    size_t len;
};
/* tc_registry_append_encoded, and each certificate stored in the side table
 * in the same transaction as the events (one durable commit, shared with
 * concurrent appends by the group commit). Every certificate must be named
 * (by SHA-256) by a certificate-issued event of this append (TC_ERR_ARG
 * otherwise). */
TC_MUST_CHECK tc_err tc_registry_append_certs(struct tc_registry *r, const uint8_t *const *events,
                                              const size_t *lens, size_t n,
                                              const struct tc_registry_cert *certs, size_t ncerts,
                                              uint64_t *first_index);

/* Certificate side table, keyed by SHA-256(der): stores der (idempotent) and
 * returns its hash, which the certificate-issued event then carries. */
TC_MUST_CHECK tc_err tc_registry_cert_put(struct tc_registry *r, const uint8_t *der, size_t len,
                                          uint8_t sha256[static TC_AUDIT_HASH_LEN]);
/* The DER whose SHA-256 is sha256 (rehashed before it is returned:
 * TC_ERR_VERIFY if the stored bytes do not match); TC_ERR_NOT_FOUND. */
TC_MUST_CHECK tc_err tc_registry_cert_get(struct tc_registry *r,
                                          const uint8_t sha256[static TC_AUDIT_HASH_LEN],
                                          uint8_t *der, size_t der_size, size_t *der_len);

/* The projected (current) state; TC_ERR_NOT_FOUND for an unknown EID. */
TC_MUST_CHECK tc_err tc_registry_device_get(struct tc_registry *r, const uint8_t *eid,
                                            size_t eid_len, struct tc_registry_device *out);
/*
 * The state at time_ms: the fold of the device's events with time <=
 * time_ms, in log order (UINT64_MAX: all of them). indices, if not NULL,
 * receives the log index of each folded event (up to max_indices; *n_indices
 * is the total). TC_ERR_NOT_FOUND if the device has no event by then.
 */
TC_MUST_CHECK tc_err tc_registry_device_at(struct tc_registry *r, const uint8_t *eid,
                                           size_t eid_len, uint64_t time_ms,
                                           struct tc_registry_device *out, uint64_t *indices,
                                           size_t max_indices, size_t *n_indices);
/* Every event naming the EID, in log order. fn's event is the canonical
 * encoding (decoded in ev). A non-TC_OK from fn stops and is returned. */
TC_MUST_CHECK tc_err tc_registry_device_history(struct tc_registry *r, const uint8_t *eid,
                                                size_t eid_len,
                                                tc_err (*fn)(void *arg, uint64_t index,
                                                             const struct tc_audit_event *ev,
                                                             const uint8_t *event, size_t len),
                                                void *arg);
/* Devices in EID order, filtered by batch (NULL: any) and state (0: any). */
TC_MUST_CHECK tc_err
tc_registry_device_list(struct tc_registry *r, const char *batch, enum tc_registry_state state,
                        tc_err (*fn)(void *arg, const struct tc_registry_device *d), void *arg);
TC_MUST_CHECK tc_err tc_registry_batch_get(struct tc_registry *r, const char *id,
                                           struct tc_registry_batch *out);

/* Fold one event into a device state (the projection rule for devices;
 * exposed so that verifiers and tests apply exactly the same rule). The
 * event must name the device (or d->events == 0: it starts the state). */
TC_MUST_CHECK tc_err tc_registry_fold(struct tc_registry_device *d, uint64_t index,
                                      const struct tc_audit_event *ev);

/* SHA-256 of the canonical dump of the projection tables (every row of
 * devices, device events, batches and stations in key order, every column
 * type-tagged and length-prefixed; docs/registry.md). */
TC_MUST_CHECK tc_err tc_registry_dump_hash(struct tc_registry *r,
                                           uint8_t out[static TC_AUDIT_HASH_LEN]);
/* Canonical dump written to f (the bytes whose SHA-256 dump_hash gives). */
TC_MUST_CHECK tc_err tc_registry_dump(struct tc_registry *r, FILE *f);
/* Rebuild the projection from the log into scratch tables and compare its
 * canonical dump with the stored projection's: TC_ERR_VERIFY if they
 * differ. Both hashes are returned (either may be NULL). */
TC_MUST_CHECK tc_err tc_registry_check(struct tc_registry *r, uint8_t stored[TC_AUDIT_HASH_LEN],
                                       uint8_t rebuilt[TC_AUDIT_HASH_LEN]);
/* Replace the stored projection with one rebuilt from the log, in one
 * transaction. */
TC_MUST_CHECK tc_err tc_registry_rebuild(struct tc_registry *r);

/*
 * Rows the append transactions' projection wrote since the registry was
 * opened (counted when written, so a batch rolled back afterwards counts
 * too): whole device rows; device rows of which only the event counters
 * (last_idx, last_time, events) changed, written as those three columns
 * (events that change nothing else, such as OTA operation records);
 * device-event index rows; batch and station counter upserts. Rebuilds and
 * checks are not counted. Zero for a registry opened for reading only.
 */
struct tc_registry_stats {
    uint64_t device_rows, device_counts, device_events, batch_rows, station_rows;
};
void tc_registry_stats(struct tc_registry *r, struct tc_registry_stats *out);

/*
 * Device snapshots: a fold of another module over a device's events (such
 * as the OTA operation queue) that the projection keeps encoded, so that a
 * device's current state costs its snapshot and at most about
 * TC_REGISTRY_SNAP_EVERY events however long its history is
 * (docs/registry.md, "Device snapshots"). The registry stores the encoded
 * state opaquely; the kind decodes, folds and encodes it. A snapshot is a
 * cache keyed by the log index of the last event it folded: a rebuild
 * drops every snapshot and tc_registry_check refolds each from the log.
 */
#define TC_REGISTRY_SNAP_EVERY 16u    /* device events between snapshot refreshes */
#define TC_REGISTRY_SNAP_MAX   32768u /* largest encoded state */
struct tc_registry_snap_kind {
    uint32_t version;  /* stored with each snapshot; one of another version is not used */
    size_t state_size; /* bytes of the decoded state */
    void (*init)(void *state);
    tc_err (*decode)(const uint8_t *in, size_t len, void *state);
    /* Folds one event of the device, in log order. */
    tc_err (*fold)(void *state, uint64_t index, const struct tc_audit_event *ev);
    tc_err (*encode)(const void *state, uint8_t *out, size_t out_size, size_t *out_len);
};
/* Registers k (a static object) with the registry: from then on each append
 * transaction brings a device's snapshot up to date when the device's event
 * count crosses a multiple of TC_REGISTRY_SNAP_EVERY, and tc_registry_check
 * checks the snapshots. Registering the same kind again does nothing;
 * another kind: TC_ERR_STATE. */
TC_MUST_CHECK tc_err tc_registry_set_snap_kind(struct tc_registry *r,
                                               const struct tc_registry_snap_kind *k);
/* The device's current state under k: its snapshot (if any, of k's
 * version) decoded and every later event folded. folded (may be NULL)
 * receives how many events were folded. TC_ERR_NOT_FOUND for a device
 * without events (state is then k's initial state). */
TC_MUST_CHECK tc_err tc_registry_device_snap(struct tc_registry *r,
                                             const struct tc_registry_snap_kind *k,
                                             const uint8_t *eid, size_t eid_len, void *state,
                                             size_t *folded);

/* Sign and store a checkpoint of the current tree (see
 * tc_audit_log_checkpoint) under the registry's origin. */
TC_MUST_CHECK tc_err tc_registry_checkpoint(struct tc_registry *r, const struct tc_signer *signer,
                                            uint8_t *note, size_t note_size, size_t *note_len);

/* Full verification: tc_audit_verify_store over the database (every event,
 * leaf hash, tree head, checkpoint signature and consistency), then
 * tc_registry_check. TC_ERR_VERIFY with the reason recorded. */
TC_MUST_CHECK tc_err tc_registry_verify(struct tc_registry *r,
                                        const struct tc_note_verifier *verifier,
                                        struct tc_audit_verify_report *report);

/* Parse a time: RFC 3339 UTC ("2026-11-27T01:02:03Z", optional fraction of
 * up to 3 digits) or milliseconds since the epoch. */
TC_MUST_CHECK tc_err tc_registry_time_parse(const char *s, uint64_t *time_ms);
/* RFC 3339 UTC with milliseconds; out_size >= 25. */
TC_MUST_CHECK tc_err tc_registry_time_format(uint64_t time_ms, char *out, size_t out_size);

#endif
