/*
 * Emulated cards for the line: images made as an SE vendor ships them, and a
 * card source over them.
 *
 * Must never: leave a torn image behind a crash. Images are created through
 * a temporary file, fsync'd, then linked into place and the directory
 * fsync'd (tc_se_create); the cards commit every NVM write with fdatasync
 * into the image's alternate slot (docs/se.md), so a crash at any moment
 * leaves the last committed state.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <trustchain/pki.h>
#include <trustchain/se.h>

#include "internal.h"

#define EMU_PATH_MAX 4096

tc_err tc_station_emulated_eid(const char *eid_prefix, size_t index, char out[static 33])
{
    TC_GUARD(tc_pki_eid_prefix_check(eid_prefix));
    size_t pl = strlen(eid_prefix);
    char digits[31];
    int n = snprintf(digits, sizeof digits, "%s%0*zu", eid_prefix, (int)(30 - pl), index);
    TC_ENSURE_MSG(n == 30, TC_ERR_RANGE, "card index %zu does not fit the EID after prefix %s",
                  index, eid_prefix);
    return tc_pki_eid_complete(digits, out);
}

static tc_err card_path(const char *dir, size_t index, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/card-%06zu.img", dir, index);
    TC_ENSURE_MSG(n > 0 && (size_t)n < size, TC_ERR_ARG, "card directory path too long");
    return TC_OK;
}

/* card-NNNNNN.img.tmp*: the temporary file of an image whose creation a
 * crash interrupted (never the image itself, which appears only whole). */
static bool stale_name(const char *n)
{
    static const char pre[] = "card-", mid[] = ".img.tmp";
    if (strncmp(n, pre, sizeof pre - 1) != 0)
        return false;
    n += sizeof pre - 1;
    for (int i = 0; i < 6; i++, n++)
        if (*n < '0' || *n > '9')
            return false;
    return strncmp(n, mid, sizeof mid - 1) == 0;
}

static tc_err remove_stale(const char *dir)
{
    DIR *d = opendir(dir);
    TC_ENSURE_MSG(d != NULL, TC_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    tc_err ret = TC_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!stale_name(e->d_name))
            continue;
        char path[EMU_PATH_MAX];
        int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (n <= 0 || (size_t)n >= sizeof path || (unlink(path) != 0 && errno != ENOENT)) {
            ret = TC_FAIL(TC_ERR_IO, "cannot remove the stale %s", e->d_name);
            break;
        }
    }
    (void)closedir(d);
    return ret;
}

tc_err tc_station_emulate_prepare(const char *dir, size_t count, const char *eid_prefix,
                                  uint8_t kvn, const uint8_t *enc, const uint8_t *mac,
                                  const uint8_t *dek, size_t key_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(dir != NULL && enc != NULL && mac != NULL && dek != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(key_len == 16 || key_len == 24 || key_len == 32, TC_ERR_ARG,
                  "transport keys must be 16, 24 or 32 bytes");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return TC_FAIL(TC_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    TC_GUARD(remove_stale(dir));
    struct tc_se_params p;
    tc_se_params_default(&p);
    p.kvn = kvn;
    p.key_len = key_len;
    memcpy(p.key_enc, enc, key_len);
    memcpy(p.key_mac, mac, key_len);
    memcpy(p.key_dek, dek, key_len);
    for (size_t i = 0; i < count; i++) {
        char path[EMU_PATH_MAX], eid[33];
        TC_TRY(card_path(dir, i, path, sizeof path));
        struct stat sb;
        if (stat(path, &sb) == 0)
            continue;
        TC_TRY(tc_station_emulated_eid(eid_prefix, i, eid));
        TC_TRY(tc_pki_eid_to_bcd(eid, p.eid));
        /* SGP.22-style cards: KDD = the last 10 bytes of the EID. */
        memcpy(p.kdd, p.eid + TC_SE_EID_LEN - TC_SE_KDD_LEN, TC_SE_KDD_LEN);
        TC_TRY(tc_se_create(path, &p, 0));
    }
    ret = TC_OK;
out:
    tc_se_params_wipe(&p);
    return ret;
}

struct emu {
    char dir[EMU_PATH_MAX];
};

static tc_err emu_open(void *arg, size_t index, struct tc_transport *t)
{
    struct emu *e = arg;
    char path[EMU_PATH_MAX];
    TC_GUARD(card_path(e->dir, index, path, sizeof path));
    /* Every NVM commit fdatasync'd: an image is as durable as the log that
     * records what the line did to the card. */
    return tc_se_transport_open(path, 0, t);
}

tc_err tc_station_emulate_cards(const char *dir, size_t count, struct tc_station_cards *out)
{
    TC_ENSURE(dir != NULL && out != NULL, TC_ERR_ARG);
    struct emu *e = calloc(1, sizeof *e);
    TC_ENSURE(e != NULL, TC_ERR_NOMEM);
    int n = snprintf(e->dir, sizeof e->dir, "%s", dir);
    if (n <= 0 || (size_t)n >= sizeof e->dir) {
        free(e);
        return TC_FAIL(TC_ERR_ARG, "card directory path too long");
    }
    out->open = emu_open;
    out->arg = e;
    out->count = count;
    return TC_OK;
}

void tc_station_emulate_cards_free(struct tc_station_cards *c)
{
    if (c == NULL)
        return;
    free(c->arg);
    c->arg = NULL;
    c->open = NULL;
}
