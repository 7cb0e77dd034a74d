/*
 * SHA-256 for the tree, on the crypto module's per-thread digest context:
 * hashing a node costs two compression calls and no allocation.
 */
#include "audit/internal.h"

tc_err tc_audit_sha256(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                       size_t clen, uint8_t out[static TC_AUDIT_HASH_LEN])
{
    const struct tc_iov parts[] = {{a, alen}, {b, blen}, {c, clen}};
    return tc_sha256_iov(parts, TC_ARRAY_LEN(parts), out);
}

/* RFC 9162 §2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0)). */
tc_err tc_merkle_leaf_hash(const uint8_t *leaf, size_t len, uint8_t out[static TC_AUDIT_HASH_LEN])
{
    static const uint8_t prefix = 0x00;
    TC_ENSURE(leaf != NULL || len == 0, TC_ERR_ARG);
    return tc_audit_sha256(&prefix, 1, leaf, len, NULL, 0, out);
}

/* RFC 9162 §2.1.1: MTH(D_n) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])). */
tc_err tc_merkle_node_hash(const uint8_t left[static TC_AUDIT_HASH_LEN],
                           const uint8_t right[static TC_AUDIT_HASH_LEN],
                           uint8_t out[static TC_AUDIT_HASH_LEN])
{
    static const uint8_t prefix = 0x01;
    return tc_audit_sha256(&prefix, 1, left, TC_AUDIT_HASH_LEN, right, TC_AUDIT_HASH_LEN, out);
}
