/*
 * Internals of the audit module shared between its files: SHA-256 with a
 * per-thread reusable context, strict base64 (RFC 4648 §4), and the
 * compact-range frontier used to compute roots while appending.
 */
#ifndef TC_AUDIT_INTERNAL_H
#define TC_AUDIT_INTERNAL_H

#include <trustchain/audit.h>

/* SHA-256 over the concatenation of up to three parts (any may be empty). */
TC_MUST_CHECK tc_err tc_audit_sha256(const void *a, size_t alen, const void *b, size_t blen,
                                     const void *c, size_t clen,
                                     uint8_t out[static TC_AUDIT_HASH_LEN]);

/* Strict standard base64 with padding: no whitespace, no missing or extra
 * '=', unused bits of the last symbol zero. */
size_t tc_b64_encoded_len(size_t n);
TC_MUST_CHECK tc_err tc_b64_encode(const uint8_t *in, size_t n, char *out, size_t out_size,
                                   size_t *out_len);
TC_MUST_CHECK tc_err tc_b64_decode(const char *in, size_t n, uint8_t *out, size_t out_size,
                                   size_t *out_len);

/*
 * The right border of a tree of `size` leaves: one full-subtree hash per set
 * bit of size (RFC 9162 trees are the fold of these, right to left).
 */
struct tc_merkle_frontier {
    uint64_t size;
    uint8_t h[TC_MERKLE_LEVELS][TC_AUDIT_HASH_LEN]; /* h[l] valid iff bit l of size */
};

void tc_merkle_frontier_init(struct tc_merkle_frontier *f);
TC_MUST_CHECK tc_err tc_merkle_frontier_from_tree(const struct tc_merkle_tree *t,
                                                  struct tc_merkle_frontier *f);
TC_MUST_CHECK tc_err tc_merkle_frontier_append(struct tc_merkle_frontier *f,
                                               const uint8_t leaf_hash[static TC_AUDIT_HASH_LEN]);
TC_MUST_CHECK tc_err tc_merkle_frontier_root(const struct tc_merkle_frontier *f,
                                             uint8_t root[static TC_AUDIT_HASH_LEN]);

/*
 * Appending without hashing twice: the writer extends a frontier (to compute
 * the new root before COMMIT), keeping the full subtrees each leaf completes
 * (*n of them, level 1 upwards); after COMMIT the tree takes the leaf and
 * those hashes as they are (tc_merkle_append_computed: TC_ERR_INTERNAL unless
 * n is the number tc_merkle_append would compute), and the seal cache
 * computed from the frontier together with the root (tc_merkle_frontier_seal,
 * the fold of tc_merkle_seal) is installed with tc_merkle_set_border once the
 * tree has the frontier's size.
 */
TC_MUST_CHECK tc_err tc_merkle_frontier_append_rec(
    struct tc_merkle_frontier *f, const uint8_t leaf_hash[static TC_AUDIT_HASH_LEN],
    uint8_t (*parents)[TC_AUDIT_HASH_LEN], size_t max, size_t *n);
TC_MUST_CHECK tc_err tc_merkle_append_computed(struct tc_merkle_tree *t,
                                               const uint8_t leaf_hash[static TC_AUDIT_HASH_LEN],
                                               const uint8_t (*parents)[TC_AUDIT_HASH_LEN],
                                               size_t n);
TC_MUST_CHECK tc_err tc_merkle_frontier_seal(
    const struct tc_merkle_frontier *f, uint8_t border[static TC_MERKLE_LEVELS][TC_AUDIT_HASH_LEN],
    uint8_t root[static TC_AUDIT_HASH_LEN]);
void tc_merkle_set_border(struct tc_merkle_tree *t,
                          const uint8_t border[static TC_MERKLE_LEVELS][TC_AUDIT_HASH_LEN]);

/* Ed25519 SubjectPublicKeyInfo <-> raw 32-byte key (RFC 8410 §4). */
TC_MUST_CHECK tc_err tc_audit_ed25519_raw(const uint8_t *spki, size_t len, uint8_t pub[static 32]);
void tc_audit_ed25519_spki(const uint8_t pub[static 32], uint8_t spki[static 44]);

/* The log's tree and store, for the exporter and verifier (lock order:
 * store, then tree). */
const struct tc_merkle_tree *tc_audit_log_tree_rdlock(struct tc_audit_log *log);
void tc_audit_log_tree_unlock(struct tc_audit_log *log);
struct tc_audit_store *tc_audit_log_store_lock(struct tc_audit_log *log);
void tc_audit_log_store_unlock(struct tc_audit_log *log);

/* Length of the text of a signed note (up to and including the newline
 * before the last blank line); TC_ERR_FORMAT if there is none. */
TC_MUST_CHECK tc_err tc_note_text_len(const uint8_t *note, size_t len, size_t *text_len);

#endif
