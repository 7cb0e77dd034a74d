/*
 * trustchain station: the manufacturing line. One call provisions one card
 * end to end through gates (docs/station.md):
 *
 *   1 card      SELECT the ISD; read EID, CIN, CPLC, key information and life
 *               cycle; refuse a card that is not fresh (or a resumable card of
 *               this batch)
 *   2 transport SCP03 with the batch's transport keyset (HSM objects)
 *   3 inject    the HSM derives the device keyset from master + EID; PUT KEY
 *               wrapped in the HSM replaces the transport keyset; the card's
 *               KCVs must equal the HSM's
 *   4 confirm   a fresh session with the new keyset succeeds and one with the
 *               transport keyset fails
 *   5 identity  GENERATE KEY on the card, proof of possession, issuance by the
 *               batch CA, STORE CERTIFICATE, read back and compare SHA-256
 *   6 secure    card life cycle OP_READY -> INITIALIZED -> SECURED, read back
 *   7 record    every step above is an audit event through the registry
 *
 * and a batch runner that drives many cards on several threads. A device is
 * "provisioned" only by the last event of a run in which every gate passed;
 * a device that fails a gate is rejected (an event with the step and the
 * reason) and any certificate issued to it in that run is revoked first.
 *
 * Must never: provision a device twice, leave a second unrevoked certificate
 * for a device, re-personalise a card that is not fresh or resumable, let a
 * key other than wrapped PUT KEY blocks leave the HSM, or record a state the
 * log cannot prove.
 */
#ifndef TRUSTCHAIN_STATION_H
#define TRUSTCHAIN_STATION_H

#include <trustchain/core.h>
#include <trustchain/crypto.h>
#include <trustchain/transport.h>

struct tc_hsm;
struct tc_registry;

#define TC_STATION_NONCE_LEN     16u /* PoP nonce (docs/pki.md) */
#define TC_STATION_MAX_JOBS      64u
#define TC_STATION_DETAIL_MAX    256u
#define TC_STATION_TRANSPORT_KVN 0x30u /* vendor transport keyset (GP test cards ship 30) */
#define TC_STATION_DEVICE_KVN    0x01u /* the per-device keyset that replaces it */

/* The steps (audit field "step" of a rejection). */
enum tc_station_step {
    TC_STATION_STEP_CARD = 1,
    TC_STATION_STEP_TRANSPORT = 2,
    TC_STATION_STEP_INJECT = 3,
    TC_STATION_STEP_CONFIRM = 4,
    TC_STATION_STEP_IDENTITY = 5,
    TC_STATION_STEP_SECURE = 6,
    TC_STATION_STEP_RECORD = 7
};
/* "card", "transport", ...; "unknown" otherwise. */
const char *tc_station_step_name(unsigned step);

/* Rejection reasons (audit field "reason" of a device-rejected event). */
enum tc_station_reason {
    TC_STATION_OK = 0,
    TC_STATION_R_CARD_REMOVED = 1,   /* the card stopped answering (link I/O) */
    TC_STATION_R_CARD_ERROR = 2,     /* the card answered an error status word */
    TC_STATION_R_CARD_STATE = 3,     /* not fresh: life cycle, keysets or applet */
    TC_STATION_R_EID = 4,            /* EID malformed or outside the batch prefix */
    TC_STATION_R_TRANSPORT_KEYS = 5, /* the transport keyset did not authenticate */
    TC_STATION_R_HSM = 6,            /* HSM unavailable, PIN refused, key missing */
    TC_STATION_R_KCV = 7,            /* card KCVs differ from the HSM's */
    TC_STATION_R_GATE = 8,           /* new keys refused or transport keys still accepted */
    TC_STATION_R_POP = 9,            /* proof of possession or issuance refused */
    TC_STATION_R_CERT_MISMATCH = 10, /* certificate read back differs */
    TC_STATION_R_LIFECYCLE = 11,     /* life cycle not SECURED after SET STATUS */
    TC_STATION_R_INTERNAL = 12,      /* anything else (details in the message) */
    TC_STATION_R_MAX_ = 12
};
/* "card-removed", "card-error", ...; "unknown" otherwise. */
const char *tc_station_reason_name(unsigned reason);

/* Points where the fault hook is called (crash tests kill the process
 * there). Each is passed once per device and run, in this order. */
enum tc_station_point {
    TC_STATION_PT_CARD_READ = 1,  /* card identified, nothing recorded */
    TC_STATION_PT_RECEIVED,       /* card-received recorded */
    TC_STATION_PT_TRANSPORT_OPEN, /* transport session open */
    TC_STATION_PT_DERIVED,        /* keys-derived recorded */
    TC_STATION_PT_PUT_KEY,        /* card answered PUT KEY, not yet recorded */
    TC_STATION_PT_INJECTED,       /* keys-injected recorded */
    TC_STATION_PT_CONFIRMED,      /* injection-confirmed queued, durable with the issuance */
    TC_STATION_PT_GENERATED,      /* key pair generated on the card, not recorded */
    TC_STATION_PT_KEYPAIR,        /* key-pair-generated recorded */
    TC_STATION_PT_ISSUED,         /* certificate-issued recorded, not on the card */
    TC_STATION_PT_STORED_CARD,    /* certificate on the card, not read back */
    TC_STATION_PT_STORED,         /* certificate-stored recorded */
    TC_STATION_PT_INITIALIZED,    /* card INITIALIZED */
    TC_STATION_PT_SECURED,        /* card SECURED, not yet recorded */
    TC_STATION_PT_DONE,           /* life-cycle-changed (provisioned) recorded */
    TC_STATION_PT_MAX_ = TC_STATION_PT_DONE
};
const char *tc_station_point_name(unsigned point);

struct tc_station_hooks {
    /* Called at every point (may kill the process). */
    void (*point)(void *arg, enum tc_station_point p);
    /* Fault injection for tests: may alter the certificate bytes about to be
     * sent to the card (the issued certificate stays as issued). */
    void (*corrupt_cert)(void *arg, uint8_t *der, size_t len);
    /* Told of every revocation the station records (after the event is
     * durable) so the batch CRL can list it; may be NULL. */
    void (*revoked)(void *arg, const char *eid, const uint8_t *serial, size_t serial_len,
                    int crl_reason);
    void *arg;
};

struct tc_station_config {
    const char *batch_id;   /* 1..64 printable, the batch CA's batch */
    const char *station_id; /* 1..64 printable */
    const char *actor;      /* 1..64 printable: operator or service account */
    /* The HSM (shared by all threads) and the key names in it. NULL: the HSM
     * is unavailable and every device is rejected at step 2 with hsm_error. */
    struct tc_hsm *hsm;
    const char *hsm_error;
    const char *master_name; /* tc:master:<name> */
    uint8_t transport_kvn;   /* 0: TC_STATION_TRANSPORT_KVN */
    uint8_t device_kvn;      /* 0: TC_STATION_DEVICE_KVN */
    size_t key_len;          /* device keys: 16 or 32 (0: the transport keys' length) */
    const uint8_t *isd_aid;  /* NULL: A000000151000000 */
    size_t isd_aid_len;
    /* The batch CA: certificate (DER) and its signer (an HSM key). */
    const struct tc_signer *batch_signer;
    const uint8_t *batch_ca;
    size_t batch_ca_len;
    /* Where every event goes. */
    struct tc_registry *registry;
    struct tc_station_hooks hooks;
};

struct tc_station;

/* Checks the configuration (batch CA profile, the keys present in the HSM)
 * and prepares shared state. Free with tc_station_free. */
TC_MUST_CHECK tc_err tc_station_new(const struct tc_station_config *cfg, struct tc_station **out);
void tc_station_free(struct tc_station *st);

enum tc_station_outcome {
    TC_STATION_PROVISIONED = 1,      /* every gate passed in this run */
    TC_STATION_REJECTED = 2,         /* a gate failed (reason, step) */
    TC_STATION_ALREADY_DONE = 3,     /* provisioned by an earlier run: nothing done */
    TC_STATION_ALREADY_REJECTED = 4, /* rejected by an earlier run: nothing done */
    TC_STATION_NO_CARD = 5           /* no card answered; nothing could be recorded */
};
const char *tc_station_outcome_name(enum tc_station_outcome o);

struct tc_station_result {
    enum tc_station_outcome outcome;
    char eid[33]; /* "" until read */
    uint8_t step;
    uint16_t reason;
    char detail[TC_STATION_DETAIL_MAX];
    bool resumed;             /* the device had events from an interrupted run */
    bool cert_issued;         /* a certificate was issued in this run */
    bool cert_revoked;        /* ... and revoked because a later gate failed */
    unsigned revoked_earlier; /* certificates of interrupted runs revoked */
    uint8_t serial[20];
    size_t serial_len;
    uint8_t cert_sha256[32];
    uint64_t events; /* audit events appended for this device in this run */
};

/*
 * Provision the card behind t (thread-safe: call from any number of threads
 * with different cards). TC_OK whenever the verdict is recorded (see
 * res->outcome); an error only when the registry could not record it, in
 * which case the runner stops.
 */
TC_MUST_CHECK tc_err tc_station_provision(struct tc_station *st, struct tc_transport *t,
                                          struct tc_station_result *res);

/* ------------------------------------------------------------------ batch runner */

/* Where cards come from: open card `index` (0..count-1) on a link. An
 * open failure is a card that is not there (outcome NO_CARD). */
struct tc_station_cards {
    tc_err (*open)(void *arg, size_t index, struct tc_transport *t);
    void *arg;
    size_t count;
};

struct tc_station_stats {
    size_t total, done; /* cards to do, cards done */
    size_t provisioned, rejected, already_done, already_rejected, no_card;
    size_t by_reason[TC_STATION_R_MAX_ + 1];
    size_t revoked; /* certificates revoked (interrupted or failed runs) */
    uint64_t events;
    double seconds;
};

struct tc_station_run_opts {
    unsigned jobs; /* threads; 0 = 1 */
    /* Called (serialised) after every card; may be NULL. */
    void (*progress)(void *arg, const struct tc_station_stats *s, const struct tc_station_result *r,
                     size_t index);
    void *arg;
};

/* Run the batch: every card once, `jobs` at a time. Stops at the first
 * registry failure (returned); otherwise TC_OK with the tally in *out. */
TC_MUST_CHECK tc_err tc_station_run(struct tc_station *st, const struct tc_station_cards *cards,
                                    const struct tc_station_run_opts *opts,
                                    struct tc_station_stats *out);

/* ------------------------------------------------------------------ emulated cards */

/* The EID of emulated card `index` of a batch: the prefix, the index in
 * decimal right-aligned and zero-padded to 30 digits, then the SGP.29 check
 * digits. TC_ERR_RANGE if the index does not fit. */
TC_MUST_CHECK tc_err tc_station_emulated_eid(const char *eid_prefix, size_t index,
                                             char out[static 33]);

/* Create the missing images <dir>/card-<index, 6 digits>.img for indices
 * 0..count-1, as the SE vendor ships them: OP_READY, the transport keyset
 * (kvn, enc/mac/dek of key_len bytes), EIDs as above. Existing images are
 * left alone (they may be half-way through the line). Each image is written
 * to a temporary file, fsync'd, linked into place and the directory
 * fsync'd; temporaries a crash left behind are removed first. */
TC_MUST_CHECK tc_err tc_station_emulate_prepare(const char *dir, size_t count,
                                                const char *eid_prefix, uint8_t kvn,
                                                const uint8_t *enc, const uint8_t *mac,
                                                const uint8_t *dek, size_t key_len);
/* A card source over those images; every NVM commit of a card is
 * fdatasync'd (the image never lags what the log says was done to the
 * card). dir is copied. */
TC_MUST_CHECK tc_err tc_station_emulate_cards(const char *dir, size_t count,
                                              struct tc_station_cards *out);
void tc_station_emulate_cards_free(struct tc_station_cards *c);

#endif
