/*
 * RFC 9162 §2.1 Merkle trees over a level-indexed store of full-subtree
 * hashes. The RFC's recursive definitions (split at the largest power of
 * two smaller than n) are computed here from the equivalent view of the
 * tree as perfect subtrees: a range [a, b) whose length is a power of two
 * and whose start is aligned to it is one stored hash; any prefix or suffix
 * range is the right-to-left fold of its aligned pieces.
 */
#include <stdlib.h>
#include <string.h>

#include "audit/internal.h"

#define H TC_AUDIT_HASH_LEN

void tc_merkle_init(struct tc_merkle_tree *t)
{
    memset(t, 0, sizeof *t);
}

void tc_merkle_free(struct tc_merkle_tree *t)
{
    if (t == NULL)
        return;
    for (unsigned l = 0; l < TC_MERKLE_LEVELS; l++)
        free(t->level[l]);
    memset(t, 0, sizeof *t);
}

static tc_err level_push(struct tc_merkle_tree *t, unsigned l, uint64_t index,
                         const uint8_t h[static H])
{
    if (index >= t->cap[l]) {
        uint64_t cap = t->cap[l] ? t->cap[l] * 2 : 1024;
        TC_ENSURE_MSG(cap <= SIZE_MAX / H, TC_ERR_NOMEM, "tree level %u too large", l);
        uint8_t *p = realloc(t->level[l], (size_t)cap * H);
        TC_ENSURE_MSG(p != NULL, TC_ERR_NOMEM, "tree level %u: out of memory", l);
        t->level[l] = p;
        t->cap[l] = cap;
    }
    memcpy(t->level[l] + (size_t)index * H, h, H);
    return TC_OK;
}

tc_err tc_merkle_append(struct tc_merkle_tree *t, const uint8_t leaf_hash[static H])
{
    TC_ENSURE(t->size < (UINT64_C(1) << 62), TC_ERR_RANGE);
    uint64_t i = t->size;
    TC_GUARD(level_push(t, 0, i, leaf_hash));
    /* Each completed right child completes its parent. */
    for (unsigned l = 0; (i & 1) == 1; l++, i >>= 1) {
        uint8_t parent[H];
        TC_GUARD(tc_merkle_node_hash(t->level[l] + (size_t)(i - 1) * H, t->level[l] + (size_t)i * H,
                                     parent));
        TC_GUARD(level_push(t, l + 1, i >> 1, parent));
    }
    t->size++;
    return TC_OK;
}

tc_err tc_merkle_seal(struct tc_merkle_tree *t)
{
    uint64_t n = t->size;
    uint8_t acc[H];
    bool have = false;
    /* Fold the frontier from its smallest (rightmost) piece leftwards;
     * before adding the piece at level k, acc is MTH(D[(n>>k)<<k : n]). */
    for (unsigned k = 0; k < TC_MERKLE_LEVELS - 1; k++) {
        if (have)
            memcpy(t->border[k], acc, H);
        if ((n >> k) & 1) {
            uint8_t piece[H];
            TC_GUARD(tc_merkle_node(t, k, (n >> k) - 1, piece));
            if (have)
                TC_GUARD(tc_merkle_node_hash(piece, acc, acc));
            else
                memcpy(acc, piece, H);
            have = true;
        }
    }
    t->border_size = n;
    return TC_OK;
}

tc_err tc_merkle_node(const struct tc_merkle_tree *t, unsigned level, uint64_t index,
                      uint8_t out[static H])
{
    TC_ENSURE(level < TC_MERKLE_LEVELS - 1, TC_ERR_RANGE);
    TC_ENSURE_MSG(index < (t->size >> level), TC_ERR_RANGE,
                  "node (%u, %llu) is not a full subtree of a tree of %llu", level,
                  (unsigned long long)index, (unsigned long long)t->size);
    memcpy(out, t->level[level] + (size_t)index * H, H);
    return TC_OK;
}

static unsigned ctz64(uint64_t v)
{
    return (unsigned)__builtin_ctzll(v);
}

static unsigned bitlen64(uint64_t v)
{
    return v == 0 ? 0 : 64u - (unsigned)__builtin_clzll(v);
}

/*
 * MTH(D[begin:end]) where the range is the union of aligned full subtrees
 * taken greedily from `begin` (true for prefixes and for the ranges proofs
 * ask for). The pieces grow then shrink; the RFC fold is right to left.
 */
static tc_err range_hash(const struct tc_merkle_tree *t, uint64_t begin, uint64_t end,
                         uint8_t out[static H])
{
    TC_ENSURE(begin < end && end <= t->size, TC_ERR_INTERNAL);
    struct {
        unsigned level;
        uint64_t index;
    } piece[2 * TC_MERKLE_LEVELS];
    size_t n = 0;
    uint64_t pos = begin;
    while (pos < end) {
        unsigned l = pos == 0 ? 63 : ctz64(pos);
        while (l > 0 && (l >= 63 || pos + (UINT64_C(1) << l) > end))
            l--;
        TC_ENSURE(n < TC_ARRAY_LEN(piece), TC_ERR_INTERNAL);
        piece[n].level = l;
        piece[n].index = pos >> l;
        n++;
        pos += UINT64_C(1) << l;
    }
    TC_GUARD(tc_merkle_node(t, piece[n - 1].level, piece[n - 1].index, out));
    for (size_t i = n - 1; i-- > 0;) {
        uint8_t left[H];
        TC_GUARD(tc_merkle_node(t, piece[i].level, piece[i].index, left));
        TC_GUARD(tc_merkle_node_hash(left, out, out));
    }
    return TC_OK;
}

tc_err tc_merkle_root(const struct tc_merkle_tree *t, uint64_t size, uint8_t root[static H])
{
    TC_ENSURE_MSG(size <= t->size, TC_ERR_RANGE, "tree size %llu beyond %llu",
                  (unsigned long long)size, (unsigned long long)t->size);
    /* RFC 9162 §2.1.1: the hash of an empty list is the hash of "". */
    if (size == 0)
        return tc_audit_sha256(NULL, 0, NULL, 0, NULL, 0, root);
    return range_hash(t, 0, size, root);
}

static tc_err put(uint8_t (*proof)[H], size_t max, size_t *n, const uint8_t h[static H])
{
    TC_ENSURE_MSG(*n < max, TC_ERR_SPACE, "proof longer than %zu hashes", max);
    memcpy(proof[*n], h, H);
    (*n)++;
    return TC_OK;
}

/*
 * The audit path of node (level, index) in the tree of `size` leaves,
 * bottom to top: siblings up to the fork where the path leaves the right
 * border, then the one hash of the incomplete subtree to the right of the
 * fork, then the full subtrees to the left of the fork from nearest to
 * farthest. Equal to RFC 9162 PATH/SUBPROOF output order.
 */
static tc_err audit_path(const struct tc_merkle_tree *t, unsigned level, uint64_t index,
                         uint64_t size, uint8_t (*proof)[H], size_t max, size_t *n)
{
    uint64_t last = size >> level; /* nodes at this level that start within size */
    TC_ENSURE(index < last || (index == last && (size & ((UINT64_C(1) << level) - 1)) != 0),
              TC_ERR_INTERNAL);
    unsigned inner = bitlen64(index ^ last);
    inner = inner == 0 ? 0 : inner - 1;
    uint64_t i = index;
    unsigned l = level;
    for (; l < level + inner; l++, i >>= 1) {
        uint8_t h[H];
        TC_GUARD(tc_merkle_node(t, l, i ^ 1, h));
        TC_GUARD(put(proof, max, n, h));
    }
    /* Now (l, i) is the fork; it covers [begin, end). */
    uint64_t begin = i << l;
    uint64_t end = begin + (UINT64_C(1) << l);
    if (end < size) {
        /* The fork's sibling [end, size) is incomplete; end is size with
         * the bits below l cleared, so tc_merkle_seal may have it. */
        uint8_t h[H];
        if (t->border_size == size && size == t->size)
            memcpy(h, t->border[l], H);
        else
            TC_GUARD(range_hash(t, end, size, h));
        TC_GUARD(put(proof, max, n, h));
    }
    /* Full subtrees covering [0, begin), nearest (smallest) first. */
    for (uint64_t rest = begin; rest != 0; rest &= rest - 1) {
        unsigned k = ctz64(rest);
        uint8_t h[H];
        TC_GUARD(tc_merkle_node(t, k, ((rest >> k) - 1), h));
        TC_GUARD(put(proof, max, n, h));
    }
    return TC_OK;
}

tc_err tc_merkle_inclusion_proof(const struct tc_merkle_tree *t, uint64_t index, uint64_t size,
                                 uint8_t (*proof)[H], size_t max, size_t *n)
{
    TC_ENSURE_MSG(size <= t->size, TC_ERR_RANGE, "tree size %llu beyond %llu",
                  (unsigned long long)size, (unsigned long long)t->size);
    TC_ENSURE_MSG(index < size, TC_ERR_RANGE, "leaf %llu not in a tree of %llu",
                  (unsigned long long)index, (unsigned long long)size);
    *n = 0;
    return audit_path(t, 0, index, size, proof, max, n);
}

tc_err tc_merkle_consistency_proof(const struct tc_merkle_tree *t, uint64_t size1, uint64_t size2,
                                   uint8_t (*proof)[H], size_t max, size_t *n)
{
    TC_ENSURE_MSG(size2 <= t->size, TC_ERR_RANGE, "tree size %llu beyond %llu",
                  (unsigned long long)size2, (unsigned long long)t->size);
    TC_ENSURE_MSG(size1 > 0 && size1 <= size2, TC_ERR_RANGE,
                  "no consistency proof from %llu to %llu", (unsigned long long)size1,
                  (unsigned long long)size2);
    *n = 0;
    /* RFC 9162 §2.1.4.1: PROOF(m, D[n]) is empty when m = n. */
    if (size1 == size2)
        return TC_OK;
    /* The largest full subtree ending at size1; the proof is that node
     * (omitted when it is the whole old tree, RFC 9162 SUBPROOF(m, D, true))
     * followed by its audit path in the new tree. */
    unsigned level = ctz64(size1);
    uint64_t index = (size1 - 1) >> level;
    if (index != 0) {
        uint8_t h[H];
        TC_GUARD(tc_merkle_node(t, level, index, h));
        TC_GUARD(put(proof, max, n, h));
    }
    return audit_path(t, level, index, size2, proof, max, n);
}

/* RFC 9162 §2.1.3.2. */
tc_err tc_merkle_verify_inclusion(const uint8_t leaf_hash[static H], uint64_t index, uint64_t size,
                                  const uint8_t (*proof)[H], size_t n, const uint8_t root[static H])
{
    /* 1. leaf_index >= tree_size fails. */
    TC_ENSURE_MSG(index < size, TC_ERR_VERIFY, "leaf %llu not in a tree of %llu",
                  (unsigned long long)index, (unsigned long long)size);
    /* 2. fn = leaf_index, sn = tree_size - 1; 3. r = hash. */
    uint64_t fn = index, sn = size - 1;
    uint8_t r[H];
    memcpy(r, leaf_hash, H);
    /* 4. For each p in the path. */
    for (size_t i = 0; i < n; i++) {
        TC_ENSURE_MSG(sn != 0, TC_ERR_VERIFY, "inclusion proof too long");
        if ((fn & 1) || fn == sn) {
            TC_GUARD(tc_merkle_node_hash(proof[i], r, r));
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            TC_GUARD(tc_merkle_node_hash(r, proof[i], r));
        }
        fn >>= 1;
        sn >>= 1;
    }
    /* 5. sn == 0 and r == root. */
    TC_ENSURE_MSG(sn == 0, TC_ERR_VERIFY, "inclusion proof too short");
    TC_ENSURE_MSG(memcmp(r, root, H) == 0, TC_ERR_VERIFY,
                  "inclusion proof does not reach the root");
    return TC_OK;
}

/* RFC 9162 §2.1.4.2. */
tc_err tc_merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[static H],
                                    const uint8_t root2[static H], const uint8_t (*proof)[H],
                                    size_t n)
{
    TC_ENSURE_MSG(size1 <= size2, TC_ERR_VERIFY, "old size %llu larger than new size %llu",
                  (unsigned long long)size1, (unsigned long long)size2);
    if (size1 == size2) {
        TC_ENSURE_MSG(n == 0, TC_ERR_VERIFY, "consistency proof between equal sizes not empty");
        TC_ENSURE_MSG(memcmp(root1, root2, H) == 0, TC_ERR_VERIFY, "roots of equal sizes differ");
        return TC_OK;
    }
    if (size1 == 0) {
        /* Every tree extends the empty tree; nothing to prove. */
        TC_ENSURE_MSG(n == 0, TC_ERR_VERIFY, "consistency proof from the empty tree not empty");
        return TC_OK;
    }
    /* 1. An empty path fails. */
    TC_ENSURE_MSG(n > 0, TC_ERR_VERIFY, "empty consistency proof");
    /* 2. If first is an exact power of 2, prepend first_hash. */
    bool pow2 = (size1 & (size1 - 1)) == 0;
    size_t i = 0;
    const uint8_t *first = pow2 ? root1 : proof[i++];
    /* 3. fn = first - 1, sn = second - 1. */
    uint64_t fn = size1 - 1, sn = size2 - 1;
    /* 4. While LSB(fn) is set, shift both. */
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    /* 5. fr = sr = first value. */
    uint8_t fr[H], sr[H];
    memcpy(fr, first, H);
    memcpy(sr, first, H);
    /* 6. For each subsequent value c. */
    for (; i < n; i++) {
        TC_ENSURE_MSG(sn != 0, TC_ERR_VERIFY, "consistency proof too long");
        if ((fn & 1) || fn == sn) {
            TC_GUARD(tc_merkle_node_hash(proof[i], fr, fr));
            TC_GUARD(tc_merkle_node_hash(proof[i], sr, sr));
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            TC_GUARD(tc_merkle_node_hash(sr, proof[i], sr));
        }
        fn >>= 1;
        sn >>= 1;
    }
    /* 7. fr == first_hash, sr == second_hash, sn == 0. */
    TC_ENSURE_MSG(sn == 0, TC_ERR_VERIFY, "consistency proof too short");
    TC_ENSURE_MSG(memcmp(fr, root1, H) == 0, TC_ERR_VERIFY,
                  "consistency proof does not reach the old root");
    TC_ENSURE_MSG(memcmp(sr, root2, H) == 0, TC_ERR_VERIFY,
                  "consistency proof does not reach the new root");
    return TC_OK;
}

/* ---------------------------------------------------------------- frontier */

void tc_merkle_frontier_init(struct tc_merkle_frontier *f)
{
    memset(f, 0, sizeof *f);
}

tc_err tc_merkle_frontier_from_tree(const struct tc_merkle_tree *t, struct tc_merkle_frontier *f)
{
    tc_merkle_frontier_init(f);
    f->size = t->size;
    for (uint64_t rest = t->size; rest != 0; rest &= rest - 1) {
        unsigned k = ctz64(rest);
        TC_GUARD(tc_merkle_node(t, k, (rest >> k) - 1, f->h[k]));
    }
    return TC_OK;
}

tc_err tc_merkle_frontier_append(struct tc_merkle_frontier *f, const uint8_t leaf_hash[static H])
{
    TC_ENSURE(f->size < (UINT64_C(1) << 62), TC_ERR_RANGE);
    uint8_t h[H];
    memcpy(h, leaf_hash, H);
    unsigned l = 0;
    /* Carry: every set low bit merges with the new subtree. */
    for (; (f->size >> l) & 1; l++)
        TC_GUARD(tc_merkle_node_hash(f->h[l], h, h));
    memcpy(f->h[l], h, H);
    f->size++;
    return TC_OK;
}

tc_err tc_merkle_frontier_append_rec(struct tc_merkle_frontier *f,
                                     const uint8_t leaf_hash[static H], uint8_t (*parents)[H],
                                     size_t max, size_t *n)
{
    TC_ENSURE(f->size < (UINT64_C(1) << 62), TC_ERR_RANGE);
    uint8_t h[H];
    memcpy(h, leaf_hash, H);
    unsigned l = 0;
    *n = 0;
    for (; (f->size >> l) & 1; l++) {
        TC_GUARD(tc_merkle_node_hash(f->h[l], h, h));
        TC_ENSURE(*n < max, TC_ERR_INTERNAL);
        memcpy(parents[(*n)++], h, H);
    }
    memcpy(f->h[l], h, H);
    f->size++;
    return TC_OK;
}

tc_err tc_merkle_append_computed(struct tc_merkle_tree *t, const uint8_t leaf_hash[static H],
                                 const uint8_t (*parents)[H], size_t n)
{
    TC_ENSURE(t->size < (UINT64_C(1) << 62), TC_ERR_RANGE);
    uint64_t i = t->size;
    /* Exactly the parents tc_merkle_append would hash: one per trailing
     * one bit of the leaf's index. */
    TC_ENSURE_MSG(n == (size_t)ctz64(~i), TC_ERR_INTERNAL, "%zu parents computed for leaf %llu", n,
                  (unsigned long long)i);
    TC_GUARD(level_push(t, 0, i, leaf_hash));
    for (unsigned l = 0; l < n; l++, i >>= 1)
        TC_GUARD(level_push(t, l + 1, i >> 1, parents[l]));
    t->size++;
    return TC_OK;
}

tc_err tc_merkle_frontier_seal(const struct tc_merkle_frontier *f,
                               uint8_t border[static TC_MERKLE_LEVELS][H], uint8_t root[static H])
{
    uint64_t n = f->size;
    if (n == 0)
        return tc_audit_sha256(NULL, 0, NULL, 0, NULL, 0, root);
    uint8_t acc[H];
    bool have = false;
    /* The fold of tc_merkle_seal, over the frontier's pieces (the same
     * full subtrees the tree holds at these positions). */
    for (unsigned k = 0; k < TC_MERKLE_LEVELS - 1; k++) {
        if (have)
            memcpy(border[k], acc, H);
        if ((n >> k) & 1) {
            if (have)
                TC_GUARD(tc_merkle_node_hash(f->h[k], acc, acc));
            else
                memcpy(acc, f->h[k], H);
            have = true;
        }
    }
    memcpy(root, acc, H);
    return TC_OK;
}

void tc_merkle_set_border(struct tc_merkle_tree *t,
                          const uint8_t border[static TC_MERKLE_LEVELS][H])
{
    uint64_t n = t->size;
    bool have = false;
    for (unsigned k = 0; k < TC_MERKLE_LEVELS - 1; k++) {
        if (have)
            memcpy(t->border[k], border[k], H);
        have = have || ((n >> k) & 1);
    }
    t->border_size = n;
}

tc_err tc_merkle_frontier_root(const struct tc_merkle_frontier *f, uint8_t root[static H])
{
    if (f->size == 0)
        return tc_audit_sha256(NULL, 0, NULL, 0, NULL, 0, root);
    unsigned l = ctz64(f->size);
    memcpy(root, f->h[l], H);
    for (l++; l < TC_MERKLE_LEVELS; l++)
        if ((f->size >> l) & 1)
            TC_GUARD(tc_merkle_node_hash(f->h[l], root, root));
    return TC_OK;
}
