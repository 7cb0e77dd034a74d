/*
 * The card's non-volatile memory: one image file holding two slots (double
 * buffering). A commit writes the whole NVM into the slot that is NOT
 * current, with a generation one higher and a SHA-256 over header and data,
 * then syncs. Loading takes the intact slot with the higher generation, so a
 * power loss at any write leaves exactly the old state (the new slot does not
 * verify) or the new one (it does).
 *
 * Every chunk write and the sync are numbered "write points"; the tearing
 * test makes any one of them the moment power is lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "se_internal.h"

_Static_assert(SE_SLOT_SIZE % SE_IMG_CHUNK == 0, "slots are whole chunks");

static const uint8_t factory_isd_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t identity_aid[] = {TC_SE_IDENTITY_AID};
/* The example EID of GSMA SGP.02 / SGP.22 (32 digits, 16 bytes). */
static const uint8_t example_eid[TC_SE_EID_LEN] = {0x89, 0x04, 0x90, 0x32, 0x12, 0x34, 0x51, 0x23,
                                                   0x45, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x35};

void tc_se_params_default(struct tc_se_params *p)
{
    memset(p, 0, sizeof *p);
    memcpy(p->eid, example_eid, sizeof example_eid);
    memcpy(p->isd_aid, factory_isd_aid, sizeof factory_isd_aid);
    p->isd_aid_len = sizeof factory_isd_aid;
    p->kvn = 0x30;
    p->key_len = 16;
    for (uint8_t i = 0; i < 16; i++) {
        /* GP test keys 404142...4F (GP Card Specification test keyset). */
        p->key_enc[i] = (uint8_t)(0x40u + i);
        p->key_mac[i] = (uint8_t)(0x40u + i);
        p->key_dek[i] = (uint8_t)(0x40u + i);
    }
    p->i_param = 0x70;
    memcpy(p->kdd, p->eid + TC_SE_EID_LEN - TC_SE_KDD_LEN, TC_SE_KDD_LEN);
    p->seq = 0;
}

void tc_se_params_wipe(struct tc_se_params *p)
{
    if (p == NULL)
        return;
    tc_memzero(p->key_enc, sizeof p->key_enc);
    tc_memzero(p->key_mac, sizeof p->key_mac);
    tc_memzero(p->key_dek, sizeof p->key_dek);
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void se_nvm_init(struct se_nvm *n, const struct tc_se_params *p)
{
    memset(n, 0, sizeof *n);
    n->life_cycle = TC_SE_LC_OP_READY;
    n->i_param = p->i_param;
    n->isd_aid_len = (uint8_t)p->isd_aid_len;
    memcpy(n->isd_aid, p->isd_aid, p->isd_aid_len);
    memcpy(n->eid, p->eid, TC_SE_EID_LEN);
    memcpy(n->kdd, p->kdd, TC_SE_KDD_LEN);
    /* Issuer identification number: the EID's issuer prefix; card image
     * number: the EID. Both can be personalised with STORE DATA. */
    n->iin_len = 4;
    memcpy(n->iin, p->eid, 4);
    n->cin_len = TC_SE_EID_LEN;
    memcpy(n->cin, p->eid, TC_SE_EID_LEN);
    /* CPLC (GET DATA 9F7F): fabricator, IC type, OS id "TC", OS release
     * date/level, then the IC serial number from the EID. */
    uint8_t *c = n->cplc;
    put16(c + 0, 0x5443);                          /* IC fabricator */
    put16(c + 2, 0x0001);                          /* IC type */
    put16(c + 4, 0x5443);                          /* operating system identifier */
    put16(c + 6, 0x6331);                          /* OS release date (YDDD) */
    put16(c + 8, 0x0100);                          /* OS release level */
    put16(c + 10, 0x6331);                         /* IC fabrication date */
    memcpy(c + 12, p->eid + TC_SE_EID_LEN - 4, 4); /* IC serial number */
    put16(c + 16, 0x0001);                         /* IC batch identifier */
    /* module fabricator .. personaliser fields stay zero (not performed) */
    n->seq = p->seq;
    struct se_keyset *k = &n->keysets[0];
    k->kvn = p->kvn;
    k->key_len = (uint8_t)p->key_len;
    memcpy(k->enc, p->key_enc, p->key_len);
    memcpy(k->mac, p->key_mac, p->key_len);
    memcpy(k->dek, p->key_dek, p->key_len);
    n->app.present = 1;
    n->app.state = TC_SE_APP_SELECTABLE;
    n->app.aid_len = (uint8_t)sizeof identity_aid;
    memcpy(n->app.aid, identity_aid, sizeof identity_aid);
}

static bool lc_valid(uint8_t lc)
{
    switch (lc) {
    case TC_SE_LC_OP_READY:
    case TC_SE_LC_INITIALIZED:
    case TC_SE_LC_SECURED:
    case TC_SE_LC_CARD_LOCKED:
    case TC_SE_LC_TERMINATED:
        return true;
    default:
        return false;
    }
}

static bool app_state_valid(uint8_t s)
{
    uint8_t base = (uint8_t)(s & 0x7Fu);
    return base == TC_SE_APP_INSTALLED || base == TC_SE_APP_SELECTABLE ||
           base == TC_SE_APP_PERSONALIZED;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

tc_err se_nvm_validate(const struct se_nvm *n)
{
    TC_ENSURE_MSG(lc_valid(n->life_cycle), TC_ERR_FORMAT, "image: bad life cycle %02X",
                  n->life_cycle);
    TC_ENSURE_MSG(n->isd_aid_len >= TC_SE_AID_MIN && n->isd_aid_len <= TC_SE_AID_MAX, TC_ERR_FORMAT,
                  "image: bad ISD AID length %u", n->isd_aid_len);
    TC_ENSURE_MSG(n->iin_len <= TC_SE_MAX_IIN && n->cin_len <= TC_SE_MAX_CIN, TC_ERR_FORMAT,
                  "image: bad IIN/CIN length");
    TC_ENSURE_MSG(n->seq <= TC_SE_SEQ_MAX, TC_ERR_FORMAT, "image: sequence counter too large");
    for (size_t i = 0; i < TC_SE_MAX_KEYSETS; i++) {
        const struct se_keyset *k = &n->keysets[i];
        if (k->kvn == 0) {
            TC_ENSURE_MSG(all_zero((const uint8_t *)k, sizeof *k), TC_ERR_FORMAT,
                          "image: empty keyset slot %zu not blank", i);
            continue;
        }
        TC_ENSURE_MSG(k->kvn <= 0x7F && tc_aes_key_len_ok(k->key_len), TC_ERR_FORMAT,
                      "image: keyset slot %zu malformed", i);
        for (size_t j = 0; j < i; j++)
            TC_ENSURE_MSG(n->keysets[j].kvn != k->kvn, TC_ERR_FORMAT,
                          "image: KVN %02X appears twice", k->kvn);
    }
    TC_ENSURE_MSG(n->profile_len <= TC_SE_MAX_PROFILE, TC_ERR_FORMAT, "image: profile too long");
    if (n->profile_len > 0)
        TC_ENSURE_MSG(tc_tlv_validate(n->profile, n->profile_len) == TC_OK, TC_ERR_FORMAT,
                      "image: profile data is not BER-TLV");
    const struct se_applet *a = &n->app;
    TC_ENSURE_MSG(a->present <= 1 && a->has_key <= 1, TC_ERR_FORMAT, "image: bad applet flags");
    TC_ENSURE_MSG(a->aid_len >= TC_SE_AID_MIN && a->aid_len <= TC_SE_AID_MAX, TC_ERR_FORMAT,
                  "image: bad applet AID length");
    TC_ENSURE_MSG(a->cert_len <= TC_SE_MAX_CERT, TC_ERR_FORMAT, "image: certificate too long");
    if (a->present)
        TC_ENSURE_MSG(app_state_valid(a->state), TC_ERR_FORMAT, "image: bad applet state");
    TC_ENSURE_MSG(a->has_key || a->cert_len == 0, TC_ERR_FORMAT,
                  "image: certificate without a key pair");
    TC_ENSURE_MSG(a->has_pending <= 1 && (a->has_key || !a->has_pending), TC_ERR_FORMAT,
                  "image: renewal key pair without a key pair");
    return TC_OK;
}

/* ------------------------------------------------------------------ slots */

static tc_err slot_build(const struct se_nvm *n, uint64_t generation, uint8_t *slot)
{
    struct se_slot_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, SE_IMG_MAGIC, sizeof h.magic);
    h.version = SE_IMG_VERSION;
    h.nvm_size = (uint32_t)sizeof(struct se_nvm);
    h.generation = generation;
    memset(slot, 0, SE_SLOT_SIZE);
    memcpy(slot, &h, sizeof h);
    memcpy(slot + sizeof h, n, sizeof *n);
    const uint8_t *parts[] = {slot};
    size_t lens[] = {sizeof h + sizeof *n};
    return se_sha256(parts, lens, 1, slot + sizeof h + sizeof *n);
}

/* TC_OK with the slot's NVM and generation when it is intact. */
static tc_err slot_parse(const uint8_t *slot, struct se_nvm *n, uint64_t *generation)
{
    struct se_slot_header h;
    memcpy(&h, slot, sizeof h);
    TC_ENSURE_MSG(tc_ct_equal(h.magic, SE_IMG_MAGIC, sizeof h.magic), TC_ERR_FORMAT,
                  "image slot: bad magic");
    TC_ENSURE_MSG(h.version == SE_IMG_VERSION && h.nvm_size == sizeof(struct se_nvm), TC_ERR_FORMAT,
                  "image slot: unsupported version or size");
    uint8_t digest[32];
    const uint8_t *parts[] = {slot};
    size_t lens[] = {sizeof h + sizeof *n};
    TC_GUARD(se_sha256(parts, lens, 1, digest));
    TC_ENSURE_MSG(tc_ct_equal(digest, slot + sizeof h + sizeof *n, sizeof digest), TC_ERR_FORMAT,
                  "image slot: checksum mismatch");
    memcpy(n, slot + sizeof h, sizeof *n);
    TC_GUARD(se_nvm_validate(n));
    *generation = h.generation;
    return TC_OK;
}

static tc_err read_full(int fd, uint8_t *p, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, p + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        TC_ENSURE_MSG(r > 0, TC_ERR_FORMAT, "image: short read at offset %lld",
                      (long long)(off + (off_t)done));
        done += (size_t)r;
    }
    return TC_OK;
}

static tc_err write_full(int fd, const uint8_t *p, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(fd, p + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        TC_ENSURE_MSG(r > 0, TC_ERR_IO, "image: write failed: %s", strerror(errno));
        done += (size_t)r;
    }
    return TC_OK;
}

tc_err se_image_read(int fd, struct se_nvm *out, uint8_t *slot_out, uint64_t *generation)
{
    tc_err ret = TC_ERR_INTERNAL;
    static _Thread_local uint8_t slot[SE_SLOT_SIZE];
    static _Thread_local struct se_nvm cand;
    bool found = false;
    uint64_t best = 0;
    for (uint8_t s = 0; s < 2; s++) {
        uint64_t gen = 0;
        if (read_full(fd, slot, SE_SLOT_SIZE, (off_t)s * (off_t)SE_SLOT_SIZE) != TC_OK)
            continue;
        if (slot_parse(slot, &cand, &gen) != TC_OK)
            continue;
        if (!found || gen > best) {
            memcpy(out, &cand, sizeof cand);
            *slot_out = s;
            best = gen;
            found = true;
        }
    }
    tc_error_clear();
    TC_CHECK_MSG(found, TC_ERR_FORMAT, "card image: no intact copy of the card state");
    *generation = best;
    ret = TC_OK;
out:
    tc_memzero(slot, sizeof slot);
    tc_memzero(&cand, sizeof cand);
    return ret;
}

tc_err se_nvm_load(struct tc_se_card *card)
{
    if (card->fd < 0)
        return TC_OK;
    return se_image_read(card->fd, &card->nvm, &card->cur_slot, &card->generation);
}

/* One write point: the tearing hook may make it the moment power is lost
 * (half the chunk reaches the file, nothing after it). */
static bool write_point(struct tc_se_card *card)
{
    uint64_t idx = card->write_points++;
    return idx == card->tear_at;
}

tc_err se_nvm_commit(struct tc_se_card *card)
{
    tc_err ret = TC_ERR_INTERNAL;
    static _Thread_local uint8_t slot[SE_SLOT_SIZE];
    if (card->fd < 0) {
        card->generation++;
        return TC_OK;
    }
    uint8_t target = (uint8_t)(card->cur_slot ^ 1u);
    uint64_t gen = card->generation + 1;
    off_t base = (off_t)target * (off_t)SE_SLOT_SIZE;
    TC_TRY(slot_build(&card->nvm, gen, slot));
    if (card->tear_at == UINT64_MAX) {
        /* No tearing armed: the same bytes in one system call. A real power
         * loss inside it is covered the same way: the slot fails its
         * checksum and the other slot stays current. */
        card->write_points += SE_SLOT_SIZE / SE_IMG_CHUNK;
        TC_TRY(write_full(card->fd, slot, SE_SLOT_SIZE, base));
    }
    for (size_t off = 0; card->tear_at != UINT64_MAX && off < SE_SLOT_SIZE; off += SE_IMG_CHUNK) {
        if (write_point(card)) {
            /* Torn: part of this chunk is written, then power is gone. */
            (void)write_full(card->fd, slot + off, SE_IMG_CHUNK / 2, base + (off_t)off);
            TC_CHECK_MSG(false, TC_ERR_IO, "card image: power lost in write point %llu",
                         (unsigned long long)(card->write_points - 1));
        }
        TC_TRY(write_full(card->fd, slot + off, SE_IMG_CHUNK, base + (off_t)off));
    }
    if (write_point(card))
        TC_CHECK_MSG(false, TC_ERR_IO, "card image: power lost before sync (write point %llu)",
                     (unsigned long long)(card->write_points - 1));
    if ((card->flags & TC_SE_OPEN_NO_FSYNC) == 0)
        TC_CHECK_MSG(fdatasync(card->fd) == 0, TC_ERR_IO, "card image: sync failed: %s",
                     strerror(errno));
    card->cur_slot = target;
    card->generation = gen;
    ret = TC_OK;
out:
    tc_memzero(slot, sizeof slot);
    if (ret != TC_OK)
        card->ram.mute = 1;
    return ret;
}

/* ------------------------------------------------------------------ create */

static tc_err fsync_dir_of(const char *path)
{
    char dir[4096];
    size_t n = strlen(path);
    TC_ENSURE_MSG(n < sizeof dir, TC_ERR_ARG, "path too long");
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        dir[0] = '.';
        dir[1] = '\0';
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    TC_ENSURE_MSG(fd >= 0, TC_ERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    (void)close(fd);
    TC_ENSURE_MSG(rc == 0, TC_ERR_IO, "cannot sync directory %s: %s", dir, strerror(errno));
    return TC_OK;
}

static tc_err params_check(const struct tc_se_params *p)
{
    TC_ENSURE_MSG(p->isd_aid_len >= TC_SE_AID_MIN && p->isd_aid_len <= TC_SE_AID_MAX, TC_ERR_RANGE,
                  "ISD AID must be %u to %u bytes", TC_SE_AID_MIN, TC_SE_AID_MAX);
    TC_ENSURE_MSG(p->kvn >= 1 && p->kvn <= 0x7F, TC_ERR_RANGE,
                  "key version number must be 0x01 to 0x7F");
    TC_ENSURE_MSG(tc_aes_key_len_ok(p->key_len), TC_ERR_RANGE,
                  "keys must be 16, 24 or 32 bytes (AES-128/192/256)");
    TC_ENSURE_MSG(p->seq <= TC_SE_SEQ_MAX, TC_ERR_RANGE, "sequence counter must be <= 0xFFFFFF");
    /* GP Amendment D §5.1: i-parameter b8 and b4-b2 are RFU. */
    TC_ENSURE_MSG((p->i_param & 0x8Eu) == 0, TC_ERR_RANGE,
                  "i-parameter %02X sets RFU bits (allowed: 01 S16, 10 pseudo-random, 20 R-MAC, "
                  "40 R-ENC)",
                  p->i_param);
    TC_ENSURE_MSG((p->i_param & 0x40u) == 0 || (p->i_param & 0x20u) != 0, TC_ERR_RANGE,
                  "i-parameter: R-ENC support requires R-MAC support");
    return TC_OK;
}

tc_err tc_se_create(const char *path, const struct tc_se_params *p, unsigned flags)
{
    tc_err ret = TC_ERR_INTERNAL;
    static _Thread_local struct se_nvm n;
    static _Thread_local uint8_t img[SE_IMAGE_SIZE];
    char tmp[4096];
    int fd = -1;
    bool tmp_made = false;
    TC_CHECK(path != NULL && p != NULL, TC_ERR_ARG);
    TC_TRY(params_check(p));
    TC_CHECK_MSG(strlen(path) + 16 < sizeof tmp, TC_ERR_ARG, "path too long");
    struct stat st;
    if ((flags & TC_SE_CREATE_FORCE) == 0)
        TC_CHECK_MSG(stat(path, &st) != 0, TC_ERR_STATE, "%s exists (use --force to replace it)",
                     path);
    (void)snprintf(tmp, sizeof tmp, "%s.tmpXXXXXX", path);
    fd = mkstemp(tmp);
    TC_CHECK_MSG(fd >= 0, TC_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    tmp_made = true;
    TC_CHECK_MSG(fchmod(fd, 0600) == 0, TC_ERR_IO, "cannot set mode on %s", tmp);
    se_nvm_init(&n, p);
    TC_TRY(se_nvm_validate(&n));
    memset(img, 0, sizeof img);
    TC_TRY(slot_build(&n, 1, img));
    TC_TRY(write_full(fd, img, sizeof img, 0));
    TC_CHECK_MSG(fsync(fd) == 0, TC_ERR_IO, "cannot sync %s: %s", tmp, strerror(errno));
    TC_CHECK_MSG(close(fd) == 0, TC_ERR_IO, "cannot close %s", tmp);
    fd = -1;
    if (flags & TC_SE_CREATE_FORCE) {
        TC_CHECK_MSG(rename(tmp, path) == 0, TC_ERR_IO, "cannot rename to %s: %s", path,
                     strerror(errno));
    } else {
        /* link() refuses an existing target: no race with another creator. */
        TC_CHECK_MSG(link(tmp, path) == 0, errno == EEXIST ? TC_ERR_STATE : TC_ERR_IO,
                     "cannot create %s: %s", path, strerror(errno));
        (void)unlink(tmp);
    }
    tmp_made = false;
    TC_TRY(fsync_dir_of(path));
    ret = TC_OK;
out:
    if (fd >= 0)
        (void)close(fd);
    if (tmp_made)
        (void)unlink(tmp);
    tc_memzero(&n, sizeof n);
    tc_memzero(img, sizeof img);
    return ret;
}
