#include "harness.h"

#include <stdlib.h>

#include <trustchain/audit.h>

#include "audit/internal.h"

#define H TC_AUDIT_HASH_LEN

/* ------------------------------------------------ RFC 9162 by the letter */

/* §2.1.1 MTH over leaf hashes lh[0..n). */
static void ref_mth(const uint8_t (*lh)[H], size_t n, uint8_t out[H])
{
    if (n == 1) {
        memcpy(out, lh[0], H);
        return;
    }
    size_t k = 1;
    while (k * 2 < n)
        k *= 2;
    uint8_t l[H], r[H];
    ref_mth(lh, k, l);
    ref_mth(lh + k, n - k, r);
    EXPECT_OK(tc_merkle_node_hash(l, r, out));
}

/* §2.1.3.1 PATH(m, D[n]). */
static void ref_path(size_t m, const uint8_t (*lh)[H], size_t n, uint8_t (*out)[H], size_t *len)
{
    if (n == 1)
        return;
    size_t k = 1;
    while (k * 2 < n)
        k *= 2;
    if (m < k) {
        ref_path(m, lh, k, out, len);
        ref_mth(lh + k, n - k, out[(*len)++]);
    } else {
        ref_path(m - k, lh + k, n - k, out, len);
        ref_mth(lh, k, out[(*len)++]);
    }
}

/* §2.1.4.1 SUBPROOF(m, D[n], b). */
static void ref_subproof(size_t m, const uint8_t (*lh)[H], size_t n, bool b, uint8_t (*out)[H],
                         size_t *len)
{
    if (m == n) {
        if (!b)
            ref_mth(lh, n, out[(*len)++]);
        return;
    }
    size_t k = 1;
    while (k * 2 < n)
        k *= 2;
    if (m <= k) {
        ref_subproof(m, lh, k, b, out, len);
        ref_mth(lh + k, n - k, out[(*len)++]);
    } else {
        ref_subproof(m - k, lh + k, n - k, false, out, len);
        ref_mth(lh, k, out[(*len)++]);
    }
}

static uint8_t *vec_hash(struct tc_vec *v, const char *key)
{
    size_t n = 0;
    uint8_t *p = tc_vec_hex(v, key, &n);
    if (p && n != H) {
        free(p);
        return NULL;
    }
    return p;
}

/* "a,b,c" hex hashes; "-" or any element that is not 32 bytes makes the
 * proof malformed (*ok = false), as a 32-byte-per-hash decoder must. */
static size_t vec_proof(const char *s, uint8_t (*out)[H], size_t max, bool *ok)
{
    size_t n = 0;
    *ok = true;
    while (s && *s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        size_t got = 0;
        if (n >= max || tc_hex_decode(s, len, 0, out[n], H, &got) != TC_OK || got != H)
            *ok = false;
        else
            n++;
        s = e ? e + 1 : s + len;
    }
    return n;
}

static void build_reference_tree(struct tc_merkle_tree *t, uint8_t (*lh)[H])
{
    struct tc_vec v;
    tc_merkle_init(t);
    if (!tc_vec_open(&v, "audit/rfc6962-roots.txt"))
        return;
    while (tc_vec_next(&v)) {
        if (tc_vec_get(&v, "LEAF") == NULL)
            continue;
        size_t n = 0;
        uint8_t *leaf = tc_vec_hex(&v, "LEAF", &n);
        EXPECT_OK(tc_merkle_leaf_hash(leaf, n, lh[t->size]));
        EXPECT_OK(tc_merkle_append(t, lh[t->size]));
        free(leaf);
    }
    tc_vec_close(&v);
}

static void test_rfc6962_roots(void)
{
    struct tc_merkle_tree t;
    uint8_t lh[8][H];
    build_reference_tree(&t, lh);
    EXPECT_EQ_U(t.size, 8);
    struct tc_vec v;
    if (!tc_vec_open(&v, "audit/rfc6962-roots.txt"))
        return;
    int n = 0;
    while (tc_vec_next(&v)) {
        uint64_t size = 0;
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "SIZE"), 8, &size));
        uint8_t *want = vec_hash(&v, "ROOT");
        uint8_t root[H];
        EXPECT_OK(tc_merkle_root(&t, size, root));
        if (want)
            EXPECT_MEM(root, H, want, H);
        free(want);
        n++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 9);
    uint8_t root[H];
    EXPECT_ERR(tc_merkle_root(&t, 9, root), TC_ERR_RANGE);
    tc_merkle_free(&t);
}

static void test_inclusion_vectors(void)
{
    struct tc_merkle_tree t;
    uint8_t lh[8][H];
    build_reference_tree(&t, lh);
    struct tc_vec v;
    if (!tc_vec_open(&v, "audit/inclusion.txt"))
        return;
    int n = 0, rejected = 0;
    while (tc_vec_next(&v)) {
        uint64_t index = 0, size = 0, want_err = 0;
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "INDEX"), UINT64_MAX, &index));
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "SIZE"), UINT64_MAX, &size));
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "WANT_ERR"), 1, &want_err));
        size_t rl = 0, ll = 0;
        uint8_t *root = tc_vec_hex(&v, "ROOT", &rl);
        uint8_t *leaf = tc_vec_hex(&v, "LEAF_HASH", &ll);
        uint8_t proof[TC_MERKLE_PROOF_MAX][H];
        bool ok = true;
        size_t np = vec_proof(tc_vec_get(&v, "PROOF"), proof, TC_MERKLE_PROOF_MAX, &ok);
        tc_err rc = TC_ERR_FORMAT;
        if (ok && rl == H && ll == H)
            rc =
                tc_merkle_verify_inclusion(leaf, index, size, (const uint8_t(*)[H])proof, np, root);
        if (want_err) {
            if (rc == TC_OK)
                tc_test_fail_at(__FILE__, __LINE__, "record at line %d accepted", v.record_line);
            rejected++;
        } else {
            if (rc != TC_OK)
                tc_test_fail_at(__FILE__, __LINE__, "record at line %d rejected", v.record_line);
            /* Our generator gives exactly the published proof. */
            uint8_t mine[TC_MERKLE_PROOF_MAX][H];
            size_t nm = 0;
            EXPECT_OK(tc_merkle_inclusion_proof(&t, index, size, mine, TC_MERKLE_PROOF_MAX, &nm));
            EXPECT_MEM(mine, nm * H, proof, np * H);
        }
        free(root);
        free(leaf);
        n++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 27);
    EXPECT_EQ_U(rejected, 22);
    tc_merkle_free(&t);
}

static void test_consistency_vectors(void)
{
    struct tc_merkle_tree t;
    uint8_t lh[8][H];
    build_reference_tree(&t, lh);
    struct tc_vec v;
    if (!tc_vec_open(&v, "audit/consistency.txt"))
        return;
    int n = 0, rejected = 0;
    while (tc_vec_next(&v)) {
        uint64_t s1 = 0, s2 = 0, want_err = 0;
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "SIZE1"), UINT64_MAX, &s1));
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "SIZE2"), UINT64_MAX, &s2));
        EXPECT_OK(tc_parse_uint(tc_vec_get(&v, "WANT_ERR"), 1, &want_err));
        size_t l1 = 0, l2 = 0;
        uint8_t *r1 = tc_vec_hex(&v, "ROOT1", &l1);
        uint8_t *r2 = tc_vec_hex(&v, "ROOT2", &l2);
        uint8_t proof[TC_MERKLE_PROOF_MAX][H];
        bool ok = true;
        size_t np = vec_proof(tc_vec_get(&v, "PROOF"), proof, TC_MERKLE_PROOF_MAX, &ok);
        tc_err rc = TC_ERR_FORMAT;
        if (ok && l1 == H && l2 == H)
            rc = tc_merkle_verify_consistency(s1, s2, r1, r2, (const uint8_t(*)[H])proof, np);
        if (want_err) {
            if (rc == TC_OK)
                tc_test_fail_at(__FILE__, __LINE__, "record at line %d accepted", v.record_line);
            rejected++;
        } else {
            if (rc != TC_OK)
                tc_test_fail_at(__FILE__, __LINE__, "record at line %d rejected", v.record_line);
            uint8_t mine[TC_MERKLE_PROOF_MAX][H];
            size_t nm = 0;
            EXPECT_OK(tc_merkle_consistency_proof(&t, s1, s2, mine, TC_MERKLE_PROOF_MAX, &nm));
            EXPECT_MEM(mine, nm * H, proof, np * H);
        }
        free(r1);
        free(r2);
        n++;
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(n, 21);
    EXPECT_EQ_U(rejected, 16);
    tc_merkle_free(&t);
}

/* Every proof for every size up to 130 equals the RFC's recursive
 * definition and verifies; a flipped bit anywhere fails. */
static void test_against_rfc_definitions(void)
{
    enum { N = 130 };
    static uint8_t lh[N][H];
    struct tc_merkle_tree t, grow;
    tc_merkle_init(&t);
    tc_merkle_init(&grow);
    for (size_t i = 0; i < N; i++) {
        uint8_t d[8] = {(uint8_t)i, (uint8_t)(i >> 8), 'l', 'e', 'a', 'f'};
        EXPECT_OK(tc_merkle_leaf_hash(d, sizeof d, lh[i]));
        EXPECT_OK(tc_merkle_append(&t, lh[i]));
    }
    bool under_valgrind = getenv("TC_UNDER_VALGRIND") != NULL;
    size_t step = under_valgrind ? 7 : 1;
    for (size_t n = 1; n <= N; n++) {
        /* `grow` has exactly n leaves and, for odd n, sealed border
         * hashes; `t` has all N and answers for size n from its levels. */
        EXPECT_OK(tc_merkle_append(&grow, lh[n - 1]));
        if (n % 2)
            EXPECT_OK(tc_merkle_seal(&grow));
        if (n >= 20 && n % step != 0)
            continue;
        uint8_t root[H], want[H];
        ref_mth((const uint8_t(*)[H])lh, n, want);
        EXPECT_OK(tc_merkle_root(&t, n, root));
        EXPECT_MEM(root, H, want, H);
        for (size_t m = 0; m < n; m += (n < 20 ? 1 : step)) {
            uint8_t ref[TC_MERKLE_PROOF_MAX][H], got[TC_MERKLE_PROOF_MAX][H];
            size_t nr = 0, ng = 0;
            ref_path(m, (const uint8_t(*)[H])lh, n, ref, &nr);
            EXPECT_OK(tc_merkle_inclusion_proof(&t, m, n, got, TC_MERKLE_PROOF_MAX, &ng));
            EXPECT_MEM(got, ng * H, ref, nr * H);
            EXPECT_OK(tc_merkle_inclusion_proof(&grow, m, n, got, TC_MERKLE_PROOF_MAX, &ng));
            EXPECT_MEM(got, ng * H, ref, nr * H);
            EXPECT_OK(tc_merkle_verify_inclusion(lh[m], m, n, (const uint8_t(*)[H])got, ng, root));
            if (ng > 0) {
                got[ng - 1][m % H] ^= 0x01;
                EXPECT_ERR(
                    tc_merkle_verify_inclusion(lh[m], m, n, (const uint8_t(*)[H])got, ng, root),
                    TC_ERR_VERIFY);
                got[ng - 1][m % H] ^= 0x01;
            }
            if (m + 1 < n)
                EXPECT_ERR(
                    tc_merkle_verify_inclusion(lh[m], m + 1, n, (const uint8_t(*)[H])got, ng, root),
                    TC_ERR_VERIFY);
        }
        for (size_t m = 1; m <= n; m += (n < 20 ? 1 : step)) {
            uint8_t ref[TC_MERKLE_PROOF_MAX][H], got[TC_MERKLE_PROOF_MAX][H];
            size_t nr = 0, ng = 0;
            ref_subproof(m, (const uint8_t(*)[H])lh, n, true, ref, &nr);
            EXPECT_OK(tc_merkle_consistency_proof(&t, m, n, got, TC_MERKLE_PROOF_MAX, &ng));
            EXPECT_MEM(got, ng * H, ref, nr * H);
            EXPECT_OK(tc_merkle_consistency_proof(&grow, m, n, got, TC_MERKLE_PROOF_MAX, &ng));
            EXPECT_MEM(got, ng * H, ref, nr * H);
            uint8_t old[H];
            EXPECT_OK(tc_merkle_root(&t, m, old));
            EXPECT_OK(tc_merkle_verify_consistency(m, n, old, root, (const uint8_t(*)[H])got, ng));
            if (ng > 0) {
                got[0][3] ^= 0x80;
                EXPECT_ERR(
                    tc_merkle_verify_consistency(m, n, old, root, (const uint8_t(*)[H])got, ng),
                    TC_ERR_VERIFY);
            }
        }
    }
    tc_merkle_free(&grow);
    tc_merkle_free(&t);
}

static void test_proof_arguments(void)
{
    struct tc_merkle_tree t;
    uint8_t lh[8][H];
    build_reference_tree(&t, lh);
    uint8_t p[TC_MERKLE_PROOF_MAX][H];
    size_t n = 0;
    EXPECT_ERR(tc_merkle_inclusion_proof(&t, 8, 8, p, TC_MERKLE_PROOF_MAX, &n), TC_ERR_RANGE);
    EXPECT_ERR(tc_merkle_inclusion_proof(&t, 0, 9, p, TC_MERKLE_PROOF_MAX, &n), TC_ERR_RANGE);
    EXPECT_ERR(tc_merkle_inclusion_proof(&t, 0, 8, p, 2, &n), TC_ERR_SPACE);
    EXPECT_ERR(tc_merkle_consistency_proof(&t, 0, 8, p, TC_MERKLE_PROOF_MAX, &n), TC_ERR_RANGE);
    EXPECT_ERR(tc_merkle_consistency_proof(&t, 5, 4, p, TC_MERKLE_PROOF_MAX, &n), TC_ERR_RANGE);
    EXPECT_ERR(tc_merkle_consistency_proof(&t, 4, 9, p, TC_MERKLE_PROOF_MAX, &n), TC_ERR_RANGE);
    uint8_t h[H];
    EXPECT_ERR(tc_merkle_node(&t, 3, 1, h), TC_ERR_RANGE);
    EXPECT_OK(tc_merkle_node(&t, 3, 0, h));
    uint8_t root[H];
    EXPECT_OK(tc_merkle_root(&t, 8, root));
    EXPECT_MEM(h, H, root, H);
    /* Verifiers: index beyond size, shrinking sizes, empty-tree rules. */
    EXPECT_ERR(tc_merkle_verify_inclusion(lh[0], 0, 0, (const uint8_t(*)[H])p, 0, root),
               TC_ERR_VERIFY);
    EXPECT_ERR(tc_merkle_verify_consistency(8, 4, root, root, (const uint8_t(*)[H])p, 0),
               TC_ERR_VERIFY);
    EXPECT_OK(tc_merkle_verify_consistency(0, 8, root, root, (const uint8_t(*)[H])p, 0));
    EXPECT_ERR(tc_merkle_verify_consistency(0, 8, root, root, (const uint8_t(*)[H])p, 1),
               TC_ERR_VERIFY);
    EXPECT_ERR(tc_merkle_verify_consistency(8, 8, root, lh[0], (const uint8_t(*)[H])p, 0),
               TC_ERR_VERIFY);
    tc_merkle_free(&t);
}

/* The log's batch path (frontier before COMMIT, the tree takes the hashes
 * after) leaves the tree exactly as tc_merkle_append + tc_merkle_seal do:
 * same stored hashes at every level, same seal cache, same root. */
static void test_batch_append_equals_append(void)
{
    enum { N = 300 };
    static uint8_t lh[N][H];
    static const size_t batches[] = {1, 1, 2, 3, 1, 8, 5, 16, 13, 64, 1, 7, 100, 32, 46};
    struct tc_merkle_tree a, b;
    tc_merkle_init(&a);
    tc_merkle_init(&b);
    for (size_t i = 0; i < N; i++) {
        uint8_t d[4] = {(uint8_t)i, (uint8_t)(i >> 8), 'b', 'a'};
        EXPECT_OK(tc_merkle_leaf_hash(d, sizeof d, lh[i]));
    }
    size_t pos = 0, checked = 0;
    for (size_t bi = 0; bi < TC_ARRAY_LEN(batches) && pos < N; bi++) {
        size_t n = batches[bi];
        if (pos + n > N)
            n = N - pos;
        uint8_t parents[N + TC_MERKLE_LEVELS][H];
        size_t np = 0;
        struct tc_merkle_frontier f;
        EXPECT_OK(tc_merkle_frontier_from_tree(&b, &f));
        for (size_t i = pos; i < pos + n; i++) {
            size_t k = 0;
            EXPECT_OK(tc_merkle_frontier_append_rec(&f, lh[i], parents + np,
                                                    TC_ARRAY_LEN(parents) - np, &k));
            np += k;
        }
        uint8_t border[TC_MERKLE_LEVELS][H], root[H], want[H];
        EXPECT_OK(tc_merkle_frontier_seal(&f, border, root));
        size_t used = 0;
        for (size_t i = pos; i < pos + n; i++) {
            size_t k = (size_t)__builtin_ctzll(~(uint64_t)i);
            if (k > 0) /* one parent too few is refused */
                EXPECT_ERR(tc_merkle_append_computed(&b, lh[i],
                                                     (const uint8_t(*)[H])(parents + used), k - 1),
                           TC_ERR_INTERNAL);
            EXPECT_ERR(
                tc_merkle_append_computed(&b, lh[i], (const uint8_t(*)[H])(parents + used), k + 1),
                TC_ERR_INTERNAL);
            EXPECT_OK(
                tc_merkle_append_computed(&b, lh[i], (const uint8_t(*)[H])(parents + used), k));
            used += k;
            EXPECT_OK(tc_merkle_append(&a, lh[i]));
        }
        EXPECT_EQ_U(used, np);
        tc_merkle_set_border(&b, (const uint8_t(*)[H])border);
        EXPECT_OK(tc_merkle_seal(&a));
        pos += n;
        EXPECT_EQ_U(b.size, pos);
        ref_mth((const uint8_t(*)[H])lh, pos, want);
        EXPECT_MEM(root, H, want, H);
        EXPECT_OK(tc_merkle_root(&b, pos, root));
        EXPECT_MEM(root, H, want, H);
        for (unsigned l = 0; l < TC_MERKLE_LEVELS && (pos >> l) > 0; l++)
            EXPECT_MEM(b.level[l], (size_t)(pos >> l) * H, a.level[l], (size_t)(pos >> l) * H);
        EXPECT_EQ_U(b.border_size, a.border_size);
        for (unsigned l = 0; l < TC_MERKLE_LEVELS - 1; l++)
            if ((pos & ((UINT64_C(1) << l) - 1)) != 0) { /* the entries proofs use */
                EXPECT_MEM(b.border[l], H, a.border[l], H);
                checked++;
            }
        /* Proofs at the current size come from the installed cache. */
        for (size_t m = 0; m < pos; m += 7) {
            uint8_t pa[TC_MERKLE_PROOF_MAX][H], pb[TC_MERKLE_PROOF_MAX][H];
            size_t na = 0, nb = 0;
            EXPECT_OK(tc_merkle_inclusion_proof(&a, m, pos, pa, TC_MERKLE_PROOF_MAX, &na));
            EXPECT_OK(tc_merkle_inclusion_proof(&b, m, pos, pb, TC_MERKLE_PROOF_MAX, &nb));
            EXPECT_MEM(pb, nb * H, pa, na * H);
        }
    }
    EXPECT_EQ_U(pos, N);
    EXPECT(checked > 20);
    tc_merkle_free(&a);
    tc_merkle_free(&b);
}

static const struct tc_test_case cases[] = {
    {"RFC 6962 reference roots", test_rfc6962_roots},
    {"transparency-dev inclusion probes", test_inclusion_vectors},
    {"transparency-dev consistency probes", test_consistency_vectors},
    {"proofs equal the RFC 9162 definitions", test_against_rfc_definitions},
    {"proof arguments", test_proof_arguments},
    {"batch append through the frontier equals append + seal", test_batch_append_equals_append},
};

TC_TEST_MAIN("audit-merkle", cases)
