/*
 * trustchain audit: the verifiable log of every device's credential history.
 *
 * Events have one canonical binary encoding (docs/audit-format.md). Each
 * encoded event is a leaf of an RFC 9162 Merkle tree; the log publishes
 * C2SP checkpoints (signed notes, Ed25519 through struct tc_signer), serves
 * inclusion and consistency proofs, and exports itself as C2SP tlog-tiles.
 * Appends are durable before they are acknowledged and concurrent appends
 * are group-committed (docs/audit-log.md).
 *
 * Must never: carry a secret in an event (KCVs, hashes and serials only),
 * acknowledge an append that is not on disk, accept a non-canonical event
 * encoding, or sign a checkpoint that is not the log's own current tree.
 */
#ifndef TRUSTCHAIN_AUDIT_H
#define TRUSTCHAIN_AUDIT_H

#include <trustchain/core.h>
#include <trustchain/crypto.h>

#define TC_AUDIT_HASH_LEN 32u

/* ================================================================== events */

#define TC_AUDIT_EVENT_VERSION 1u
#define TC_AUDIT_EVENT_MAX     512u /* encoded size cap */
#define TC_AUDIT_EID_MAX       32u
#define TC_AUDIT_ID_MAX        64u /* batch, station and actor identifiers */
#define TC_AUDIT_SERIAL_MAX    20u /* RFC 5280 §4.1.2.2 */
#define TC_AUDIT_KEYS          3u  /* K-ENC, K-MAC, K-DEK */

enum tc_audit_event_type {
    TC_AUDIT_CARD_RECEIVED = 1,
    TC_AUDIT_KEYS_DERIVED = 2,
    TC_AUDIT_KEYS_INJECTED = 3,
    TC_AUDIT_INJECTION_CONFIRMED = 4,
    TC_AUDIT_KEYPAIR_GENERATED = 5,
    TC_AUDIT_CERT_ISSUED = 6,
    TC_AUDIT_CERT_STORED = 7,
    TC_AUDIT_LIFECYCLE_CHANGED = 8,
    TC_AUDIT_DEVICE_REJECTED = 9,
    TC_AUDIT_KEYS_ROTATED = 10,
    TC_AUDIT_CERT_REVOKED = 11,
    TC_AUDIT_BATCH_REVOKED = 12,
    TC_AUDIT_EVENT_TYPE_MAX_ = 12,
    /* OTA operations (docs/ota.md): their own range, 0x20.. */
    TC_AUDIT_OP_QUEUED = 0x20,     /* an operation queued for a device (its id: this index) */
    TC_AUDIT_OP_STEP = 0x21,       /* intent: the server is about to change the card */
    TC_AUDIT_OP_DONE = 0x22,       /* the card proved the operation */
    TC_AUDIT_OP_FAILED = 0x23,     /* the operation failed for good (reason) */
    TC_AUDIT_OP_CANCELLED = 0x24,  /* cancelled before any step */
    TC_AUDIT_CONFIG_STORED = 0x25, /* configuration data stored and read back (its SHA-256) */
    TC_AUDIT_OTA_TYPE_FIRST_ = 0x20,
    TC_AUDIT_OTA_TYPE_LAST_ = 0x25
};

/* Field presence bits (tc_audit_event.fields). Which fields an event type
 * requires and allows is fixed per type (docs/audit-format.md). */
#define TC_AUDIT_HAS_EID            (1u << 0)
#define TC_AUDIT_HAS_BATCH          (1u << 1)
#define TC_AUDIT_HAS_STATION        (1u << 2)
#define TC_AUDIT_HAS_ACTOR          (1u << 3)
#define TC_AUDIT_HAS_KVN            (1u << 4)
#define TC_AUDIT_HAS_KCV            (1u << 5)
#define TC_AUDIT_HAS_PREV_KVN       (1u << 6)
#define TC_AUDIT_HAS_PUBKEY_SHA256  (1u << 7)
#define TC_AUDIT_HAS_CERT_SERIAL    (1u << 8)
#define TC_AUDIT_HAS_CERT_SHA256    (1u << 9)
#define TC_AUDIT_HAS_LIFECYCLE      (1u << 10)
#define TC_AUDIT_HAS_PREV_LIFECYCLE (1u << 11)
#define TC_AUDIT_HAS_REASON         (1u << 12)
#define TC_AUDIT_HAS_STEP           (1u << 13)
#define TC_AUDIT_HAS_OP_ID          (1u << 14)
#define TC_AUDIT_HAS_OP_KIND        (1u << 15)
#define TC_AUDIT_HAS_MASTER         (1u << 16)
#define TC_AUDIT_HAS_DATA_SHA256    (1u << 17)

/* One decoded event. Text identifiers are NUL-terminated printable ASCII
 * without spaces (0x21..0x7E), 1..TC_AUDIT_ID_MAX characters. */
struct tc_audit_event {
    enum tc_audit_event_type type;
    uint64_t time_ms; /* UTC, milliseconds since 1970-01-01T00:00:00Z */
    uint32_t fields;  /* TC_AUDIT_HAS_* */
    uint8_t eid[TC_AUDIT_EID_MAX];
    size_t eid_len;
    char batch[TC_AUDIT_ID_MAX + 1];
    char station[TC_AUDIT_ID_MAX + 1];
    char actor[TC_AUDIT_ID_MAX + 1];
    uint8_t kvn;                              /* GP key version number 0x01..0x7F */
    uint8_t kcv[TC_AUDIT_KEYS][TC_KCV_LEN];   /* ENC, MAC, DEK */
    uint8_t prev_kvn;                         /* the keyset replaced */
    uint8_t pubkey_sha256[TC_AUDIT_HASH_LEN]; /* SHA-256 of the SPKI DER */
    uint8_t cert_serial[TC_AUDIT_SERIAL_MAX]; /* DER INTEGER contents, positive */
    size_t cert_serial_len;
    uint8_t cert_sha256[TC_AUDIT_HASH_LEN]; /* SHA-256 of the certificate DER */
    uint8_t lifecycle;                      /* GP card life cycle byte */
    uint8_t prev_lifecycle;
    uint16_t reason; /* rejection reason, or RFC 5280 CRLReason for revocations */
    uint8_t step;    /* the station step that rejected the device, or an OTA operation's step */
    uint64_t op_id;  /* OTA operation: log index of its op-queued event */
    uint8_t op_kind; /* OTA operation code (1..15) */
    char master[TC_AUDIT_ID_MAX + 1];       /* HSM master key name a keyset derives from */
    uint8_t data_sha256[TC_AUDIT_HASH_LEN]; /* SHA-256 of an operation's data */
};

/* Fields the type requires and the ones it allows (required included). */
TC_MUST_CHECK tc_err tc_audit_event_schema(enum tc_audit_event_type type, uint32_t *required,
                                           uint32_t *allowed);
const char *tc_audit_event_type_name(enum tc_audit_event_type type);

/* Canonical encoding. Fails (TC_ERR_ARG) on an event that is not valid
 * for its type: a missing required field, a field the type does not allow,
 * an identifier with a byte outside 0x21..0x7E, a KVN outside 0x01..0x7F, a
 * non-canonical serial. */
TC_MUST_CHECK tc_err tc_audit_event_encode(const struct tc_audit_event *ev, uint8_t *out,
                                           size_t out_size, size_t *out_len);
/* Strict decoding: version, known type, fields in ascending tag order at
 * most once each, lengths exact, every value valid, required fields
 * present, input consumed exactly. Decode then encode gives back the input
 * byte for byte. TC_ERR_FORMAT / TC_ERR_TRUNCATED / TC_ERR_UNSUPPORTED
 * (unknown version). */
TC_MUST_CHECK tc_err tc_audit_event_decode(const uint8_t *in, size_t len,
                                           struct tc_audit_event *ev);

/* ================================================================== merkle */

/* RFC 9162 §2.1.1: leaf hash = SHA-256(0x00 || leaf), node hash =
 * SHA-256(0x01 || left || right). */
TC_MUST_CHECK tc_err tc_merkle_leaf_hash(const uint8_t *leaf, size_t len,
                                         uint8_t out[static TC_AUDIT_HASH_LEN]);
TC_MUST_CHECK tc_err tc_merkle_node_hash(const uint8_t left[static TC_AUDIT_HASH_LEN],
                                         const uint8_t right[static TC_AUDIT_HASH_LEN],
                                         uint8_t out[static TC_AUDIT_HASH_LEN]);

#define TC_MERKLE_LEVELS    64u
#define TC_MERKLE_PROOF_MAX 64u

/*
 * The tree state: for each level l, the hashes of every full subtree of
 * 2^l leaves (level 0 = leaf hashes), as tlog tiles index them. Proofs and
 * roots for any size up to `size` are read from it with O(log n) lookups
 * and at most O(log n) hashes. 64 bytes of memory per leaf.
 */
struct tc_merkle_tree {
    uint64_t size;
    uint8_t *level[TC_MERKLE_LEVELS];
    uint64_t cap[TC_MERKLE_LEVELS]; /* hashes allocated per level */
    /* tc_merkle_seal cache: for the tree of border_size leaves, border[l]
     * is MTH(D[(n >> l) << l : n]), the incomplete subtree that proofs at
     * that size take at level l. */
    uint64_t border_size;
    uint8_t border[TC_MERKLE_LEVELS][TC_AUDIT_HASH_LEN];
};

void tc_merkle_init(struct tc_merkle_tree *t);
void tc_merkle_free(struct tc_merkle_tree *t);
TC_MUST_CHECK tc_err tc_merkle_append(struct tc_merkle_tree *t,
                                      const uint8_t leaf_hash[static TC_AUDIT_HASH_LEN]);
/* Precompute the right-border hashes of the current size (at most 63
 * node hashes) so proofs at that size are table lookups only. The writer
 * calls it after appending; proofs at other sizes compute what they need. */
TC_MUST_CHECK tc_err tc_merkle_seal(struct tc_merkle_tree *t);
/* The hash of the full subtree (level, index); TC_ERR_RANGE if not full. */
TC_MUST_CHECK tc_err tc_merkle_node(const struct tc_merkle_tree *t, unsigned level, uint64_t index,
                                    uint8_t out[static TC_AUDIT_HASH_LEN]);
/* MTH(D[0:size]) for any size <= t->size (size 0: SHA-256 of ""). */
TC_MUST_CHECK tc_err tc_merkle_root(const struct tc_merkle_tree *t, uint64_t size,
                                    uint8_t root[static TC_AUDIT_HASH_LEN]);
/* RFC 9162 §2.1.3.1 PATH(index, D[0:size]); *n hashes written. */
TC_MUST_CHECK tc_err tc_merkle_inclusion_proof(const struct tc_merkle_tree *t, uint64_t index,
                                               uint64_t size, uint8_t (*proof)[TC_AUDIT_HASH_LEN],
                                               size_t max, size_t *n);
/* RFC 9162 §2.1.4.1 PROOF(size1, D[0:size2]); 0 < size1 <= size2 <= t->size. */
TC_MUST_CHECK tc_err tc_merkle_consistency_proof(const struct tc_merkle_tree *t, uint64_t size1,
                                                 uint64_t size2,
                                                 uint8_t (*proof)[TC_AUDIT_HASH_LEN], size_t max,
                                                 size_t *n);
/* RFC 9162 §2.1.3.2 and §2.1.4.2 verification; TC_ERR_VERIFY if the
 * proof does not prove the claim. */
TC_MUST_CHECK tc_err tc_merkle_verify_inclusion(const uint8_t leaf_hash[static TC_AUDIT_HASH_LEN],
                                                uint64_t index, uint64_t size,
                                                const uint8_t (*proof)[TC_AUDIT_HASH_LEN], size_t n,
                                                const uint8_t root[static TC_AUDIT_HASH_LEN]);
TC_MUST_CHECK tc_err tc_merkle_verify_consistency(uint64_t size1, uint64_t size2,
                                                  const uint8_t root1[static TC_AUDIT_HASH_LEN],
                                                  const uint8_t root2[static TC_AUDIT_HASH_LEN],
                                                  const uint8_t (*proof)[TC_AUDIT_HASH_LEN],
                                                  size_t n);

/* =========================================================== signed notes */

#define TC_NOTE_MAX      8192u /* whole signed note */
#define TC_NOTE_SIGS_MAX 32u   /* signature lines accepted (C2SP: at least 16) */
#define TC_NOTE_NAME_MAX 128u
#define TC_NOTE_VKEY_MAX (TC_NOTE_NAME_MAX + 64u)

/* An Ed25519 signed-note verifier (c2sp.org/signed-note). */
struct tc_note_verifier {
    char name[TC_NOTE_NAME_MAX + 1];
    uint32_t key_id;
    uint8_t pub[32];
};

/* key ID = SHA-256(name || 0x0A || 0x01 || pubkey)[:4], big-endian. */
TC_MUST_CHECK tc_err tc_note_key_id(const char *name, const uint8_t pub[static 32],
                                    uint32_t *key_id);
/* Parse "<name>+<8 hex key ID>+<base64(0x01 || pubkey)>" strictly; the key
 * ID must match the key. */
TC_MUST_CHECK tc_err tc_note_verifier_parse(const char *vkey, struct tc_note_verifier *v);
/* The verifier key string of an Ed25519 signer (NUL-terminated). */
TC_MUST_CHECK tc_err tc_note_verifier_key(const struct tc_signer *signer, const char *name,
                                          char *out, size_t out_size);
/* Sign note text (non-empty UTF-8 ending in a newline, no control
 * characters but newline) with an Ed25519 signer. Output: text || "\n" ||
 * "— <name> base64(key ID || signature)\n". */
TC_MUST_CHECK tc_err tc_note_sign(const uint8_t *text, size_t text_len,
                                  const struct tc_signer *signer, const char *name, uint8_t *out,
                                  size_t out_size, size_t *out_len);
/*
 * Open a signed note: strict syntax (UTF-8, no control characters but
 * newline, text ending in a newline, separated by the last blank line from
 * one or more well-formed signature lines). Signatures by unknown keys are
 * ignored; a signature by a known key (name and ID) that does not verify
 * rejects the note (TC_ERR_VERIFY); no verified signature: TC_ERR_VERIFY.
 * On success *text_len is the length of the text (it starts at `note`) and
 * *verified the number of verified signatures.
 */
TC_MUST_CHECK tc_err tc_note_open(const uint8_t *note, size_t len,
                                  const struct tc_note_verifier *verifiers, size_t nverifiers,
                                  size_t *text_len, size_t *verified);

/* ============================================================ checkpoints */

#define TC_CHECKPOINT_ORIGIN_MAX 128u

/* c2sp.org/tlog-checkpoint note text. */
struct tc_checkpoint {
    char origin[TC_CHECKPOINT_ORIGIN_MAX + 1];
    uint64_t size;
    uint8_t root[TC_AUDIT_HASH_LEN];
    size_t extensions; /* extension lines present (ignored) */
};

TC_MUST_CHECK tc_err tc_checkpoint_format(const char *origin, uint64_t size,
                                          const uint8_t root[static TC_AUDIT_HASH_LEN],
                                          uint8_t *out, size_t out_size, size_t *out_len);
TC_MUST_CHECK tc_err tc_checkpoint_parse(const uint8_t *text, size_t len, struct tc_checkpoint *cp);

/* ================================================================ storage */

/*
 * Where the log lives. One implementation ships (SQLite, WAL,
 * synchronous=FULL); a registry keeps its projection in the same database so
 * that events, tree state and projection change in one transaction.
 * All calls come from one thread at a time (the log serialises them).
 */
struct tc_audit_store_ops {
    tc_err (*begin)(void *ctx);
    tc_err (*put_event)(void *ctx, uint64_t index, const uint8_t *event, size_t len,
                        const uint8_t leaf_hash[TC_AUDIT_HASH_LEN]);
    tc_err (*put_tree)(void *ctx, uint64_t size, const uint8_t root[TC_AUDIT_HASH_LEN]);
    tc_err (*put_checkpoint)(void *ctx, uint64_t size, const uint8_t *note, size_t len);
    /* Durable when it returns TC_OK. */
    tc_err (*commit)(void *ctx);
    void (*rollback)(void *ctx);
    tc_err (*get_tree)(void *ctx, uint64_t *size, uint8_t root[TC_AUDIT_HASH_LEN]);
    tc_err (*get_event)(void *ctx, uint64_t index, uint8_t *out, size_t out_size, size_t *out_len,
                        uint8_t leaf_hash[TC_AUDIT_HASH_LEN]);
    /* Calls fn for every stored event in index order with its stored index
     * and stored leaf hash (untrusted: callers recompute what they check). */
    tc_err (*scan_events)(void *ctx,
                          tc_err (*fn)(void *arg, uint64_t index, const uint8_t *event, size_t len,
                                       const uint8_t *leaf_hash, size_t hash_len),
                          void *arg);
    /* The stored checkpoint with the largest size; TC_ERR_NOT_FOUND when none. */
    tc_err (*last_checkpoint)(void *ctx, uint64_t *size, uint8_t *note, size_t note_size,
                              size_t *note_len);
    /* The first checkpoint with size > after; TC_ERR_NOT_FOUND when none. */
    tc_err (*next_checkpoint)(void *ctx, uint64_t after, uint64_t *size, uint8_t *note,
                              size_t note_size, size_t *note_len);
    void (*close)(void *ctx);
};

struct tc_audit_store {
    const struct tc_audit_store_ops *ops;
    void *ctx;
};

/* Opens (creating if needed) the SQLite store at path. */
TC_MUST_CHECK tc_err tc_audit_store_sqlite_open(const char *path, struct tc_audit_store *out);
/* The store's database connection, for a projection kept in the same
 * database (use it only from a batch hook or while no log is open over the
 * store). TC_ERR_ARG if the store is not the SQLite one. */
struct sqlite3;
TC_MUST_CHECK tc_err tc_audit_store_sqlite_handle(struct tc_audit_store *s, struct sqlite3 **db);
/* The store's bytes on disk (database plus WAL), for benchmarks. */
TC_MUST_CHECK tc_err tc_audit_store_sqlite_disk_bytes(const char *path, uint64_t *bytes);
void tc_audit_store_close(struct tc_audit_store *s);

/* ==================================================================== log */

/* Points of an append batch where a fault-injection hook is called (crash
 * tests): the hook may kill the process. */
enum tc_audit_step {
    TC_AUDIT_STEP_BEGIN = 1,   /* before the transaction starts */
    TC_AUDIT_STEP_EVENT,       /* after each event is written, uncommitted */
    TC_AUDIT_STEP_TREE,        /* after the tree state is written, uncommitted */
    TC_AUDIT_STEP_COMMIT,      /* just before COMMIT */
    TC_AUDIT_STEP_COMMITTED,   /* after COMMIT returned, before anyone is told */
    TC_AUDIT_STEP_ACKNOWLEDGED /* after the appenders were released */
};

struct tc_audit_log;

/* Opens the log over a store it takes ownership of; loads the tree state
 * and checks it against the stored tree head (TC_ERR_VERIFY on mismatch). */
TC_MUST_CHECK tc_err tc_audit_log_open(struct tc_audit_store store, const char *origin,
                                       struct tc_audit_log **out);
void tc_audit_log_close(struct tc_audit_log *log);
void tc_audit_log_set_fault_hook(struct tc_audit_log *log,
                                 void (*hook)(void *arg, enum tc_audit_step step), void *arg);

/* Called by the committing thread inside each append transaction, after
 * the batch's events are written and before the tree head and COMMIT: a
 * registry writes its projection here so events, tree head and projection
 * commit together. A failure rolls the whole batch back and every append
 * in it fails. */
struct tc_audit_batch_event {
    uint64_t index;
    const uint8_t *event;
    size_t len;
};
typedef tc_err (*tc_audit_batch_hook)(void *arg, struct tc_audit_store *store,
                                      const struct tc_audit_batch_event *events, size_t n);
void tc_audit_log_set_batch_hook(struct tc_audit_log *log, tc_audit_batch_hook hook, void *arg);

/* Append n encoded events (each must decode strictly). Returns once they
 * are durable; concurrent callers are committed together in one
 * transaction. *first_index is the index of the first. */
TC_MUST_CHECK tc_err tc_audit_log_append(struct tc_audit_log *log, const uint8_t *const *events,
                                         const size_t *lens, size_t n, uint64_t *first_index);
/* Encode and append one event. */
TC_MUST_CHECK tc_err tc_audit_log_append_event(struct tc_audit_log *log,
                                               const struct tc_audit_event *ev, uint64_t *index);

uint64_t tc_audit_log_size(struct tc_audit_log *log);
TC_MUST_CHECK tc_err tc_audit_log_root(struct tc_audit_log *log, uint64_t size,
                                       uint8_t root[static TC_AUDIT_HASH_LEN]);
TC_MUST_CHECK tc_err tc_audit_log_event(struct tc_audit_log *log, uint64_t index, uint8_t *out,
                                        size_t out_size, size_t *out_len);
TC_MUST_CHECK tc_err tc_audit_log_prove_inclusion(struct tc_audit_log *log, uint64_t index,
                                                  uint64_t size,
                                                  uint8_t (*proof)[TC_AUDIT_HASH_LEN], size_t max,
                                                  size_t *n);
TC_MUST_CHECK tc_err tc_audit_log_prove_consistency(struct tc_audit_log *log, uint64_t size1,
                                                    uint64_t size2,
                                                    uint8_t (*proof)[TC_AUDIT_HASH_LEN], size_t max,
                                                    size_t *n);

/* Sign a checkpoint of the current tree with an Ed25519 signer under the
 * key name `origin` and store it (durably). Returns the note. */
TC_MUST_CHECK tc_err tc_audit_log_checkpoint(struct tc_audit_log *log,
                                             const struct tc_signer *signer, uint8_t *note,
                                             size_t note_size, size_t *note_len);
/* The latest stored checkpoint note; TC_ERR_NOT_FOUND if none. */
TC_MUST_CHECK tc_err tc_audit_log_latest_checkpoint(struct tc_audit_log *log, uint8_t *note,
                                                    size_t note_size, size_t *note_len);

/* Write the log as C2SP tlog-tiles static files under dir: checkpoint,
 * tile/<L>/<N>[.p/<W>] and tile/entries/<N>[.p/<W>]. Needs a stored
 * checkpoint; exports the tree at the latest checkpoint's size. */
TC_MUST_CHECK tc_err tc_audit_export_tiles(struct tc_audit_log *log, const char *dir);
/* The path of tile (level, index, width) under "tile/", width 256 = full
 * ("entries" when level is TC_TILE_ENTRIES). */
#define TC_TILE_ENTRIES 0xFFu
TC_MUST_CHECK tc_err tc_audit_tile_path(unsigned level, uint64_t index, unsigned width, char *out,
                                        size_t out_size);

/* ================================================================= verify */

struct tc_audit_verify_report {
    uint64_t size;        /* events verified */
    uint64_t checkpoints; /* checkpoints verified */
    uint8_t root[TC_AUDIT_HASH_LEN];
};

/*
 * Full verification of a store without trusting anything it holds: every
 * event decodes canonically, indices are contiguous from 0, every stored
 * leaf hash and the stored tree head match the recomputed tree, every
 * checkpoint is a well-formed checkpoint for `origin` signed by the
 * verifier, its root is the recomputed root at its size, and successive
 * checkpoints are consistent (RFC 9162 consistency proofs). At least one
 * checkpoint must cover the whole log unless require_full_checkpoint is
 * false. TC_ERR_VERIFY (with the reason recorded) on any mismatch.
 */
TC_MUST_CHECK tc_err tc_audit_verify_store(struct tc_audit_store *store, const char *origin,
                                           const struct tc_note_verifier *verifier,
                                           bool require_full_checkpoint,
                                           struct tc_audit_verify_report *report);

#endif
