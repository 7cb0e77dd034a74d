/*
 * The OTA operations engine (tc_ota_ops) end to end without HTTP: the test
 * is the server loop and the agent at once, calling the engine's
 * Amendment B application and relaying each script to an emulated card
 * with the library relay (tc_ota_agent_run_script over the card
 * transport). Keys live in SoftHSM2 (own mkdtemp workspace); the registry
 * (audit log) is a fresh SQLite database per case.
 *
 * Every operation runs to completion and is checked on the card (keysets,
 * KCVs, life cycle, profile objects) and in the registry; each is then
 * interrupted after every script (the card ran it, its answer is lost) and
 * at every durable append by the fault hook (the server dies between the
 * append and the reply), then resumed by a fresh dialog: the card and the
 * registry must end in the same state with no duplicated effect.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <trustchain/crypto.h>
#include <trustchain/hsm.h>
#include <trustchain/ota.h>
#include <trustchain/ota_ops.h>
#include <trustchain/registry.h>
#include <trustchain/se.h>
#include <trustchain/transport.h>

#include <event2/event.h>

#include "harness.h"
#include "ota_fixture.h"

#define TOKEN "tc-ota-ops-test"
#define EID1  "89049032123451234512345678901235"

static unsigned db_seq;
static const uint8_t M_LINE[16] = {0x1F, 0x2E, 0x3D, 0x4C, 0x5B, 0x6A, 0x79, 0x88,
                                   0x97, 0xA6, 0xB5, 0xC4, 0xD3, 0xE2, 0xF1, 0x00};
static const uint8_t M_FLEET2[16] = {0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98,
                                     0xA9, 0xBA, 0xCB, 0xDC, 0xED, 0xFE, 0x0F, 0x10};
static const uint8_t ISD[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t SERIAL[] = {0x12, 0x34, 0x56};

static struct tc_hsm *hsm(void)
{
    struct tc_hsm *h = ota_fx_hsm("tc-ota-ops", TOKEN);
    if (h != NULL) {
        ota_fx_master("line", M_LINE);
        ota_fx_master("fleet-2", M_FLEET2);
    }
    return h;
}

static bool ref_keys(const uint8_t master[16], uint8_t enc[16], uint8_t mac[16], uint8_t dek[16])
{
    uint8_t k[3][16];
    if (!ota_fx_ref_keys(master, EID1, k))
        return false;
    memcpy(enc, k[0], 16);
    memcpy(mac, k[1], 16);
    memcpy(dek, k[2], 16);
    tc_memzero(k, sizeof k);
    return true;
}

static void ref_kcvs(const uint8_t master[16], uint8_t kcv[3][3])
{
    EXPECT(ota_fx_ref_kcvs(master, EID1, kcv));
}

struct fx {
    struct tc_registry *reg;
    struct tc_se_card *card;
    struct tc_transport t;
    struct tc_ota_ops *e;
    struct tc_ota_app app;
    struct event_base *base; /* asynchronous mode: the engine's writer wakes this loop */
    uint8_t eid[16];
    char wsdir[300];
};

/* Fault injection: fire at the n-th occurrence of `point` (0: never). */
static enum tc_ota_fault_point fault_point;
static unsigned fault_n, fault_seen;
static unsigned revoked_calls;

static bool fault(void *arg, enum tc_ota_fault_point at, const char *eid)
{
    (void)arg;
    (void)eid;
    if (fault_n == 0 || at != fault_point)
        return false;
    return ++fault_seen == fault_n;
}

static uint8_t revoked_serials[4][TC_AUDIT_SERIAL_MAX];

static tc_err revoke_hook(void *arg, const char *eid, const char *batch, const uint8_t *serial,
                          size_t serial_len, uint16_t reason)
{
    (void)arg;
    EXPECT_STR(eid, EID1);
    EXPECT_STR(batch, "B1");
    EXPECT_EQ_U(serial_len, sizeof SERIAL);
    EXPECT_EQ_U(reason, 5);
    if (revoked_calls < 4 && serial_len == sizeof SERIAL)
        memcpy(revoked_serials[revoked_calls], serial, serial_len);
    revoked_calls++;
    return TC_OK;
}

static void seed(struct tc_registry *r, enum tc_audit_event_type type, uint8_t lc)
{
    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.time_ms = 1700000000000ull;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_ACTOR;
    EXPECT_OK(tc_pki_eid_to_bcd(EID1, ev.eid));
    ev.eid_len = 16;
    memcpy(ev.batch, "B1", 3);
    memcpy(ev.station, "line-1", 7);
    memcpy(ev.actor, "op", 3);
    switch (type) {
    case TC_AUDIT_INJECTION_CONFIRMED:
        ev.fields |= TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV;
        ev.kvn = 0x01;
        ref_kcvs(M_LINE, ev.kcv);
        break;
    case TC_AUDIT_CERT_ISSUED:
        ev.fields |= TC_AUDIT_HAS_PUBKEY_SHA256;
        TC_FALLTHROUGH;
    case TC_AUDIT_CERT_STORED:
        ev.fields |= TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256;
        memcpy(ev.cert_serial, SERIAL, sizeof SERIAL);
        ev.cert_serial_len = sizeof SERIAL;
        memset(ev.cert_sha256, 0xCE, sizeof ev.cert_sha256);
        break;
    case TC_AUDIT_LIFECYCLE_CHANGED:
        ev.fields |= TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_PREV_LIFECYCLE;
        ev.lifecycle = lc;
        ev.prev_lifecycle = 0x07;
        break;
    default:
        break;
    }
    EXPECT_OK(tc_registry_append(r, &ev, NULL));
}

static bool async_mode; /* setup() makes the next fixture asynchronous */

/* A provisioned device: card SECURED with keyset 01 from master "line";
 * the registry says the same. */
static bool setup(struct fx *f)
{
    memset(f, 0, sizeof *f);
    if (async_mode) {
        f->base = event_base_new();
        EXPECT(f->base != NULL);
    }
    fault_n = fault_seen = 0;
    revoked_calls = 0;
    struct tc_hsm *h = hsm();
    if (h == NULL)
        return false;
    (void)snprintf(f->wsdir, sizeof f->wsdir, "%s", ota_fx_wsdir());
    char path[400];
    (void)snprintf(path, sizeof path, "%s/reg-%u.db", ota_fx_dir(), ++db_seq);
    EXPECT_OK(tc_registry_open(path, NULL, &f->reg));
    if (f->reg == NULL)
        return false;
    seed(f->reg, TC_AUDIT_INJECTION_CONFIRMED, 0);
    seed(f->reg, TC_AUDIT_CERT_ISSUED, 0);
    seed(f->reg, TC_AUDIT_CERT_STORED, 0);
    seed(f->reg, TC_AUDIT_LIFECYCLE_CHANGED, 0x0F);

    struct tc_se_params p;
    tc_se_params_default(&p);
    EXPECT_OK(tc_pki_eid_to_bcd(EID1, p.eid));
    memcpy(f->eid, p.eid, 16);
    p.kvn = 0x01;
    p.key_len = 16;
    EXPECT(ref_keys(M_LINE, p.key_enc, p.key_mac, p.key_dek));
    EXPECT_OK(tc_se_open_mem(&p, &f->card));
    uint8_t atr[64];
    size_t al = 0;
    EXPECT_OK(tc_se_power_on(f->card, atr, sizeof atr, &al));
    EXPECT_OK(tc_se_transport(f->card, &f->t));

    /* OP_READY -> INITIALIZED -> SECURED as the line leaves it. */
    struct tc_scp03_mem_provider m;
    struct tc_scp03_key_provider kp;
    struct tc_scp03_keyset ks;
    struct tc_scp03_host host;
    tc_scp03_mem_provider_init(&m, &kp);
    EXPECT_OK(tc_scp03_keyset_set(&ks, 0x01, p.key_enc, p.key_mac, p.key_dek, 16));
    EXPECT_OK(tc_scp03_mem_provider_add(&m, &ks));
    struct tc_scp03_host_config c = {.kvn = 0x01,
                                     .level = TC_SCP03_LEVEL_MAC,
                                     .aid = ISD,
                                     .aid_len = sizeof ISD,
                                     .select = true};
    EXPECT_OK(tc_scp03_host_open(&host, &f->t, &kp, &c));
    for (int i = 0; i < 2; i++) {
        struct tc_apdu a = {.cla = 0x80, .ins = 0xF0, .p1 = 0x80, .p2 = i == 0 ? 0x07 : 0x0F};
        uint8_t resp[64];
        size_t rl = 0;
        uint16_t sw = 0;
        EXPECT_OK(tc_scp03_host_transmit(&host, &a, resp, sizeof resp, &rl, &sw));
        EXPECT_EQ_U(sw, 0x9000);
    }
    tc_scp03_host_close(&host);
    tc_scp03_mem_provider_wipe(&m);
    tc_scp03_keyset_wipe(&ks);
    tc_se_params_wipe(&p);

    struct tc_ota_ops_config cfg = {.reg = f->reg,
                                    .hsm = h,
                                    .workspace = f->wsdir,
                                    .default_master = "line",
                                    .fault = fault,
                                    .revoke = revoke_hook,
                                    .base = f->base};
    EXPECT_OK(tc_ota_ops_new(&cfg, &f->e, &f->app));
    return f->e != NULL;
}

static void teardown(struct fx *f)
{
    tc_ota_ops_free(f->e);
    if (f->base != NULL)
        event_base_free(f->base);
    tc_transport_close(&f->t);
    tc_se_close(f->card);
    tc_registry_close(f->reg);
}

#define D_DONE    OTA_FX_DONE
#define D_DROPPED OTA_FX_DROPPED
#define D_ABORTED OTA_FX_ABORTED

struct held {
    bool got;
    tc_err rc;
    uint8_t script[TC_OTA_SCRIPT_BYTES_MAX];
    size_t len;
};

static void on_reply(void *arg, tc_err rc, const uint8_t *script, size_t len)
{
    struct held *h = arg;
    EXPECT(!h->got); /* exactly once */
    h->got = true;
    h->rc = rc;
    if (len <= sizeof h->script) {
        if (len > 0)
            memcpy(h->script, script, len);
        h->len = len;
    }
}

/* One step: the synchronous next, or next_async with the loop run until
 * the engine answers (its records durable). */
static tc_err step_once(struct fx *f, const struct tc_ota_admin_in *in, struct tc_buf *script)
{
    if (f->base == NULL)
        return f->app.next(f->app.ctx, in, script);
    EXPECT(f->app.next_async != NULL);
    struct held *h = calloc(1, sizeof *h);
    tc_err rc = h != NULL ? f->app.next_async(f->app.ctx, in, on_reply, h) : TC_ERR_NOMEM;
    for (int i = 0; rc == TC_OK && !h->got && i < 10000; i++)
        (void)event_base_loop(f->base, EVLOOP_ONCE);
    if (rc == TC_OK) {
        EXPECT(h->got);
        rc = h->got ? h->rc : TC_ERR_INTERNAL;
        if (rc == TC_OK)
            tc_buf_put(script, h->script, h->len);
    }
    free(h);
    return rc;
}

static tc_err step_fx(void *arg, const struct tc_ota_admin_in *in, struct tc_buf *script)
{
    return step_once(arg, in, script);
}

/* One Amendment B dialog (tests/ota/ota_fixture.h), through the engine's
 * next or, in asynchronous mode, next_async with the loop run. */
static enum ota_fx_end dialog(struct fx *f, unsigned drop_after, unsigned tamper, unsigned *scripts)
{
    struct ota_fx_dialog d = {.app = &f->app,
                              .t = &f->t,
                              .eid = EID1,
                              .drop_after = drop_after,
                              .tamper = tamper,
                              .step = f->base != NULL ? step_fx : NULL,
                              .step_arg = f};
    return ota_fx_dialog(&d, scripts);
}

static void queue(struct fx *f, uint8_t code, uint8_t kvn, const char *master, const uint8_t *data,
                  size_t data_len, uint64_t *id)
{
    struct tc_ota_queue_request rq = {.eid = EID1,
                                      .code = code,
                                      .actor = "operator",
                                      .kvn = kvn,
                                      .master = master,
                                      .data = data,
                                      .data_len = data_len,
                                      .workspace = f->wsdir};
    EXPECT_OK(tc_ota_queue_add(f->reg, &rq, id));
}

static struct ota_fx_counts count(struct fx *f)
{
    return ota_fx_count(f->reg, f->eid, 16);
}

static void card_info(struct fx *f, struct tc_se_info *info)
{
    EXPECT_OK(tc_se_card_describe(f->card, info));
}

/* The card holds exactly one keyset, KVN kvn, with the master's KCVs. */
static void expect_keyset(struct fx *f, uint8_t kvn, const uint8_t master[16])
{
    struct tc_se_info info;
    uint8_t kcv[3][3];
    card_info(f, &info);
    ref_kcvs(master, kcv);
    EXPECT_EQ_U(info.nkeysets, 1);
    EXPECT_EQ_U(info.keysets[0].kvn, kvn);
    EXPECT_MEM(info.keysets[0].kcv, 9, kcv, 9);
    struct tc_registry_device d;
    EXPECT_OK(tc_registry_device_get(f->reg, f->eid, 16, &d));
    EXPECT_EQ_U(d.kvn, kvn);
    EXPECT_MEM(d.kcv, 9, kcv, 9);
}

static void expect_state(struct fx *f, enum tc_registry_state state)
{
    struct tc_registry_device d;
    EXPECT_OK(tc_registry_device_get(f->reg, f->eid, 16, &d));
    EXPECT_EQ_U(d.state, state);
}

/* Queue one operation, run a dialog interrupted by `drop` (after that many
 * scripts) or the fault hook (the nth time at `point`), then a clean one
 * that must complete it: one op-done, no op-failed. */
static void interrupted(struct fx *f, uint8_t code, uint8_t kvn, const char *master, unsigned drop,
                        enum tc_ota_fault_point point, unsigned nth)
{
    uint64_t id = 0;
    unsigned n = 0;
    queue(f, code, kvn, master, NULL, 0, &id);
    fault_point = point;
    fault_n = nth;
    enum ota_fx_end first = dialog(f, drop, 0, &n);
    EXPECT(first != D_DONE || (drop == 0 && fault_seen < nth));
    fault_n = 0;
    EXPECT_EQ_U(dialog(f, 0, 0, &n), D_DONE);
    struct ota_fx_counts c = count(f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_DONE], 1);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_FAILED], 0);
    EXPECT_OK(tc_registry_check(f->reg, NULL, NULL));
}

/* No key of the device's keysets is left in the HSM once its dialogs are
 * over (each key is derived when a dialog first uses it and destroyed
 * with the dialog). */
static void expect_no_device_keys(void)
{
    static const char *const roles[3] = {"enc", "mac", "dek"};
    for (size_t r = 0; r < 3; r++) {
        char label[80];
        tc_hsm_obj o = 0;
        (void)snprintf(label, sizeof label, "tc:device:%s:%s", EID1, roles[r]);
        EXPECT_ERR(tc_hsm_find(hsm(), TC_HSM_KIND_SECRET, label, &o), TC_ERR_NOT_FOUND);
        tc_error_clear();
    }
}

static void expect_queue(struct fx *f, size_t pending, const char *master)
{
    struct tc_ota_queue q;
    EXPECT_OK(tc_ota_queue_load(f->reg, f->eid, 16, UINT64_MAX, &q));
    EXPECT_EQ_U(q.pending, pending);
    EXPECT_STR(q.master, master);
}

/* ------------------------------------------------------------------ rotate */

static void test_rotate(void)
{
    struct fx f;
    if (!setup(&f))
        return;
    uint64_t id = 0;
    expect_queue(&f, 0, "");
    /* Nothing queued: the dialog ends at once (204). */
    unsigned n = 0;
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 0);
    queue(&f, TC_OTA_OP_ROTATE_KEYS, 0x31, "fleet-2", NULL, 0, &id);
    expect_queue(&f, 1, "");
    /* IU, EA, PUT KEY, IU (new), EA (new), DELETE KEY. */
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 6);
    expect_keyset(&f, 0x31, M_FLEET2);
    expect_queue(&f, 0, "fleet-2");
    struct ota_fx_counts c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_KEYS_ROTATED], 1);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_DONE], 1);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_STEP], 2);
    expect_no_device_keys();
    /* The registry projection still rebuilds byte for byte. */
    EXPECT_OK(tc_registry_check(f.reg, NULL, NULL));
    /* A second rotation back to the line master starts from fleet-2's keys. */
    queue(&f, TC_OTA_OP_ROTATE_KEYS, 0x32, "line", NULL, 0, &id);
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    expect_keyset(&f, 0x32, M_LINE);
    expect_queue(&f, 0, "line");
    expect_no_device_keys();
    /* Dropped in the middle (after PUT KEY): the dialog's keys go with it. */
    queue(&f, TC_OTA_OP_ROTATE_KEYS, 0x33, "fleet-2", NULL, 0, &id);
    EXPECT(dialog(&f, 3, 0, &n) != D_DONE);
    expect_no_device_keys();
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    expect_keyset(&f, 0x33, M_FLEET2);
    expect_no_device_keys();
    teardown(&f);
}

static void test_rotate_refusals(void)
{
    struct fx f;
    if (!setup(&f))
        return;
    uint64_t id = 0;
    /* Queue-time refusals. */
    struct tc_ota_queue_request rq = {
        .eid = EID1, .code = TC_OTA_OP_ROTATE_KEYS, .actor = "op", .kvn = 0x31};
    EXPECT_ERR(tc_ota_queue_add(f.reg, &rq, &id), TC_ERR_ARG); /* no master */
    rq.master = "fleet-2";
    rq.kvn = 0x80;
    EXPECT_ERR(tc_ota_queue_add(f.reg, &rq, &id), TC_ERR_ARG); /* KVN outside 01..7F */
    rq.kvn = 0x31;
    rq.eid = "89049032123451234512345678901332";
    EXPECT_ERR(tc_ota_queue_add(f.reg, &rq, &id), TC_ERR_NOT_FOUND); /* unknown device */
    rq.eid = EID1;
    rq.code = 14;
    EXPECT_ERR(tc_ota_queue_add(f.reg, &rq, &id), TC_ERR_ARG); /* no such operation */

    /* An unknown master fails the operation before the card is touched. */
    queue(&f, TC_OTA_OP_ROTATE_KEYS, 0x31, "nope", NULL, 0, &id);
    unsigned n = 0;
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 0);
    /* The current KVN again: refused by the card state rule. */
    queue(&f, TC_OTA_OP_ROTATE_KEYS, 0x01, "fleet-2", NULL, 0, &id);
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 0);
    struct ota_fx_counts c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_FAILED], 2);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_STEP], 0);
    expect_keyset(&f, 0x01, M_LINE);
    expect_queue(&f, 0, "");

    /* Cancel: a pending operation that has not started. */
    queue(&f, TC_OTA_OP_ROTATE_KEYS, 0x31, "fleet-2", NULL, 0, &id);
    EXPECT_ERR(tc_ota_queue_cancel(f.reg, EID1, id + 100, "op"), TC_ERR_NOT_FOUND);
    EXPECT_OK(tc_ota_queue_cancel(f.reg, EID1, id, "op"));
    EXPECT_ERR(tc_ota_queue_cancel(f.reg, EID1, id, "op"), TC_ERR_STATE);
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 0);
    expect_keyset(&f, 0x01, M_LINE);

    /* A started operation cannot be cancelled: it is resumed. */
    queue(&f, TC_OTA_OP_ROTATE_KEYS, 0x31, "fleet-2", NULL, 0, &id);
    EXPECT_EQ_U(dialog(&f, 3, 0, &n), D_DROPPED); /* PUT KEY ran */
    EXPECT_ERR(tc_ota_queue_cancel(f.reg, EID1, id, "op"), TC_ERR_STATE);
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    expect_keyset(&f, 0x31, M_FLEET2);
    teardown(&f);
}

/* A tampering agent: the PUT KEY answer's R-MAC fails, the dialog aborts,
 * the operation stays pending and completes at the next connection. */
static void test_rotate_tamper(void)
{
    struct fx f;
    if (!setup(&f))
        return;
    uint64_t id = 0;
    unsigned n = 0;
    queue(&f, TC_OTA_OP_ROTATE_KEYS, 0x31, "fleet-2", NULL, 0, &id);
    EXPECT_EQ_U(dialog(&f, 0, 3, &n), D_ABORTED);
    expect_queue(&f, 1, "");
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    expect_keyset(&f, 0x31, M_FLEET2);
    struct ota_fx_counts c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_KEYS_ROTATED], 1);
    teardown(&f);
}

/* Interrupt after every script and at every durable append / reply. */
static void rotate_interrupted(unsigned drop, enum tc_ota_fault_point point, unsigned nth)
{
    struct fx f;
    if (!setup(&f))
        return;
    interrupted(&f, TC_OTA_OP_ROTATE_KEYS, 0x31, "fleet-2", drop, point, nth);
    expect_keyset(&f, 0x31, M_FLEET2);
    expect_queue(&f, 0, "fleet-2");
    EXPECT_EQ_U(count(&f).by_type[TC_AUDIT_KEYS_ROTATED], 1);
    teardown(&f);
}

/* An operation of `scripts` scripts and `appends` durable appends,
 * interrupted after each script, after each append and before each reply. */
static void every_interrupt(void (*one)(unsigned drop, enum tc_ota_fault_point point, unsigned nth),
                            unsigned scripts, unsigned appends)
{
    for (unsigned k = 1; k <= scripts; k++)
        one(k, TC_OTA_FAULT_APPENDED, 0);
    for (unsigned k = 1; k <= appends; k++)
        one(0, TC_OTA_FAULT_APPENDED, k);
    for (unsigned k = 1; k <= scripts; k++)
        one(0, TC_OTA_FAULT_REPLY, k);
}

static void test_rotate_interrupts(void)
{
    /* Six scripts; appends: intent PUT KEY, intent DELETE KEY,
     * keys-rotated + op-done. */
    every_interrupt(rotate_interrupted, 6, 3);
}

/* ------------------------------------------------------------------ lifecycle */

static uint8_t card_lc(struct fx *f)
{
    struct tc_se_info info;
    card_info(f, &info);
    return info.life_cycle;
}

static void test_lock_unlock(void)
{
    struct fx f;
    if (!setup(&f))
        return;
    uint64_t id = 0;
    unsigned n = 0;
    queue(&f, TC_OTA_OP_LOCK, 0, NULL, NULL, 0, &id);
    /* IU, EA, GET DATA 9F70, SET STATUS, GET DATA 9F70. */
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 5);
    EXPECT_EQ_U(card_lc(&f), 0x7F);
    expect_state(&f, TC_REG_LOCKED);
    /* Locking a locked card fails without a step. */
    queue(&f, TC_OTA_OP_LOCK, 0, NULL, NULL, 0, &id);
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 3);
    queue(&f, TC_OTA_OP_UNLOCK, 0, NULL, NULL, 0, &id);
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(card_lc(&f), 0x0F);
    expect_state(&f, TC_REG_PROVISIONED);
    struct ota_fx_counts c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_DONE], 2);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_FAILED], 1);
    teardown(&f);
}

static void lock_interrupted(unsigned drop, enum tc_ota_fault_point point, unsigned nth)
{
    struct fx f;
    if (!setup(&f))
        return;
    interrupted(&f, TC_OTA_OP_LOCK, 0, NULL, drop, point, nth);
    EXPECT_EQ_U(card_lc(&f), 0x7F);
    expect_state(&f, TC_REG_LOCKED);
    /* the line's + one */
    EXPECT_EQ_U(count(&f).by_type[TC_AUDIT_LIFECYCLE_CHANGED], 2);
    teardown(&f);
}

static void test_lock_interrupts(void)
{
    every_interrupt(lock_interrupted, 5, 2);
}

static void test_decommission(void)
{
    struct fx f;
    if (!setup(&f))
        return;
    uint64_t id = 0;
    unsigned n = 0;
    queue(&f, TC_OTA_OP_DECOMMISSION, 0, NULL, NULL, 0, &id);
    /* IU, EA, SET STATUS TERMINATED. */
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 3);
    EXPECT_EQ_U(card_lc(&f), 0xFF);
    EXPECT_EQ_U(revoked_calls, 1);
    expect_state(&f, TC_REG_DECOMMISSIONED);
    struct ota_fx_counts c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_CERT_REVOKED], 1);
    /* Nothing can be queued for it any more. */
    struct tc_ota_queue_request rq = {.eid = EID1, .code = TC_OTA_OP_LOCK, .actor = "op"};
    EXPECT_ERR(tc_ota_queue_add(f.reg, &rq, &id), TC_ERR_STATE);
    teardown(&f);
}

/* A renewal abandoned earlier (its new certificate issued, then revoked,
 * never stored) and one in flight (issued, not revoked): decommission
 * revokes exactly the certificates the log shows valid, not only the
 * registry's current one. */
static void renewal_events(struct fx *f, uint8_t last, bool revoke_it)
{
    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_CERT_ISSUED;
    ev.time_ms = 1700000000001ull;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_ACTOR |
                TC_AUDIT_HAS_PUBKEY_SHA256 | TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256 |
                TC_AUDIT_HAS_OP_ID;
    memcpy(ev.eid, f->eid, 16);
    ev.eid_len = 16;
    memcpy(ev.batch, "B1", 3);
    memcpy(ev.station, "ota", 4);
    memcpy(ev.actor, "ota", 4);
    memcpy(ev.cert_serial, SERIAL, sizeof SERIAL);
    ev.cert_serial[2] = last;
    ev.cert_serial_len = sizeof SERIAL;
    memset(ev.cert_sha256, last, sizeof ev.cert_sha256);
    ev.op_id = 1;
    EXPECT_OK(tc_registry_append(f->reg, &ev, NULL));
    if (!revoke_it)
        return;
    ev.type = TC_AUDIT_CERT_REVOKED;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR |
                TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_REASON | TC_AUDIT_HAS_OP_ID;
    ev.reason = 5;
    EXPECT_OK(tc_registry_append(f->reg, &ev, NULL));
}

static void test_decommission_after_renewals(void)
{
    struct fx f;
    if (!setup(&f))
        return;
    struct tc_ota_cert_ref certs[TC_OTA_CERTS_MAX];
    size_t n = 0;
    renewal_events(&f, 0x77, true); /* abandoned: issued and revoked */
    EXPECT_OK(tc_ota_unrevoked_certs(f.reg, f.eid, 16, certs, TC_OTA_CERTS_MAX, &n));
    EXPECT_EQ_U(n, 1);
    EXPECT_MEM(certs[0].serial, certs[0].serial_len, SERIAL, sizeof SERIAL);
    /* The registry still shows the device provisioned (not revoked). */
    expect_state(&f, TC_REG_PROVISIONED);
    renewal_events(&f, 0x78, false); /* in flight: both valid */
    EXPECT_OK(tc_ota_unrevoked_certs(f.reg, f.eid, 16, certs, TC_OTA_CERTS_MAX, &n));
    EXPECT_EQ_U(n, 2);
    EXPECT_ERR(tc_ota_unrevoked_certs(f.reg, f.eid, 16, certs, 1, &n), TC_ERR_RANGE);
    uint64_t id = 0;
    unsigned k = 0;
    queue(&f, TC_OTA_OP_DECOMMISSION, 0, NULL, NULL, 0, &id);
    EXPECT_EQ_U(dialog(&f, 0, 0, &k), D_DONE);
    EXPECT_EQ_U(revoked_calls, 2);
    EXPECT_MEM(revoked_serials[0], sizeof SERIAL, SERIAL, sizeof SERIAL);
    EXPECT_EQ_U(revoked_serials[1][2], 0x78);
    EXPECT_OK(tc_ota_unrevoked_certs(f.reg, f.eid, 16, certs, TC_OTA_CERTS_MAX, &n));
    EXPECT_EQ_U(n, 0);
    expect_state(&f, TC_REG_DECOMMISSIONED);
    teardown(&f);
}

/* Interrupted before SET STATUS reached the card: resumed. */
static void test_decommission_interrupted(void)
{
    struct fx f;
    if (!setup(&f))
        return;
    uint64_t id = 0;
    unsigned n = 0;
    queue(&f, TC_OTA_OP_DECOMMISSION, 0, NULL, NULL, 0, &id);
    fault_point = TC_OTA_FAULT_APPENDED;
    fault_n = 1; /* the intent is on disk, SET STATUS never sent */
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_ABORTED);
    fault_n = 0;
    EXPECT_EQ_U(card_lc(&f), 0x0F);
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(card_lc(&f), 0xFF);
    EXPECT_EQ_U(revoked_calls, 1);
    struct ota_fx_counts c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_STEP], 1);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_DONE], 1);
    teardown(&f);
}

/* The card terminated but its answer was lost: the device can never
 * connect again, the operation stays pending until the operator revokes
 * the device, which ends it (op-failed, reason revoked, the step kept). */
static void test_decommission_answer_lost(void)
{
    struct fx f;
    if (!setup(&f))
        return;
    uint64_t id = 0;
    unsigned n = 0;
    queue(&f, TC_OTA_OP_DECOMMISSION, 0, NULL, NULL, 0, &id);
    EXPECT_EQ_U(dialog(&f, 3, 0, &n), D_DROPPED); /* SELECT+IU, EA, SET STATUS ran */
    EXPECT_EQ_U(card_lc(&f), 0xFF);
    EXPECT_EQ_U(revoked_calls, 0);
    struct tc_ota_queue *q = calloc(1, sizeof *q);
    EXPECT(q != NULL);
    if (q == NULL)
        goto out;
    EXPECT_OK(tc_ota_queue_load(f.reg, f.eid, 16, UINT64_MAX, q));
    EXPECT_EQ_U(q->pending, 1);
    EXPECT_EQ_U(q->ops[0].step, 1);
    size_t closed = 99;
    EXPECT_OK(tc_ota_queue_close_revoked(f.reg, f.eid, 16, "op:test", &closed));
    EXPECT_EQ_U(closed, 1);
    EXPECT_OK(tc_ota_queue_load(f.reg, f.eid, 16, UINT64_MAX, q));
    EXPECT_EQ_U(q->pending, 0);
    EXPECT_EQ_U(q->ops[0].id, id);
    EXPECT_EQ_U(q->ops[0].status, TC_OTA_OP_FAILED);
    EXPECT_EQ_U(q->ops[0].reason, TC_OTA_FAIL_REVOKED);
    EXPECT_EQ_U(q->ops[0].step, 1);
    /* Nothing left to end; a done operation is never touched. */
    EXPECT_OK(tc_ota_queue_close_revoked(f.reg, f.eid, 16, "op:test", &closed));
    EXPECT_EQ_U(closed, 0);
    struct ota_fx_counts c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_FAILED], 1);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_DONE], 0);
    EXPECT_ERR(tc_ota_queue_close_revoked(f.reg, f.eid, 0, "op:test", &closed), TC_ERR_ARG);
out:
    free(q);
    teardown(&f);
}

/* ------------------------------------------------------------------ store data */

static void test_store_data(void)
{
    struct fx f;
    if (!setup(&f))
        return;
    static const uint8_t cfg[] = {0x50, 0x03, 'a', 'b', 'c', 0x5F, 0x20, 0x02, 'o', 'k'};
    uint64_t id = 0;
    unsigned n = 0;
    queue(&f, TC_OTA_OP_STORE_DATA, 0, NULL, cfg, sizeof cfg, &id);
    /* IU, EA, STORE DATA, GET DATA 50, GET DATA 5F20. */
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 5);
    struct tc_se_info info;
    card_info(&f, &info);
    EXPECT_EQ_U(info.profile_len, sizeof cfg);
    struct ota_fx_counts c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_CONFIG_STORED], 1);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_DONE], 1);
    /* Interrupted after each script, then resumed: same profile, one record. */
    for (unsigned k = 1; k <= 5; k++) {
        queue(&f, TC_OTA_OP_STORE_DATA, 0, NULL, cfg, sizeof cfg, &id);
        EXPECT_EQ_U(dialog(&f, k, 0, &n), D_DROPPED);
        EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
        card_info(&f, &info);
        EXPECT_EQ_U(info.profile_len, sizeof cfg);
    }
    c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_CONFIG_STORED], 6);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_FAILED], 0);
    /* Data refused when it is queued: malformed, a tag twice, a length
     * cut short, an object larger than a block. */
    static const uint8_t twice[] = {0x50, 0x01, 'a', 0x50, 0x01, 'b'};
    static const uint8_t cut[] = {0x50, 0x05, 'a'};
    static const uint8_t three_byte_tag[] = {0x5F, 0x80, 0x01, 0x01, 0x00};
    uint8_t big[230];
    big[0] = 0x50;
    big[1] = 0x81;
    big[2] = (uint8_t)(sizeof big - 3);
    memset(big + 3, 0x42, sizeof big - 3);
    const struct {
        const uint8_t *p;
        size_t n;
    } refused[] = {{twice, sizeof twice},
                   {cut, sizeof cut},
                   {three_byte_tag, sizeof three_byte_tag},
                   {big, sizeof big}};
    for (size_t i = 0; i < TC_ARRAY_LEN(refused); i++) {
        struct tc_ota_queue_request rq = {.eid = EID1,
                                          .code = TC_OTA_OP_STORE_DATA,
                                          .actor = "op",
                                          .data = refused[i].p,
                                          .data_len = refused[i].n,
                                          .workspace = f.wsdir};
        EXPECT_ERR(tc_ota_queue_add(f.reg, &rq, &id), TC_ERR_ARG);
    }
    /* Data the card refuses (its own tag 9F70): op-failed, nothing stored. */
    static const uint8_t bad[] = {0x9F, 0x70, 0x01, 0x0F};
    queue(&f, TC_OTA_OP_STORE_DATA, 0, NULL, bad, sizeof bad, &id);
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_FAILED], 1);
    teardown(&f);
}

/* Several operations in queue order in one dialog, one session reused. */
static void test_queue_order(void)
{
    struct fx f;
    if (!setup(&f))
        return;
    static const uint8_t cfg[] = {0x50, 0x01, 'x'};
    uint64_t id = 0;
    unsigned n = 0;
    queue(&f, TC_OTA_OP_ROTATE_KEYS, 0x31, "fleet-2", NULL, 0, &id);
    queue(&f, TC_OTA_OP_STORE_DATA, 0, NULL, cfg, sizeof cfg, &id);
    queue(&f, TC_OTA_OP_LOCK, 0, NULL, NULL, 0, &id);
    /* rotate 6, store 2 (same session), lock 3 (same session). */
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    EXPECT_EQ_U(n, 11);
    expect_keyset(&f, 0x31, M_FLEET2);
    EXPECT_EQ_U(card_lc(&f), 0x7F);
    expect_queue(&f, 0, "fleet-2");
    /* The queue at an earlier time is the fold of the events until then. */
    struct tc_ota_queue q;
    EXPECT_OK(tc_ota_queue_load(f.reg, f.eid, 16, 1700000000000ull, &q));
    EXPECT_EQ_U(q.n, 0);
    EXPECT_OK(tc_registry_rebuild(f.reg));
    EXPECT_OK(tc_ota_queue_load(f.reg, f.eid, 16, UINT64_MAX, &q));
    EXPECT_EQ_U(q.n, 3);
    EXPECT_EQ_U(q.ops[0].status, TC_OTA_OP_DONE);
    EXPECT_EQ_U(q.ops[2].code, TC_OTA_OP_LOCK);
    teardown(&f);
}

/* tests/vectors/ota/events.txt: the OTA event encodings. */
static void test_event_vectors(void)
{
    struct tc_vec v;
    size_t good = 0, bad = 0;
    if (!tc_vec_open(&v, "ota/events.txt"))
        return;
    while (tc_vec_next(&v)) {
        size_t n = 0;
        bool is_good = tc_vec_get(&v, "GOOD") != NULL;
        uint8_t *b = tc_vec_hex(&v, is_good ? "GOOD" : "BAD", &n);
        struct tc_audit_event ev;
        if (b == NULL)
            continue;
        if (is_good) {
            uint8_t out[TC_AUDIT_EVENT_MAX];
            size_t m = 0;
            EXPECT_OK(tc_audit_event_decode(b, n, &ev));
            EXPECT_STR(tc_audit_event_type_name(ev.type), tc_vec_get(&v, "TYPE"));
            const char *op = tc_vec_get(&v, "OP");
            if (op != NULL) {
                uint64_t id = 0;
                EXPECT_OK(tc_parse_uint(op, UINT64_MAX, &id));
                EXPECT((ev.fields & TC_AUDIT_HAS_OP_ID) != 0);
                EXPECT(ev.op_id == id);
            }
            EXPECT_OK(tc_audit_event_encode(&ev, out, sizeof out, &m));
            EXPECT_MEM(out, m, b, n);
            good++;
        } else {
            if (tc_audit_event_decode(b, n, &ev) == TC_OK) {
                (void)fprintf(stderr, "  accepted BAD at line %d\n", v.record_line);
                EXPECT(false);
            }
            bad++;
        }
        free(b);
    }
    tc_vec_close(&v);
    EXPECT_EQ_U(good, 8);
    EXPECT_EQ_U(bad, 11);
    /* The encoder refuses what the decoder refuses. */
    struct tc_audit_event ev;
    uint8_t out[TC_AUDIT_EVENT_MAX];
    size_t m = 0;
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_OP_QUEUED;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_OP_KIND;
    ev.eid_len = 1;
    memcpy(ev.actor, "a", 2);
    ev.op_kind = 16;
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &m), TC_ERR_ARG);
    ev.op_kind = 1;
    EXPECT_OK(tc_audit_event_encode(&ev, out, sizeof out, &m));
    ev.fields |= TC_AUDIT_HAS_MASTER; /* empty master name */
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &m), TC_ERR_ARG);
    ev.fields &= ~TC_AUDIT_HAS_MASTER;
    ev.type = (enum tc_audit_event_type)0x26;
    EXPECT_ERR(tc_audit_event_encode(&ev, out, sizeof out, &m), TC_ERR_ARG);
}

/* The same operations with the engine in asynchronous mode: every record
 * goes through the writer thread and the loop is woken when it is durable;
 * the card and the registry must end exactly as in synchronous mode. */
static void test_async(void)
{
    async_mode = true;
    test_rotate();
    test_lock_unlock();
    test_store_data();
    test_queue_order();
    test_decommission_interrupted();
    test_rotate_interrupts();
    async_mode = false;
}

/* Asynchronous mode: the connection drops while the dialog waits for its
 * intent to be durable, and the device reconnects at once. The new dialog
 * is refused until the old records are on disk (it would read a queue
 * without them); after that the rotation completes exactly once. */
static void test_async_reconnect(void)
{
    async_mode = true;
    struct fx f;
    bool ok = setup(&f);
    async_mode = false;
    if (!ok)
        return;
    uint64_t id = 0;
    unsigned n = 0;
    queue(&f, TC_OTA_OP_ROTATE_KEYS, 0x31, "fleet-2", NULL, 0, &id);
    struct tc_buf script, resp;
    tc_buf_init_heap(&script, 1u << 16);
    tc_buf_init_heap(&resp, 1u << 16);
    struct tc_ota_admin_in in = {.eid = EID1, .step = 0, .status = TC_OTA_STATUS_NONE};
    struct held *h = calloc(1, sizeof *h);
    bool held = false;
    for (unsigned step = 0; h != NULL && step < 8 && !held; step++) {
        memset(h, 0, sizeof *h);
        EXPECT_OK(f.app.next_async(f.app.ctx, &in, on_reply, h));
        if (!h->got) {
            held = true; /* waiting for the PUT KEY intent to be durable */
            break;
        }
        EXPECT_OK(h->rc);
        tc_buf_reset(&resp);
        EXPECT_OK(tc_ota_agent_run_script(&f.t, h->script, h->len, &resp));
        in.step++;
        in.status = TC_OTA_STATUS_OK;
        in.response = resp.data;
        in.response_len = resp.len;
    }
    EXPECT(held);
    EXPECT_EQ_U(in.step, 2); /* IU, EA answered; PUT KEY held */
    /* The connection drops: the server ends the session, the held request
     * is answered (an error) exactly once. */
    f.app.end(f.app.ctx, EID1, false);
    EXPECT(h->got);
    EXPECT(h->rc != TC_OK);
    /* Reconnecting at once is refused while the records are in flight. */
    struct held *h2 = calloc(1, sizeof *h2);
    struct tc_ota_admin_in in0 = {.eid = EID1, .step = 0, .status = TC_OTA_STATUS_NONE};
    EXPECT_ERR(f.app.next_async(f.app.ctx, &in0, on_reply, h2), TC_ERR_STATE);
    EXPECT(!h2->got);
    /* Once the writer is done, the device is served and the rotation
     * completes once (PUT KEY never reached the card in the first dialog). */
    for (int i = 0; i < 200; i++)
        (void)event_base_loop(f.base, EVLOOP_NONBLOCK);
    (void)usleep(50000);
    for (int i = 0; i < 200; i++)
        (void)event_base_loop(f.base, EVLOOP_NONBLOCK);
    EXPECT_EQ_U(dialog(&f, 0, 0, &n), D_DONE);
    expect_keyset(&f, 0x31, M_FLEET2);
    struct ota_fx_counts c = count(&f);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_KEYS_ROTATED], 1);
    EXPECT_EQ_U(c.by_type[TC_AUDIT_OP_DONE], 1);
    free(h);
    free(h2);
    tc_buf_free(&script);
    tc_buf_free(&resp);
    teardown(&f);
}

static void test_zz_teardown(void)
{
    ota_fx_hsm_cleanup();
}

static const struct tc_test_case cases[] = {
    {"event_vectors", test_event_vectors},
    {"rotate", test_rotate},
    {"rotate_refusals", test_rotate_refusals},
    {"rotate_tamper", test_rotate_tamper},
    {"rotate_interrupts", test_rotate_interrupts},
    {"lock_unlock", test_lock_unlock},
    {"lock_interrupts", test_lock_interrupts},
    {"decommission", test_decommission},
    {"decommission_interrupted", test_decommission_interrupted},
    {"decommission_answer_lost", test_decommission_answer_lost},
    {"decommission_after_renewals", test_decommission_after_renewals},
    {"store_data", test_store_data},
    {"queue_order", test_queue_order},
    {"async", test_async},
    {"async_reconnect", test_async_reconnect},
    {"zz_teardown", test_zz_teardown},
};

TC_TEST_MAIN("ota_ops", cases)
