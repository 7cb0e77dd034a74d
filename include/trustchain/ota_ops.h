/*
 * trustchain OTA operations: the queue of per-device operations and the
 * engine that applies them when the device connects (docs/ota.md,
 * "Operations").
 *
 * The queue is the audit log. `trustchain device queue` appends an
 * op-queued event (its log index is the operation's id); the server appends
 * a durable op-step record of intent before every command that changes the
 * card, and op-done (with the operation's own events: keys-rotated,
 * config-stored, lifecycle-changed, ...) or op-failed once the card has
 * proved the outcome. The pending operations of a device are the fold of
 * its events (tc_ota_queue_load), so an audit rebuild or a query at an
 * earlier time reproduces them.
 *
 * An operation is a small step machine (struct tc_ota_op_kind) run inside
 * the server's Amendment B dialog: it asks the engine for actions (open an
 * SCP03 session with a keyset, send one command under it, finish, fail) and
 * is told each action's result. The engine owns the remote SCP03 host, the
 * device keys (re-derived in the HSM from a named master and the EID), the
 * scripts and the durable appends.
 *
 * Must never: send a command that changes the card before its intent is on
 * disk, call an operation done that the card has not proved, or keep a
 * session key beyond the session.
 */
#ifndef TRUSTCHAIN_OTA_OPS_H
#define TRUSTCHAIN_OTA_OPS_H

#include <trustchain/audit.h>
#include <trustchain/hsm.h>
#include <trustchain/ota.h>
#include <trustchain/registry.h>

/* ------------------------------------------------------------------ kinds */

/* Operation codes as the op-queued event carries them (field op-kind). */
enum tc_ota_op_code {
    TC_OTA_OP_ROTATE_KEYS = 1,  /* PUT KEY a new KVN from a named master, re-auth, DELETE KEY old */
    TC_OTA_OP_STORE_DATA = 2,   /* STORE DATA of a configuration object to the ISD */
    TC_OTA_OP_LOCK = 3,         /* SET STATUS SECURED -> CARD_LOCKED */
    TC_OTA_OP_UNLOCK = 4,       /* SET STATUS CARD_LOCKED -> SECURED */
    TC_OTA_OP_DECOMMISSION = 5, /* SET STATUS TERMINATED, then the certificate is revoked */
    TC_OTA_OP_RENEW_CERT = 6,   /* new key pair with PoP, new certificate (src/ota/op_renew.c) */
    TC_OTA_OP_CODE_MAX_ = 15
};

/* Parameters an operation takes (tc_ota_op_kind.params). */
#define TC_OTA_PARAM_KVN    (1u << 0) /* --kvn: the new key version number */
#define TC_OTA_PARAM_MASTER (1u << 1) /* --master: the HSM master key name */
#define TC_OTA_PARAM_DATA   (1u << 2) /* --file: a data blob (its SHA-256 is logged) */

#define TC_OTA_DATA_MAX 1024u /* a data blob (the card's profile area holds 1024 bytes) */

/* Operation status in the fold of a device's events. */
enum tc_ota_op_status {
    TC_OTA_OP_PENDING = 1,
    TC_OTA_OP_DONE,
    TC_OTA_OP_FAILED,
    TC_OTA_OP_CANCELLED
};

/* One operation as the log records it. */
struct tc_ota_op {
    uint64_t id; /* log index of its op-queued event */
    uint8_t code;
    enum tc_ota_op_status status;
    uint64_t queued_ms;
    char actor[TC_AUDIT_ID_MAX + 1];
    uint8_t kvn;                            /* TC_OTA_PARAM_KVN */
    char master[TC_AUDIT_ID_MAX + 1];       /* TC_OTA_PARAM_MASTER */
    uint8_t data_sha256[TC_AUDIT_HASH_LEN]; /* TC_OTA_PARAM_DATA */
    bool has_data;
    uint8_t step;    /* highest op-step (intent) recorded; 0: none yet */
    uint16_t reason; /* op-failed reason */
};

/* ------------------------------------------------------------------ the step machine */

/* What an operation asks the engine to do next. */
enum tc_ota_act_kind {
    /* Open an SCP03 session (SELECT + INITIALIZE UPDATE, EXTERNAL
     * AUTHENTICATE) to `aid` (aid_len 0: the ISD) with the keyset
     * (kvn, master); kvn 0: the device's current keyset. A session already
     * open with exactly that keyset and AID is kept (result TC_OK at once). */
    TC_OTA_ACT_AUTH = 1,
    /* Send `cmd` (plain; the engine wraps it) under the open session. */
    TC_OTA_ACT_SEND,
    /* Done: `events` (plus op-done) are appended in one durable batch. */
    TC_OTA_ACT_DONE,
    /* Failed for good: op-failed with `reason` (plus `events`). */
    TC_OTA_ACT_FAIL
};

#define TC_OTA_CMD_DATA_MAX 224u /* plain command data (fits a short APDU once wrapped) */
#define TC_OTA_RESP_MAX     258u /* plain response data */
#define TC_OTA_ACT_EVENTS   5u
#define TC_OTA_SCRATCH      512u

/* Reasons of op-failed events (field reason). */
enum tc_ota_fail_reason {
    TC_OTA_FAIL_CARD = 1,        /* the card refused a command (status word) */
    TC_OTA_FAIL_AUTH = 2,        /* a keyset that must open a session did not */
    TC_OTA_FAIL_KCV = 3,         /* PUT KEY answered KCVs that are not the HSM's */
    TC_OTA_FAIL_READBACK = 4,    /* the read-back is not what was written */
    TC_OTA_FAIL_STATE = 5,       /* the device's state does not allow the operation */
    TC_OTA_FAIL_PARAMS = 6,      /* parameters missing or unusable (blob, master) */
    TC_OTA_FAIL_UNSUPPORTED = 7, /* no engine support for this operation code */
    TC_OTA_FAIL_REVOKED = 8      /* the device or its batch was revoked: it can never connect */
};

struct tc_ota_act {
    enum tc_ota_act_kind kind;
    /* AUTH */
    uint8_t kvn;
    char master[TC_AUDIT_ID_MAX + 1]; /* "" with kvn 0 */
    uint8_t aid[16];
    size_t aid_len;
    /* SEND: cmd.data points into data[] (the engine copies it). */
    struct tc_apdu cmd;
    uint8_t data[TC_OTA_CMD_DATA_MAX];
    /* SEND and AUTH: when intent != 0 an op-step event with this step (and
     * `events`) is appended durably before the command reaches the card.
     * DONE / FAIL: `events` go with op-done / op-failed. The engine fills
     * in time, EID and op id (where the type allows it). */
    uint8_t intent;
    struct tc_audit_event events[TC_OTA_ACT_EVENTS];
    size_t nevents;
    uint16_t reason; /* FAIL: enum tc_ota_fail_reason */
};

/* The result of the last AUTH or SEND. */
struct tc_ota_result {
    enum tc_ota_act_kind kind;
    tc_err rc; /* AUTH: TC_OK, TC_ERR_VERIFY (card cryptogram), TC_ERR_CARD (see sw) */
    uint16_t sw;
    uint8_t data[TC_OTA_RESP_MAX]; /* SEND: the unwrapped response data */
    size_t len;
};

struct tc_ota_ops;

/* One operation being applied to one connected device. */
struct tc_ota_op_run {
    const struct tc_ota_op *op;           /* op->step: the intent recorded so far */
    const struct tc_registry_device *dev; /* the device as the registry has it */
    const char *eid;                      /* 32 digits */
    uint8_t kvn;                          /* the device's current keyset (registry) */
    const char *master;                   /* ... and the master it derives from */
    struct tc_ota_ops *engine;            /* for tc_ota_run_* helpers */
    int pc;                               /* the kind's own program counter, 0 at start */
    uint8_t scratch[TC_OTA_SCRATCH];      /* the kind's own state for this run */
};

/*
 * An operation kind. `next` is called with res == NULL first (run->pc 0;
 * run->op->step says how far an earlier, interrupted run got), then with
 * the result of each AUTH / SEND it asked for, and fills `act`. A return
 * other than TC_OK aborts the dialog (the operation stays pending and is
 * resumed at the next connection): use it for a failure of the server
 * itself, not for a card's refusal (that is TC_OTA_ACT_FAIL).
 */
struct tc_ota_op_kind {
    const char *name; /* as `device queue` takes it: "rotate-keys" */
    uint8_t code;     /* enum tc_ota_op_code */
    uint32_t params;  /* TC_OTA_PARAM_* the operation requires */
    const char *summary;
    tc_err (*next)(struct tc_ota_op_run *run, const struct tc_ota_result *res,
                   struct tc_ota_act *act);
};

/*
 * The registered kinds: a table in src/ota/ops.c. A new kind is one file
 * src/ota/op_<name>.c defining `const struct tc_ota_op_kind
 * tc_ota_op_<name>`, one extern line below, one line in that table and
 * its file in src/ota/CMakeLists.txt.
 */
extern const struct tc_ota_op_kind tc_ota_op_rotate_keys;
extern const struct tc_ota_op_kind tc_ota_op_store_data;
extern const struct tc_ota_op_kind tc_ota_op_lock;
extern const struct tc_ota_op_kind tc_ota_op_unlock;
extern const struct tc_ota_op_kind tc_ota_op_decommission;

const struct tc_ota_op_kind *tc_ota_op_kind_by_name(const char *name);
const struct tc_ota_op_kind *tc_ota_op_kind_by_code(uint8_t code);
/* The name of a code ("rotate-keys"), "unknown" if none is registered. */
const char *tc_ota_op_name(uint8_t code);
/* Calls fn for every registered kind (CLI help). */
void tc_ota_op_kinds(void (*fn)(void *arg, const struct tc_ota_op_kind *k), void *arg);

/* Helpers for kinds (engine services). */

/* The HSM key provider holding keyset (kvn, master) re-derived for this
 * device (kvn 0: the current keyset), for PUT KEY data and KCVs
 * (tc_scp03_put_key_data with the current keyset's DEK). */
TC_MUST_CHECK tc_err tc_ota_run_keys(struct tc_ota_op_run *run, uint8_t kvn, const char *master,
                                     const struct tc_scp03_key_provider **p);
/* The data blob of a TC_OTA_PARAM_DATA operation, read from the workspace
 * blob store and checked against the logged SHA-256. */
TC_MUST_CHECK tc_err tc_ota_run_data(struct tc_ota_op_run *run, uint8_t *out, size_t out_size,
                                     size_t *out_len);
/* The registry, HSM and workspace the engine runs with (kinds that issue
 * certificates need them). */
struct tc_registry *tc_ota_run_registry(struct tc_ota_op_run *run);
struct tc_hsm *tc_ota_run_hsm(struct tc_ota_op_run *run);
const char *tc_ota_run_workspace(struct tc_ota_op_run *run);

/* ------------------------------------------------------------------ the queue */

#define TC_OTA_QUEUE_MAX 64u /* operations kept per device (pending ones never dropped) */

/* The fold of a device's events: its operations in queue order and the
 * keyset the log says it holds. */
struct tc_ota_queue {
    struct tc_ota_op ops[TC_OTA_QUEUE_MAX];
    size_t n;
    size_t pending;
    uint8_t kvn;                      /* current KVN (0: unknown) */
    char master[TC_AUDIT_ID_MAX + 1]; /* master of the current keyset; "" = the default */
    uint8_t lifecycle;
    bool overflow; /* pending operations beyond TC_OTA_QUEUE_MAX (queueing refused) */
};

/* A certificate the log shows issued to a device. */
struct tc_ota_cert_ref {
    uint8_t serial[TC_AUDIT_SERIAL_MAX];
    size_t serial_len;
    uint8_t sha256[TC_AUDIT_HASH_LEN];
};
#define TC_OTA_CERTS_MAX 4u
/* Every certificate issued to the device (cert-issued) and not revoked
 * since (cert-revoked), in issue order: what a decommission or a device
 * revocation must revoke (after an abandoned renewal the registry's
 * current certificate is not the only valid one). TC_ERR_RANGE beyond max. */
TC_MUST_CHECK tc_err tc_ota_unrevoked_certs(struct tc_registry *r, const uint8_t *eid,
                                            size_t eid_len, struct tc_ota_cert_ref *out, size_t max,
                                            size_t *n);

/* Makes the queue the registry's device snapshot kind
 * (tc_registry_set_snap_kind): appends through r keep each device's queue
 * snapshot, tc_registry_check refolds them, and tc_ota_queue_load reads
 * the current queue from it (which registers it too). TC_ERR_STATE if r
 * keeps another kind. */
TC_MUST_CHECK tc_err tc_ota_queue_register(struct tc_registry *r);
void tc_ota_queue_init(struct tc_ota_queue *q);
/* Fold one event of the device (in log order). */
TC_MUST_CHECK tc_err tc_ota_queue_fold(struct tc_ota_queue *q, uint64_t index,
                                       const struct tc_audit_event *ev);
/* The fold of every event of the device with time <= at_ms (UINT64_MAX:
 * all). An unknown device gives an empty queue. */
TC_MUST_CHECK tc_err tc_ota_queue_load(struct tc_registry *r, const uint8_t *eid, size_t eid_len,
                                       uint64_t at_ms, struct tc_ota_queue *q);

struct tc_ota_queue_request {
    const char *eid; /* 32 digits, a device the registry knows */
    uint8_t code;
    const char *actor;
    uint8_t kvn;
    const char *master;
    const uint8_t *data; /* stored in <workspace>/ota/blobs/<sha256 hex> */
    size_t data_len;
    const char *workspace;
};
/* Validates the request against the kind and the device, then appends
 * op-queued (durable). *id is the new operation's id. */
TC_MUST_CHECK tc_err tc_ota_queue_add(struct tc_registry *r, const struct tc_ota_queue_request *rq,
                                      uint64_t *id);
/* Ends every pending operation of a device that can no longer connect
 * (its certificates or its batch revoked: each handshake is refused):
 * op-failed with reason TC_OTA_FAIL_REVOKED and the step an interrupted run
 * recorded, all in one durable append. *closed (may be NULL): how many. */
TC_MUST_CHECK tc_err tc_ota_queue_close_revoked(struct tc_registry *r, const uint8_t *eid,
                                                size_t eid_len, const char *actor, size_t *closed);
/* Cancels a pending operation no step of which has been recorded
 * (TC_ERR_STATE otherwise). */
TC_MUST_CHECK tc_err tc_ota_queue_cancel(struct tc_registry *r, const char *eid, uint64_t id,
                                         const char *actor);

/* ------------------------------------------------------------------ the engine */

/* Points where the fault hook is called (interrupt tests). */
enum tc_ota_fault_point {
    TC_OTA_FAULT_APPENDED = 1, /* after a durable append, before the reply carrying its command */
    TC_OTA_FAULT_REPLY         /* a script is about to be returned */
};

struct tc_ota_ops_config {
    struct tc_registry *reg; /* kept by the caller */
    struct tc_hsm *hsm;      /* kept by the caller */
    const char *workspace;   /* blobs, PKI (copied) */
    /* The master of devices whose keyset no rotation named (the line's). */
    const char *default_master;
    /* The KVN of a device whose keyset the log does not name (0: none). */
    uint8_t default_kvn;
    size_t key_len;         /* 0: 16 (AES-128) */
    uint8_t level;          /* 0: TC_SCP03_LEVEL_RENC */
    const uint8_t *isd_aid; /* NULL: A000000151000000 */
    size_t isd_aid_len;
    size_t max_sessions; /* 0: 1024 */
    /* With the server's loop: durable appends run on a writer thread that
     * commits the records of every waiting dialog together, and the app's
     * next_async holds each request until its records are on disk (the
     * loop never waits for a disk write). NULL: appends are synchronous
     * (the app's next). */
    struct event_base *base;
    const char *actor; /* NULL: "ota-server" */
    /* Tests: called at each fault point; returning true makes the engine
     * fail the request as if the server died there (nothing more is
     * sent; the dialog is aborted). */
    bool (*fault)(void *arg, enum tc_ota_fault_point at, const char *eid);
    void *fault_arg;
    /* decommission: revoke one certificate of the device (publish the
     * batch CRL; TC_OK when it is revoked already) after the card proved
     * TERMINATED — every certificate the log shows issued to it and not
     * revoked; the engine then logs cert-revoked for each. NULL:
     * decommission fails with TC_OTA_FAIL_UNSUPPORTED before it touches the
     * card. */
    tc_err (*revoke)(void *arg, const char *eid, const char *batch, const uint8_t *serial,
                     size_t serial_len, uint16_t reason);
    void *revoke_arg;
};

/* For kinds: the engine's revoke hook (TC_ERR_UNSUPPORTED without one). */
TC_MUST_CHECK tc_err tc_ota_run_revoke(struct tc_ota_op_run *run, const uint8_t *serial,
                                       size_t serial_len, uint16_t reason);
bool tc_ota_run_can_revoke(struct tc_ota_op_run *run);

/* Counters. */
struct tc_ota_ops_stats {
    uint64_t dialogs, ops_done, ops_failed, appends, aborted;
};

/*
 * The engine as the server's application: each connecting device's pending
 * operations run in queue order in one Amendment B dialog; a device with
 * nothing pending gets 204 at once.
 */
TC_MUST_CHECK tc_err tc_ota_ops_new(const struct tc_ota_ops_config *cfg, struct tc_ota_ops **out,
                                    struct tc_ota_app *app);
void tc_ota_ops_stats(const struct tc_ota_ops *e, struct tc_ota_ops_stats *out);
/* Swap the registry (reopened after another process appended); from the
 * thread of the loop the engine runs on (the server's main loop). */
void tc_ota_ops_set_registry(struct tc_ota_ops *e, struct tc_registry *reg);
void tc_ota_ops_free(struct tc_ota_ops *e);

#endif
