/*
 * C2SP tlog-tiles export (c2sp.org/tlog-tiles): the log as static files a
 * third-party verifier can fetch. Tiles are read straight from the
 * level-indexed tree: hash i of tile n at tile level L is the full subtree
 * hash at tree level 8L, index n*256 + i.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/internal.h"

#define TILE_WIDTH  256u
#define TILE_HEIGHT 8u

tc_err tc_audit_tile_path(unsigned level, uint64_t index, unsigned width, char *out,
                          size_t out_size)
{
    TC_ENSURE(out != NULL && out_size > 0, TC_ERR_ARG);
    /* <L> is a decimal level 0..63; entry bundles live under "entries". */
    TC_ENSURE(level <= 63 || level == TC_TILE_ENTRIES, TC_ERR_ARG);
    TC_ENSURE(width >= 1 && width <= TILE_WIDTH, TC_ERR_ARG);
    struct tc_buf b;
    tc_buf_init_fixed(&b, (uint8_t *)out, out_size - 1);
    char tmp[32];
    int n = level == TC_TILE_ENTRIES ? snprintf(tmp, sizeof tmp, "tile/entries/")
                                     : snprintf(tmp, sizeof tmp, "tile/%u/", level);
    tc_buf_put(&b, tmp, (size_t)n);
    /* <N>: zero-padded 3-digit path elements, all but the last prefixed
     * with "x" (1234067 -> x001/x234/067). */
    uint64_t groups[8];
    size_t ng = 0;
    uint64_t v = index;
    do {
        groups[ng++] = v % 1000;
        v /= 1000;
    } while (v > 0);
    for (size_t i = ng; i-- > 0;) {
        n = snprintf(tmp, sizeof tmp, i > 0 ? "x%03u/" : "%03u", (unsigned)groups[i]);
        tc_buf_put(&b, tmp, (size_t)n);
    }
    /* Partial tiles: ".p/<W>" with W in 1..255. */
    if (width < TILE_WIDTH) {
        n = snprintf(tmp, sizeof tmp, ".p/%u", width);
        tc_buf_put(&b, tmp, (size_t)n);
    }
    TC_GUARD(tc_buf_status(&b));
    out[b.len] = '\0';
    return TC_OK;
}

static tc_err mkdirs(char *path)
{
    /* Create every parent directory of path. */
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0755);
        int e = errno;
        *p = '/';
        TC_ENSURE_MSG(rc == 0 || e == EEXIST, TC_ERR_IO, "mkdir for %s failed", path);
    }
    return TC_OK;
}

/* Whether the file at path holds exactly data (false on any doubt). */
static bool same_file(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool same = false;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
        (uint64_t)st.st_size != len || (buf = malloc(len ? len : 1)) == NULL)
        goto out;
    size_t off = 0;
    while (off < len) {
        ssize_t r = read(fd, buf + off, len - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            goto out;
        off += (size_t)r;
    }
    same = memcmp(buf, data, len) == 0;
out:
    free(buf);
    close(fd);
    return same;
}

/*
 * tlog-tiles: a full tile (and a full entry bundle) never changes once the
 * tree has its leaves, so a re-export leaves one that already holds exactly
 * these bytes alone (no write, same modification time for caches and
 * mirrors) and writes only new, partial or differing files. The bytes are
 * always recomputed and compared: a directory exported from another log is
 * overwritten, not trusted.
 */
static tc_err write_file(const char *dir, const char *rel, const uint8_t *data, size_t len,
                         bool immutable)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", dir, rel);
    TC_ENSURE(n > 0 && (size_t)n < sizeof path, TC_ERR_ARG);
    if (immutable && same_file(path, data, len))
        return TC_OK;
    TC_GUARD(mkdirs(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    TC_ENSURE_MSG(fd >= 0, TC_ERR_IO, "cannot create %s", path);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return TC_FAIL(TC_ERR_IO, "write %s failed", path);
        }
        off += (size_t)w;
    }
    TC_ENSURE_MSG(close(fd) == 0, TC_ERR_IO, "close %s failed", path);
    return TC_OK;
}

static tc_err export_hash_tiles(const struct tc_merkle_tree *t, uint64_t size, const char *dir)
{
    uint8_t tile[TILE_WIDTH * TC_AUDIT_HASH_LEN];
    char rel[128];
    for (unsigned L = 0; L * TILE_HEIGHT < TC_MERKLE_LEVELS - 1; L++) {
        unsigned level = L * TILE_HEIGHT;
        /* Hashes at this tile level: full subtrees of 256^L leaves. */
        uint64_t count = size >> level;
        if (count == 0)
            break;
        for (uint64_t n = 0; n * TILE_WIDTH < count; n++) {
            uint64_t left = count - n * TILE_WIDTH;
            unsigned width = left >= TILE_WIDTH ? TILE_WIDTH : (unsigned)left;
            for (unsigned i = 0; i < width; i++)
                TC_GUARD(tc_merkle_node(t, level, n * TILE_WIDTH + i,
                                        tile + (size_t)i * TC_AUDIT_HASH_LEN));
            TC_GUARD(tc_audit_tile_path(L, n, width, rel, sizeof rel));
            TC_GUARD(
                write_file(dir, rel, tile, (size_t)width * TC_AUDIT_HASH_LEN, width == TILE_WIDTH));
        }
    }
    return TC_OK;
}

static tc_err export_entries(struct tc_audit_store *s, uint64_t size, const char *dir)
{
    tc_err ret = TC_ERR_INTERNAL;
    /* Entry bundles: big-endian uint16 length-prefixed entries. */
    size_t cap = TILE_WIDTH * (2 + TC_AUDIT_EVENT_MAX);
    uint8_t *bundle = malloc(cap);
    TC_ENSURE(bundle != NULL, TC_ERR_NOMEM);
    char rel[128];
    for (uint64_t n = 0; n * TILE_WIDTH < size; n++) {
        uint64_t left = size - n * TILE_WIDTH;
        unsigned width = left >= TILE_WIDTH ? TILE_WIDTH : (unsigned)left;
        size_t len = 0;
        for (unsigned i = 0; i < width; i++) {
            size_t el = 0;
            TC_TRY(s->ops->get_event(s->ctx, n * TILE_WIDTH + i, bundle + len + 2, cap - len - 2,
                                     &el, NULL));
            TC_CHECK(el <= 0xFFFF, TC_ERR_RANGE);
            bundle[len] = (uint8_t)(el >> 8);
            bundle[len + 1] = (uint8_t)el;
            len += 2 + el;
        }
        TC_TRY(tc_audit_tile_path(TC_TILE_ENTRIES, n, width, rel, sizeof rel));
        TC_TRY(write_file(dir, rel, bundle, len, width == TILE_WIDTH));
    }
    ret = TC_OK;
out:
    free(bundle);
    return ret;
}

tc_err tc_audit_export_tiles(struct tc_audit_log *log, const char *dir)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(log != NULL && dir != NULL, TC_ERR_ARG);
    uint8_t note[TC_NOTE_MAX];
    size_t note_len = 0, text_len = 0;
    uint64_t stored_size = 0;
    struct tc_checkpoint cp;
    struct tc_audit_store *s = tc_audit_log_store_lock(log);
    const struct tc_merkle_tree *t = NULL;
    TC_TRY(s->ops->last_checkpoint(s->ctx, &stored_size, note, sizeof note, &note_len));
    TC_TRY(tc_note_text_len(note, note_len, &text_len));
    TC_TRY(tc_checkpoint_parse(note, text_len, &cp));
    TC_CHECK_MSG(cp.size == stored_size, TC_ERR_VERIFY, "stored checkpoint has the wrong size");
    t = tc_audit_log_tree_rdlock(log);
    uint8_t root[TC_AUDIT_HASH_LEN];
    TC_TRY(tc_merkle_root(t, cp.size, root));
    TC_CHECK_MSG(memcmp(root, cp.root, sizeof root) == 0, TC_ERR_VERIFY,
                 "latest checkpoint does not match the tree");
    char base[4096];
    int n = snprintf(base, sizeof base, "%s/", dir);
    TC_CHECK(n > 0 && (size_t)n < sizeof base, TC_ERR_ARG);
    TC_TRY(mkdirs(base));
    TC_TRY(export_hash_tiles(t, cp.size, dir));
    TC_TRY(export_entries(s, cp.size, dir));
    /* The checkpoint last: a reader that sees it finds every tile. */
    TC_TRY(write_file(dir, "checkpoint", note, note_len, false));
    ret = TC_OK;
out:
    if (t)
        tc_audit_log_tree_unlock(log);
    tc_audit_log_store_unlock(log);
    return ret;
}
