/*
 * Secure element emulator figures:
 *   - plain APDUs per second through the in-process card (GET DATA IIN on a
 *     memory card: decode, dispatch, answer), beside the codec work alone
 *     (decode the command, encode the TLV answer); target >= 200,000/s;
 *   - SCP03-wrapped STORE DATA per second at level 33 (host wraps, card
 *     unwraps, stores a 200-byte object, wraps its answer, host unwraps),
 *     beside the raw OpenSSL work both ends cannot avoid: 4 ICVs (one AES
 *     block each), AES-CBC over the 208-byte data both ways, 2 CMACs over the
 *     command and 2 over the response; on a memory card and on an image
 *     (where each STORE DATA is also an NVM commit, without fsync);
 *   - NVM commits per second, with and without fsync, beside writing the
 *     same bytes with pwrite (and fdatasync) directly;
 *   - RAM per card: sizeof(struct tc_se_card) and the resident memory that
 *     10,000 open memory cards take.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <trustchain/scp03.h>
#include <trustchain/se.h>

#include "bench.h"
#include "se/se_internal.h"

static uint8_t g_resp[TC_SE_MAX_RESPONSE];

/* ------------------------------------------------------------------ plain APDUs */

static const uint8_t get_iin[] = {0x80, 0xCA, 0x00, 0x42, 0x00};

static int plain_op(void *arg)
{
    size_t n = 0;
    if (tc_se_process(arg, get_iin, sizeof get_iin, g_resp, sizeof g_resp, &n) != TC_OK || n != 8)
        return 1;
    bench_consume(g_resp, n);
    return 0;
}

static int codec_floor(void *arg)
{
    (void)arg;
    struct tc_apdu a;
    struct tc_buf b;
    static const uint8_t iin[4] = {0x89, 0x04, 0x90, 0x32};
    if (tc_apdu_decode(get_iin, sizeof get_iin, &a) != TC_OK)
        return 1;
    tc_buf_init_fixed(&b, g_resp, sizeof g_resp);
    tc_tlv_put(&b, 0x42, iin, sizeof iin);
    tc_buf_put_u16be(&b, 0x9000);
    bench_consume(g_resp, b.len);
    return tc_buf_status(&b) == TC_OK ? 0 : 1;
}

/* ------------------------------------------------------------------ wrapped STORE DATA */

struct wrapped {
    struct tc_se_card *card;
    struct tc_transport t;
    struct tc_scp03_mem_provider mp;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_host h;
    uint8_t data[204];
};

static int store_op(void *arg)
{
    struct wrapped *w = arg;
    struct tc_apdu a = {
        .cla = 0x80, .ins = 0xE2, .p1 = 0x90, .data = w->data, .lc = sizeof w->data};
    size_t n = 0;
    uint16_t sw = 0;
    if (tc_scp03_host_transmit(&w->h, &a, g_resp, sizeof g_resp, &n, &sw) != TC_OK || sw != 0x9000)
        return 1;
    return 0;
}

struct raw_floor {
    EVP_CIPHER *aes;
    EVP_CIPHER_CTX *cctx;
    EVP_MAC *cmac;
    EVP_MAC_CTX *mctx;
    uint8_t key[16];
    uint8_t buf[256];
    uint8_t out[272];
};

static int raw_cmac(struct raw_floor *f, const uint8_t *p, size_t n)
{
    char cipher[] = "AES-128-CBC";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
                           OSSL_PARAM_construct_end()};
    uint8_t mac[16];
    size_t ml = 0;
    if (EVP_MAC_init(f->mctx, f->key, sizeof f->key, params) != 1 ||
        EVP_MAC_update(f->mctx, p, n) != 1 || EVP_MAC_final(f->mctx, mac, &ml, sizeof mac) != 1)
        return 1;
    bench_consume(mac, ml);
    return 0;
}

static int raw_cbc(struct raw_floor *f, int enc, size_t n)
{
    static const uint8_t iv[16] = {0};
    int l1 = 0, l2 = 0;
    if (EVP_CipherInit_ex(f->cctx, f->aes, NULL, f->key, iv, enc) != 1 ||
        EVP_CIPHER_CTX_set_padding(f->cctx, 0) != 1 ||
        EVP_CipherUpdate(f->cctx, f->out, &l1, f->buf, (int)n) != 1 ||
        EVP_CipherFinal_ex(f->cctx, f->out + l1, &l2) != 1)
        return 1;
    bench_consume(f->out, (size_t)(l1 + l2));
    return 0;
}

static int store_floor(void *arg)
{
    struct raw_floor *f = arg;
    int rc = 0;
    for (int i = 0; i < 4; i++)
        rc |= raw_cbc(f, 1, 16);             /* ICVs */
    rc |= raw_cbc(f, 1, 208);                /* host encrypts */
    rc |= raw_cbc(f, 0, 208);                /* card decrypts */
    rc |= raw_cmac(f, f->buf, 16 + 5 + 216); /* C-MAC, host and card */
    rc |= raw_cmac(f, f->buf, 16 + 5 + 216);
    rc |= raw_cmac(f, f->buf, 16 + 2); /* R-MAC, card and host */
    rc |= raw_cmac(f, f->buf, 16 + 2);
    return rc;
}

/* ------------------------------------------------------------------ NVM commits */

struct commit_arg {
    struct tc_se_card *card;
    int fd;
    bool sync;
    uint8_t slot[SE_SLOT_SIZE];
};

static int commit_op(void *arg)
{
    struct commit_arg *c = arg;
    return se_nvm_commit(c->card) == TC_OK ? 0 : 1;
}

static int write_floor(void *arg)
{
    struct commit_arg *c = arg;
    if (pwrite(c->fd, c->slot, sizeof c->slot, 0) != (ssize_t)sizeof c->slot)
        return 1;
    if (c->sync && fdatasync(c->fd) != 0)
        return 1;
    return 0;
}

/* ------------------------------------------------------------------ RAM */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int main(void)
{
    bench_init("bench_se");
    struct tc_se_params p;
    tc_se_params_default(&p);
    uint8_t atr[TC_SE_ATR_MAX];
    size_t atr_len = 0;

    struct tc_se_card *card = NULL;
    if (tc_se_open_mem(&p, &card) != TC_OK || tc_se_power_on(card, atr, sizeof atr, &atr_len))
        return 1;
    double r = bench_compare("plain APDU (GET DATA) in-process", plain_op, card,
                             "decode + TLV answer only", codec_floor, NULL);
    (void)r;
    (void)printf("  target: >= 200000 APDUs/s\n");
    tc_se_close(card);

    static struct wrapped w;
    if (tc_se_open_mem(&p, &w.card) != TC_OK || tc_se_transport(w.card, &w.t) != TC_OK)
        return 1;
    tc_scp03_mem_provider_init(&w.mp, &w.kp);
    struct tc_scp03_keyset ks;
    if (tc_scp03_keyset_set(&ks, 0x30, p.key_enc, p.key_mac, p.key_dek, 16) != TC_OK ||
        tc_scp03_mem_provider_add(&w.mp, &ks) != TC_OK)
        return 1;
    struct tc_scp03_host_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kvn = 0x30;
    cfg.level = 0x33;
    cfg.aid = p.isd_aid;
    cfg.aid_len = p.isd_aid_len;
    cfg.select = true;
    if (tc_scp03_host_open(&w.h, &w.t, &w.kp, &cfg) != TC_OK) {
        char msg[300];
        tc_error_format(msg, sizeof msg);
        fprintf(stderr, "bench_se: %s\n", msg);
        return 1;
    }
    /* DF01 81 C8 <200 bytes>: one profile object, replaced each time. */
    w.data[0] = 0xDF;
    w.data[1] = 0x01;
    w.data[2] = 0x81;
    w.data[3] = 200;
    memset(w.data + 4, 0xA5, 200);
    static struct raw_floor f;
    f.aes = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
    f.cctx = EVP_CIPHER_CTX_new();
    f.cmac = EVP_MAC_fetch(NULL, "CMAC", NULL);
    f.mctx = f.cmac ? EVP_MAC_CTX_new(f.cmac) : NULL;
    if (f.aes == NULL || f.cctx == NULL || f.mctx == NULL)
        return 1;
    memcpy(f.key, p.key_enc, 16);
    bench_compare("SCP03 level 33 STORE DATA 204 B (host+card)", store_op, &w,
                  "raw AES-CBC + CMAC work", store_floor, &f);
    tc_scp03_host_close(&w.h);
    tc_transport_close(&w.t);
    tc_se_close(w.card);

    char path[] = "/tmp/bench_se_XXXXXX";
    int tfd = mkstemp(path);
    if (tfd < 0)
        return 1;
    close(tfd);
    if (tc_se_create(path, &p, TC_SE_CREATE_FORCE) != TC_OK)
        return 1;
    /* The same on a card image: each STORE DATA also commits (no fsync). */
    if (tc_se_open(path, TC_SE_OPEN_NO_FSYNC, &w.card) != TC_OK ||
        tc_se_transport(w.card, &w.t) != TC_OK || tc_scp03_host_open(&w.h, &w.t, &w.kp, &cfg))
        return 1;
    bench_compare("... on an image, commit without fsync", store_op, &w, "raw AES-CBC + CMAC work",
                  store_floor, &f);
    tc_scp03_host_close(&w.h);
    tc_transport_close(&w.t);
    tc_se_close(w.card);
    if (tc_se_create(path, &p, TC_SE_CREATE_FORCE) != TC_OK)
        return 1;
    static struct commit_arg c;
    char floor_path[] = "/tmp/bench_se_floor_XXXXXX";
    c.fd = mkstemp(floor_path);
    if (c.fd < 0)
        return 1;
    memset(c.slot, 0x5A, sizeof c.slot);
    for (int sync = 0; sync <= 1; sync++) {
        c.sync = sync != 0;
        if (tc_se_open(path, sync ? 0 : TC_SE_OPEN_NO_FSYNC, &c.card) != TC_OK)
            return 1;
        bench_compare(sync ? "NVM commit with fdatasync" : "NVM commit without fsync", commit_op,
                      &c, sync ? "pwrite 4608 B + fdatasync" : "pwrite 4608 B", write_floor, &c);
        tc_se_close(c.card);
    }
    close(c.fd);
    unlink(floor_path);
    unlink(path);

    enum { NCARDS = 10000 };
    static struct tc_se_card *cards[NCARDS];
    long before = rss_kib();
    for (int i = 0; i < NCARDS; i++) {
        if (tc_se_open_mem(&p, &cards[i]) != TC_OK ||
            tc_se_power_on(cards[i], atr, sizeof atr, &atr_len) != TC_OK)
            return 1;
        size_t n = 0;
        if (tc_se_process(cards[i], get_iin, sizeof get_iin, g_resp, sizeof g_resp, &n) != TC_OK)
            return 1;
    }
    long after = rss_kib();
    (void)printf("RAM per card: sizeof(struct tc_se_card) = %zu bytes (NVM mirror %zu + RAM "
                 "context %zu; cap %u)\n",
                 sizeof(struct tc_se_card), sizeof(struct se_nvm), sizeof(struct se_ram),
                 TC_SE_CARD_MAX_SIZE);
    (void)printf("%d powered memory cards: resident +%ld KiB (%.1f KiB per card)\n", NCARDS,
                 after - before, (double)(after - before) / NCARDS);
    for (int i = 0; i < NCARDS; i++)
        tc_se_close(cards[i]);
    tc_scp03_keyset_wipe(&ks);
    tc_se_params_wipe(&p);
    return 0;
}
