#include "audit_testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

#define H     TC_AUDIT_HASH_LEN
#define N     66000u
#define WIDTH 256u

static uint8_t *read_all(const char *dir, const char *rel, size_t *len)
{
    char p[512];
    (void)snprintf(p, sizeof p, "%s/%s", dir, rel);
    FILE *f = fopen(p, "rb");
    if (f == NULL) {
        tc_test_fail_at(__FILE__, __LINE__, "missing %s", rel);
        *len = 0;
        return NULL;
    }
    fclose(f);
    return tc_test_read_file(p, len);
}

static bool exists(const char *dir, const char *rel)
{
    char p[512];
    struct stat st;
    (void)snprintf(p, sizeof p, "%s/%s", dir, rel);
    return stat(p, &st) == 0;
}

static void test_tile_paths(void)
{
    char p[128];
    EXPECT_OK(tc_audit_tile_path(0, 1234067, 256, p, sizeof p));
    EXPECT_STR(p, "tile/0/x001/x234/067");
    EXPECT_OK(tc_audit_tile_path(0, 5, 256, p, sizeof p));
    EXPECT_STR(p, "tile/0/005");
    EXPECT_OK(tc_audit_tile_path(2, 0, 1, p, sizeof p));
    EXPECT_STR(p, "tile/2/000.p/1");
    EXPECT_OK(tc_audit_tile_path(63, 1000, 255, p, sizeof p));
    EXPECT_STR(p, "tile/63/x001/000.p/255");
    EXPECT_OK(tc_audit_tile_path(TC_TILE_ENTRIES, 257, 208, p, sizeof p));
    EXPECT_STR(p, "tile/entries/257.p/208");
    EXPECT_ERR(tc_audit_tile_path(0, 0, 0, p, sizeof p), TC_ERR_ARG);
    EXPECT_ERR(tc_audit_tile_path(0, 0, 257, p, sizeof p), TC_ERR_ARG);
    EXPECT_ERR(tc_audit_tile_path(64, 0, 1, p, sizeof p), TC_ERR_ARG);
    EXPECT_ERR(tc_audit_tile_path(0, 1234067, 256, p, 12), TC_ERR_SPACE);
}

/* MTH of 2^k hashes (a full tile's worth). */
static void mth_of(const uint8_t *hashes, size_t n, uint8_t out[H])
{
    struct tc_merkle_tree t;
    tc_merkle_init(&t);
    for (size_t i = 0; i < n; i++)
        EXPECT_OK(tc_merkle_append(&t, hashes + i * H));
    /* The tree is over leaf *hashes*: its root is the subtree hash. */
    EXPECT_OK(tc_merkle_root(&t, n, out));
    tc_merkle_free(&t);
}

/* A fresh log in a scratch directory; out is where its tiles go. */
static struct tc_audit_log *tiles_log(char dir[64], char out[128])
{
    char db[128];
    if (!test_tmpdir(dir))
        return NULL;
    (void)snprintf(db, sizeof db, "%s/log.db", dir);
    (void)snprintf(out, 128, "%s/tiles", dir);
    return test_open_log(db);
}

static void test_export(void)
{
    char dir[64], out[128];
    struct tc_audit_log *log = tiles_log(dir, out);
    if (!log)
        return;
    struct tc_signer signer;
    struct tc_note_verifier v;
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ED25519, &signer));
    test_verifier(&signer, &v);
    EXPECT_ERR(tc_audit_export_tiles(log, out), TC_ERR_NOT_FOUND);

    static uint8_t evs[1000][TC_AUDIT_EVENT_MAX];
    static size_t lens[1000];
    static const uint8_t *ptrs[1000];
    for (unsigned i = 0; i < N; i += 1000) {
        unsigned n = N - i < 1000 ? N - i : 1000;
        for (unsigned j = 0; j < n; j++) {
            lens[j] = test_event(evs[j], 3, i + j, i + j);
            ptrs[j] = evs[j];
        }
        EXPECT_OK(tc_audit_log_append(log, ptrs, lens, n, NULL));
    }
    uint8_t note[TC_NOTE_MAX];
    size_t nl = 0;
    EXPECT_OK(tc_audit_log_checkpoint(log, &signer, note, sizeof note, &nl));
    /* Events after the checkpoint are not exported. */
    EXPECT_OK(tc_audit_log_append(log, ptrs, lens, 3, NULL));
    EXPECT_OK(tc_audit_export_tiles(log, out));
    tc_audit_log_close(log);

    /* The checkpoint verifies and names the size. */
    size_t len = 0, tl = 0, verified = 0;
    uint8_t *cpf = read_all(out, "checkpoint", &len);
    EXPECT_MEM(cpf, len, note, nl);
    struct tc_checkpoint cp;
    EXPECT_OK(tc_note_open(cpf, len, &v, 1, &tl, &verified));
    EXPECT_OK(tc_checkpoint_parse(cpf, tl, &cp));
    EXPECT_EQ_U(cp.size, N);
    free(cpf);

    /* The files tlog-tiles prescribes for 66000 leaves, and no others. */
    EXPECT(exists(out, "tile/0/000"));
    EXPECT(exists(out, "tile/0/256"));
    EXPECT(!exists(out, "tile/0/257"));
    EXPECT(exists(out, "tile/0/257.p/208"));
    EXPECT(exists(out, "tile/1/000"));
    EXPECT(exists(out, "tile/1/001.p/1"));
    EXPECT(!exists(out, "tile/1/001"));
    EXPECT(exists(out, "tile/2/000.p/1"));
    EXPECT(!exists(out, "tile/3"));
    EXPECT(exists(out, "tile/entries/256"));
    EXPECT(exists(out, "tile/entries/257.p/208"));
    EXPECT(!exists(out, "tile/entries/258"));

    /* Level-0 tiles hold the leaf hashes of the entries in the bundles. */
    static uint8_t leaves[N * H];
    char rel[128];
    size_t got = 0;
    for (uint64_t n = 0; n * WIDTH < N; n++) {
        unsigned w = N - n * WIDTH >= WIDTH ? WIDTH : (unsigned)(N - n * WIDTH);
        EXPECT_OK(tc_audit_tile_path(0, n, w, rel, sizeof rel));
        uint8_t *tile = read_all(out, rel, &len);
        EXPECT_EQ_U(len, (size_t)w * H);
        if (tile && len == (size_t)w * H)
            memcpy(leaves + got * H, tile, len);
        free(tile);
        EXPECT_OK(tc_audit_tile_path(TC_TILE_ENTRIES, n, w, rel, sizeof rel));
        uint8_t *bundle = read_all(out, rel, &len);
        struct tc_cursor c;
        tc_cursor_init(&c, bundle, len);
        for (unsigned i = 0; i < w; i++) {
            uint16_t el = 0;
            const uint8_t *e = NULL;
            EXPECT_OK(tc_cursor_u16be(&c, &el));
            EXPECT_OK(tc_cursor_view(&c, el, &e));
            if (e == NULL)
                break;
            struct tc_audit_event ev;
            EXPECT_OK(tc_audit_event_decode(e, el, &ev));
            uint8_t lh[H];
            EXPECT_OK(tc_merkle_leaf_hash(e, el, lh));
            EXPECT_MEM(lh, H, leaves + (got + i) * H, H);
        }
        EXPECT_OK(tc_cursor_expect_end(&c));
        free(bundle);
        got += w;
    }
    EXPECT_EQ_U(got, N);

    /* The leaf hashes reproduce the signed root. */
    struct tc_merkle_tree t;
    tc_merkle_init(&t);
    for (size_t i = 0; i < N; i++)
        EXPECT_OK(tc_merkle_append(&t, leaves + i * H));
    uint8_t root[H];
    EXPECT_OK(tc_merkle_root(&t, N, root));
    EXPECT_MEM(root, H, cp.root, H);

    /* Level-1 hashes are the MTH of full level-0 tiles; level 2 of level 1. */
    uint8_t *l1 = read_all(out, "tile/1/000", &len);
    EXPECT_EQ_U(len, WIDTH * H);
    for (unsigned i = 0; l1 && i < WIDTH; i += 51) {
        uint8_t h[H];
        mth_of(leaves + (size_t)i * WIDTH * H, WIDTH, h);
        EXPECT_MEM(l1 + (size_t)i * H, H, h, H);
    }
    uint8_t *l1p = read_all(out, "tile/1/001.p/1", &len);
    EXPECT_EQ_U(len, H);
    uint8_t h[H];
    mth_of(leaves + (size_t)256 * WIDTH * H, WIDTH, h);
    if (l1p)
        EXPECT_MEM(l1p, H, h, H);
    uint8_t *l2 = read_all(out, "tile/2/000.p/1", &len);
    EXPECT_EQ_U(len, H);
    if (l1 && l2) {
        mth_of(l1, WIDTH, h);
        EXPECT_MEM(l2, H, h, H);
    }
    free(l1);
    free(l1p);
    free(l2);
    tc_merkle_free(&t);
    tc_signer_soft_free(&signer);
    test_rmtree(dir);
}

static void set_mtime_zero(const char *dir, const char *rel)
{
    char p[512];
    (void)snprintf(p, sizeof p, "%s/%s", dir, rel);
    const struct timespec ts[2] = {{0, 0}, {0, 0}};
    EXPECT(utimensat(AT_FDCWD, p, ts, 0) == 0);
}

static bool mtime_zero(const char *dir, const char *rel)
{
    char p[512];
    struct stat st;
    (void)snprintf(p, sizeof p, "%s/%s", dir, rel);
    return stat(p, &st) == 0 && st.st_mtim.tv_sec == 0;
}

/* A re-export writes only new, partial or differing files: full tiles and
 * bundles already holding the right bytes are left alone; a full tile with
 * other bytes (a directory from another log, damage) is rewritten. */
static void test_reexport(void)
{
    char dir[64], out[128];
    struct tc_audit_log *log = tiles_log(dir, out);
    if (!log)
        return;
    struct tc_signer signer;
    EXPECT_OK(tc_signer_soft_generate(TC_SIG_ED25519, &signer));
    static uint8_t evs[600][TC_AUDIT_EVENT_MAX];
    static size_t lens[600];
    static const uint8_t *ptrs[600];
    for (unsigned j = 0; j < 600; j++) {
        lens[j] = test_event(evs[j], 4, j, j);
        ptrs[j] = evs[j];
    }
    uint8_t note[TC_NOTE_MAX];
    size_t nl = 0;
    EXPECT_OK(tc_audit_log_append(log, ptrs, lens, 520, NULL));
    EXPECT_OK(tc_audit_log_checkpoint(log, &signer, note, sizeof note, &nl));
    EXPECT_OK(tc_audit_export_tiles(log, out));
    const char *full[] = {"tile/0/000", "tile/0/001", "tile/entries/000", "tile/entries/001"};
    for (size_t i = 0; i < TC_ARRAY_LEN(full); i++)
        set_mtime_zero(out, full[i]);
    set_mtime_zero(out, "tile/0/002.p/8");
    set_mtime_zero(out, "checkpoint");
    /* Damage one full tile (same size). */
    size_t len = 0;
    uint8_t *good = read_all(out, "tile/0/001", &len);
    EXPECT_EQ_U(len, WIDTH * H);
    if (good != NULL) {
        char p[512];
        (void)snprintf(p, sizeof p, "%s/tile/0/001", out);
        FILE *f = fopen(p, "r+b");
        EXPECT(f != NULL);
        if (f != NULL) {
            EXPECT(fseek(f, 100, SEEK_SET) == 0);
            EXPECT(fputc(good[100] ^ 0x01, f) != EOF);
            fclose(f);
        }
        set_mtime_zero(out, "tile/0/001");
    }
    EXPECT_OK(tc_audit_log_append(log, ptrs + 520, lens + 520, 80, NULL));
    EXPECT_OK(tc_audit_log_checkpoint(log, &signer, note, sizeof note, &nl));
    EXPECT_OK(tc_audit_export_tiles(log, out));
    tc_audit_log_close(log);
    EXPECT(mtime_zero(out, "tile/0/000"));
    EXPECT(mtime_zero(out, "tile/entries/000"));
    EXPECT(mtime_zero(out, "tile/entries/001"));
    EXPECT(!mtime_zero(out, "tile/0/001")); /* rewritten: it was damaged */
    uint8_t *back = read_all(out, "tile/0/001", &len);
    if (good != NULL && back != NULL)
        EXPECT_MEM(back, len, good, (size_t)WIDTH * H);
    EXPECT(!mtime_zero(out, "checkpoint"));
    EXPECT(exists(out, "tile/0/002.p/88"));
    EXPECT(!exists(out, "tile/0/003"));
    uint8_t *cpf = read_all(out, "checkpoint", &len);
    EXPECT_MEM(cpf, len, note, nl);
    free(cpf);
    free(good);
    free(back);
    tc_signer_soft_free(&signer);
    test_rmtree(dir);
}

static const struct tc_test_case cases[] = {
    {"tile paths", test_tile_paths},
    {"export reproduces the signed root", test_export},
    {"re-export writes only what changed", test_reexport},
};

TC_TEST_MAIN("audit-tiles", cases)
