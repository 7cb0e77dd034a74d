/*
 * trustchain device: what the registry says about a device, each answer
 * derived from the audit log — `show` folds the device's events up to a
 * moment and proves every folded event against a signed checkpoint,
 * `history` lists its events, `list` filters the projection, `cert` prints
 * the certificate whose SHA-256 the log carries, with its chain
 * (docs/registry.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <trustchain/audit.h>
#include <trustchain/hsm.h>
#include <trustchain/ota_ops.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>

#include "cli.h"

#define SHOW_EVENTS_MAX 65536u

static const char usage[] =
    "usage: trustchain device <command> [options]\n"
    "\n"
    "commands:\n"
    "  show EID [--at TIME]   credential state at TIME (default: now), folded from the\n"
    "                         device's events, each proved against a signed checkpoint\n"
    "  history EID            every event of the device, in log order\n"
    "  list [--batch ID] [--state S]\n"
    "                         devices of the registry (states: received keys-derived\n"
    "                         keys-injected confirmed keypair cert-issued cert-stored\n"
    "                         provisioned rejected locked decommissioned revoked)\n"
    "  cert EID [--verify]    the device certificate and its chain (PEM): device, batch CA,\n"
    "                         root; --verify also validates the chain with the CRLs\n"
    "  queue EID OP [--kvn N] [--master NAME] [--file FILE] [--actor NAME]\n"
    "                         queue an over-the-air operation, applied when the device\n"
    "                         connects to `ota serve` (OP: rotate-keys --master --kvn,\n"
    "                         store-data --file, lock, unlock, decommission, and any\n"
    "                         other registered operation); prints the operation id\n"
    "  ops EID [--at TIME] [--all]\n"
    "                         the device's pending operations (--all: finished ones too)\n"
    "                         and its current keyset, folded from the log\n"
    "  cancel EID ID          cancel a pending operation that has not started\n"
    "  revoke EID [--reason R] revoke the device's certificate (new batch CRL) and log it\n"
    "  revoke-batch ID [--reason R] [--root-pin-file F]\n"
    "                         revoke a batch CA (new root CRL, signed by the root token)\n"
    "                         and log it\n"
    "\n"
    "EID: hexadecimal (the 32 digits of an eUICC EID). TIME: RFC 3339 UTC\n"
    "(2026-11-27T01:02:03Z, optional .fff) or milliseconds since 1970.\n"
    "\n"
    "options:\n"
    "  --workspace DIR     the workspace (default $TRUSTCHAIN_WORKSPACE or ./trustchain-work)\n"
    "  --pin-file FILE     workspace token user PIN, for the checkpoint key (default\n"
    "                      $" TC_HSM_ENV_PIN ", else <workspace>/secrets/user.pin)\n"
    "  --vkey KEY          checkpoint verifier key (default $TRUSTCHAIN_AUDIT_VKEY, else the "
    "HSM's)\n"
    "  --json              machine-readable output\n"
    "  -h, --help          print this help\n"
    "PINs are never accepted on the command line.\n";

struct dev_opts {
    const char *workspace, *pin_file, *vkey, *at, *batch, *state;
    const char *kvn, *master, *file, *actor, *reason, *root_pin_file;
    bool json, verify, all;
    const char *pos[4];
    int npos;
};

struct tc_ota_queue;
static void ops_json(struct tc_json *j, const struct tc_ota_queue *q, bool all);
static void ops_text(const struct tc_ota_queue *q, bool all);

static int parse(const char *cmd, int argc, char **argv, struct dev_opts *o)
{
    memset(o, 0, sizeof *o);
    o->workspace = tc_cli_default_workspace();
    o->vkey = getenv("TRUSTCHAIN_AUDIT_VKEY");
    if (o->vkey != NULL && o->vkey[0] == '\0')
        o->vkey = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (strcmp(a, "--verify") == 0 && strcmp(cmd, "cert") == 0) {
            o->verify = true;
            continue;
        }
        if (strcmp(a, "--all") == 0 && strcmp(cmd, "ops") == 0) {
            o->all = true;
            continue;
        }
        if (strcmp(a, "--pin") == 0)
            return tc_cli_usage_error("device %s: PINs are not accepted on the command line; "
                                      "use $%s or --pin-file",
                                      cmd, TC_HSM_ENV_PIN);
        if (strcmp(a, "--workspace") == 0)
            slot = &o->workspace;
        else if (strcmp(a, "--pin-file") == 0)
            slot = &o->pin_file;
        else if (strcmp(a, "--vkey") == 0)
            slot = &o->vkey;
        else if (strcmp(a, "--at") == 0 && (strcmp(cmd, "show") == 0 || strcmp(cmd, "ops") == 0))
            slot = &o->at;
        else if (strcmp(a, "--kvn") == 0 && strcmp(cmd, "queue") == 0)
            slot = &o->kvn;
        else if (strcmp(a, "--master") == 0 && strcmp(cmd, "queue") == 0)
            slot = &o->master;
        else if (strcmp(a, "--file") == 0 && strcmp(cmd, "queue") == 0)
            slot = &o->file;
        else if (strcmp(a, "--actor") == 0 &&
                 (strcmp(cmd, "queue") == 0 || strcmp(cmd, "cancel") == 0 ||
                  strcmp(cmd, "revoke") == 0 || strcmp(cmd, "revoke-batch") == 0))
            slot = &o->actor;
        else if (strcmp(a, "--root-pin-file") == 0 && strcmp(cmd, "revoke-batch") == 0)
            slot = &o->root_pin_file;
        else if (strcmp(a, "--reason") == 0 &&
                 (strcmp(cmd, "revoke") == 0 || strcmp(cmd, "revoke-batch") == 0))
            slot = &o->reason;
        else if (strcmp(a, "--batch") == 0 && strcmp(cmd, "list") == 0)
            slot = &o->batch;
        else if (strcmp(a, "--state") == 0 && strcmp(cmd, "list") == 0)
            slot = &o->state;
        if (slot != NULL) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0')
                return tc_cli_usage_error("device %s: %s needs a value", cmd, a);
            *slot = argv[++i];
            continue;
        }
        if (a[0] == '-' && a[1] != '\0')
            return tc_cli_usage_error("device %s: unknown option '%s' (see 'trustchain device "
                                      "--help')",
                                      cmd, a);
        if (o->npos >= (int)TC_ARRAY_LEN(o->pos))
            return tc_cli_usage_error("device %s: too many arguments", cmd);
        o->pos[o->npos++] = a;
    }
    return TC_EXIT_OK;
}

static int parse_eid(const char *cmd, const struct dev_opts *o, uint8_t eid[TC_AUDIT_EID_MAX],
                     size_t *len)
{
    if (o->npos != 1)
        return tc_cli_usage_error("device %s: give one EID", cmd);
    const char *s = o->pos[0];
    size_t n = strlen(s);
    if (n == 0 || n % 2 != 0 || n > 2 * TC_AUDIT_EID_MAX ||
        tc_hex_decode(s, n, 0, eid, TC_AUDIT_EID_MAX, len) != TC_OK || *len == 0)
        return tc_cli_usage_error("device %s: '%s' is not an EID (1 to %u bytes in hex)", cmd, s,
                                  TC_AUDIT_EID_MAX);
    return TC_EXIT_OK;
}

static int fail(tc_err rc, const char *cmd)
{
    char what[64];
    (void)snprintf(what, sizeof what, "device %s", cmd);
    return tc_cli_error(rc, what);
}

static void hexs(const uint8_t *p, size_t n, char *out, size_t out_size)
{
    if (tc_hex_encode(p, n, out, out_size) != TC_OK && out_size > 0)
        out[0] = '\0';
}

static void time_text(uint64_t ms, char out[32])
{
    if (tc_registry_time_format(ms, out, 32) != TC_OK)
        (void)snprintf(out, 32, "%llu ms", (unsigned long long)ms);
}

/* ------------------------------------------------------------ device state */

static void device_json(struct tc_json *j, const struct tc_registry_device *d)
{
    char t[32];
    tc_json_key(j, "eid");
    tc_json_hex(j, d->eid, d->eid_len);
    tc_json_key(j, "state");
    tc_json_string(j, tc_registry_state_name(d->state));
    tc_json_key(j, "batch");
    tc_json_string(j, d->batch);
    tc_json_key(j, "station");
    if (d->station[0] != '\0')
        tc_json_string(j, d->station);
    else
        tc_json_null(j);
    tc_json_key(j, "kvn");
    tc_json_uint(j, d->kvn);
    tc_json_key(j, "kcv");
    if (d->has_kcv) {
        tc_json_begin_object(j);
        static const char *const names[] = {"enc", "mac", "dek"};
        for (size_t k = 0; k < TC_AUDIT_KEYS; k++) {
            tc_json_key(j, names[k]);
            tc_json_hex(j, d->kcv[k], TC_KCV_LEN);
        }
        tc_json_end_object(j);
    } else {
        tc_json_null(j);
    }
    tc_json_key(j, "lifecycle");
    tc_json_uint(j, d->lifecycle);
    tc_json_key(j, "pubkey_sha256");
    if (d->has_pubkey)
        tc_json_hex(j, d->pubkey_sha256, TC_AUDIT_HASH_LEN);
    else
        tc_json_null(j);
    tc_json_key(j, "certificate");
    if (d->has_cert) {
        tc_json_begin_object(j);
        tc_json_key(j, "serial");
        tc_json_hex(j, d->cert_serial, d->cert_serial_len);
        tc_json_key(j, "sha256");
        tc_json_hex(j, d->cert_sha256, TC_AUDIT_HASH_LEN);
        tc_json_key(j, "stored");
        tc_json_bool(j, d->cert_stored);
        tc_json_key(j, "revoked");
        tc_json_bool(j, d->cert_revoked);
        tc_json_end_object(j);
    } else {
        tc_json_null(j);
    }
    /* The device's other valid certificates (a renewal in flight). */
    tc_json_key(j, "other_certificates");
    tc_json_begin_array(j);
    for (size_t i = 0; i < d->n_prev; i++) {
        tc_json_begin_object(j);
        tc_json_key(j, "serial");
        tc_json_hex(j, d->prev[i].serial, d->prev[i].serial_len);
        tc_json_key(j, "sha256");
        tc_json_hex(j, d->prev[i].sha256, TC_AUDIT_HASH_LEN);
        tc_json_key(j, "stored");
        tc_json_bool(j, d->prev[i].stored);
        tc_json_end_object(j);
    }
    tc_json_end_array(j);
    if (d->state == TC_REG_REJECTED || d->state == TC_REG_REVOKED) {
        tc_json_key(j, "reason");
        tc_json_uint(j, d->reason);
    }
    if (d->state == TC_REG_REJECTED) {
        tc_json_key(j, "step");
        tc_json_uint(j, d->step);
    }
    tc_json_key(j, "events");
    tc_json_uint(j, d->events);
    tc_json_key(j, "first_index");
    tc_json_uint(j, d->first_index);
    tc_json_key(j, "last_index");
    tc_json_uint(j, d->last_index);
    time_text(d->last_time_ms, t);
    tc_json_key(j, "last_time");
    tc_json_string(j, t);
}

static void device_text(const struct tc_registry_device *d)
{
    char h[2 * TC_AUDIT_HASH_LEN + 1], t[32];
    hexs(d->eid, d->eid_len, h, sizeof h);
    (void)printf("device       %s\n", h);
    (void)printf("state        %s", tc_registry_state_name(d->state));
    if (d->state == TC_REG_REJECTED)
        (void)printf(" (reason 0x%04X at step %u)", d->reason, d->step);
    else if (d->state == TC_REG_REVOKED)
        (void)printf(" (CRLReason %u)", d->reason);
    (void)printf("\nbatch        %s\n", d->batch);
    if (d->station[0] != '\0')
        (void)printf("station      %s\n", d->station);
    if (d->kvn != 0)
        (void)printf("keyset       KVN 0x%02X", d->kvn);
    if (d->has_kcv) {
        char k[3][7];
        for (size_t i = 0; i < 3; i++)
            hexs(d->kcv[i], TC_KCV_LEN, k[i], sizeof k[i]);
        (void)printf(", KCV ENC %s MAC %s DEK %s", k[0], k[1], k[2]);
    }
    if (d->kvn != 0 || d->has_kcv)
        (void)printf("\n");
    if (d->lifecycle != 0)
        (void)printf("life cycle   0x%02X\n", d->lifecycle);
    if (d->has_pubkey) {
        hexs(d->pubkey_sha256, TC_AUDIT_HASH_LEN, h, sizeof h);
        (void)printf("public key   SHA-256 %s\n", h);
    }
    if (d->has_cert) {
        char sn[2 * TC_AUDIT_SERIAL_MAX + 1];
        hexs(d->cert_serial, d->cert_serial_len, sn, sizeof sn);
        hexs(d->cert_sha256, TC_AUDIT_HASH_LEN, h, sizeof h);
        (void)printf("certificate  serial %s, SHA-256 %s%s%s\n", sn, h,
                     d->cert_stored ? "" : " (not read back from the card)",
                     d->cert_revoked ? " (revoked)" : "");
    }
    for (size_t i = 0; i < d->n_prev; i++) {
        char sn[2 * TC_AUDIT_SERIAL_MAX + 1];
        hexs(d->prev[i].serial, d->prev[i].serial_len, sn, sizeof sn);
        hexs(d->prev[i].sha256, TC_AUDIT_HASH_LEN, h, sizeof h);
        (void)printf("also valid   serial %s, SHA-256 %s%s\n", sn, h,
                     d->prev[i].stored ? "" : " (not read back from the card)");
    }
    time_text(d->last_time_ms, t);
    (void)printf("events       %llu (log indices %llu..%llu, last at %s)\n",
                 (unsigned long long)d->events, (unsigned long long)d->first_index,
                 (unsigned long long)d->last_index, t);
}

static int cmd_show(int argc, char **argv)
{
    struct dev_opts o;
    uint8_t eid[TC_AUDIT_EID_MAX];
    size_t eid_len = 0;
    int e = parse("show", argc, argv, &o);
    if (e == TC_EXIT_OK)
        e = parse_eid("show", &o, eid, &eid_len);
    if (e != TC_EXIT_OK)
        return e;
    uint64_t at = UINT64_MAX;
    if (o.at != NULL && tc_registry_time_parse(o.at, &at) != TC_OK)
        return tc_cli_usage_error("device show: --at '%s' is not a time (RFC 3339 UTC such as "
                                  "2026-11-27T01:02:03Z, or milliseconds since 1970)",
                                  o.at);
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("device show", o.workspace, o.pin_file, o.vkey, false, &e);
    if (w == NULL)
        return e;
    struct tc_registry *r = tc_cli_audit_ws_registry(w);
    struct tc_audit_log *log = tc_registry_log(r);
    struct tc_registry_device d;
    struct tc_registry_batch b;
    struct tc_ota_queue *q = NULL;
    uint64_t *idx = calloc(SHOW_EVENTS_MAX, sizeof *idx);
    uint8_t(*proofs)[TC_MERKLE_PROOF_MAX][TC_AUDIT_HASH_LEN] = NULL;
    size_t *plen = NULL;
    size_t n = 0;
    uint8_t note[TC_NOTE_MAX], root[TC_AUDIT_HASH_LEN];
    size_t note_len = 0;
    uint64_t size = 0;
    tc_err rc = idx != NULL ? TC_OK : TC_FAIL(TC_ERR_NOMEM, "out of memory");
    if (rc == TC_OK)
        rc = tc_registry_device_at(r, eid, eid_len, at, &d, idx, SHOW_EVENTS_MAX, &n);
    if (rc == TC_OK && n > SHOW_EVENTS_MAX)
        rc = TC_FAIL(TC_ERR_RANGE, "the device has more than %u events", SHOW_EVENTS_MAX);
    if (rc == TC_OK)
        rc = tc_cli_audit_ws_checkpoint(w, d.last_index + 1, true, note, sizeof note, &note_len,
                                        &size, root);
    if (rc == TC_OK) {
        proofs = calloc(n, sizeof *proofs);
        plen = calloc(n, sizeof *plen);
        if (proofs == NULL || plen == NULL)
            rc = TC_FAIL(TC_ERR_NOMEM, "out of memory");
    }
    /* Every folded event: its bytes from the log, its leaf hash, and an
     * RFC 9162 §2.1.3 inclusion proof verified against the checkpoint. */
    for (size_t i = 0; rc == TC_OK && i < n; i++) {
        uint8_t ev[TC_AUDIT_EVENT_MAX], leaf[TC_AUDIT_HASH_LEN];
        size_t ev_len = 0;
        rc = tc_audit_log_event(log, idx[i], ev, sizeof ev, &ev_len);
        if (rc == TC_OK)
            rc = tc_merkle_leaf_hash(ev, ev_len, leaf);
        if (rc == TC_OK)
            rc = tc_audit_log_prove_inclusion(log, idx[i], size, proofs[i], TC_MERKLE_PROOF_MAX,
                                              &plen[i]);
        if (rc == TC_OK)
            rc = tc_merkle_verify_inclusion(
                leaf, idx[i], size, (const uint8_t(*)[TC_AUDIT_HASH_LEN])proofs[i], plen[i], root);
    }
    if (rc != TC_OK) {
        e = fail(rc, "show");
        goto out;
    }
    /* The operations pending at that time: the fold of the same events. */
    q = calloc(1, sizeof *q);
    if (q != NULL && tc_ota_queue_load(r, eid, eid_len, at, q) != TC_OK) {
        e = fail(tc_error_last()->code, "show");
        goto out;
    }
    bool has_batch = tc_registry_batch_get(r, d.batch, &b) == TC_OK;
    bool batch_revoked = has_batch && b.revoked;
    if (batch_revoked && at != UINT64_MAX) {
        /* Revoked by then? The revocation event's own time says. */
        uint8_t bev[TC_AUDIT_EVENT_MAX];
        size_t bev_len = 0;
        struct tc_audit_event be;
        batch_revoked =
            tc_audit_log_event(log, b.revoked_index, bev, sizeof bev, &bev_len) == TC_OK &&
            tc_audit_event_decode(bev, bev_len, &be) == TC_OK && be.time_ms <= at;
    }
    char t[32], h[2 * TC_AUDIT_HASH_LEN + 1];
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "at");
        if (at == UINT64_MAX) {
            tc_json_null(&j);
        } else {
            time_text(at, t);
            tc_json_string(&j, t);
        }
        device_json(&j, &d);
        if (q != NULL)
            ops_json(&j, q, false);
        tc_json_key(&j, "batch_revoked");
        tc_json_bool(&j, batch_revoked);
        tc_json_key(&j, "checkpoint");
        tc_json_begin_object(&j);
        tc_json_key(&j, "origin");
        tc_json_string(&j, tc_registry_origin(r));
        tc_json_key(&j, "size");
        tc_json_uint(&j, size);
        tc_json_key(&j, "root");
        tc_json_hex(&j, root, sizeof root);
        char text[TC_NOTE_MAX + 1];
        memcpy(text, note, note_len);
        text[note_len] = '\0';
        tc_json_key(&j, "note");
        tc_json_string(&j, text);
        tc_json_end_object(&j);
        tc_json_key(&j, "proofs");
        tc_json_begin_array(&j);
        for (size_t i = 0; i < n; i++) {
            tc_json_begin_object(&j);
            tc_json_key(&j, "index");
            tc_json_uint(&j, idx[i]);
            tc_json_key(&j, "path");
            tc_json_begin_array(&j);
            for (size_t k = 0; k < plen[i]; k++)
                tc_json_hex(&j, proofs[i][k], TC_AUDIT_HASH_LEN);
            tc_json_end_array(&j);
            tc_json_key(&j, "verified");
            tc_json_bool(&j, true);
            tc_json_end_object(&j);
        }
        tc_json_end_array(&j);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        if (at != UINT64_MAX) {
            time_text(at, t);
            (void)printf("as of        %s\n", t);
        }
        device_text(&d);
        if (q != NULL)
            ops_text(q, false);
        if (batch_revoked)
            (void)printf("batch        %s REVOKED (CRLReason %u, log index %llu)\n", b.id, b.reason,
                         (unsigned long long)b.revoked_index);
        hexs(root, sizeof root, h, sizeof h);
        (void)printf("checkpoint   %s, size %llu, root %s (signature verified)\n",
                     tc_registry_origin(r), (unsigned long long)size, h);
        (void)printf("inclusion proofs (RFC 9162 §2.1.3), each verified:\n");
        for (size_t i = 0; i < n; i++) {
            (void)printf("  event %llu:", (unsigned long long)idx[i]);
            for (size_t k = 0; k < plen[i]; k++) {
                hexs(proofs[i][k], TC_AUDIT_HASH_LEN, h, sizeof h);
                (void)printf("\n    %s", h);
            }
            (void)printf("%s\n", plen[i] == 0 ? " (empty path: the only leaf)" : "");
        }
    }
out:
    free(q);
    free(idx);
    free(proofs);
    free(plen);
    tc_cli_audit_ws_close(w);
    return e;
}

/* ------------------------------------------------------------ history */

struct hist_ctx {
    struct tc_json *j;
    FILE *f;
};

static tc_err hist_one(void *arg, uint64_t index, const struct tc_audit_event *ev,
                       const uint8_t *event, size_t len)
{
    struct hist_ctx *c = arg;
    char t[32], h[2 * TC_AUDIT_EVENT_MAX + 1];
    time_text(ev->time_ms, t);
    if (c->j != NULL) {
        tc_json_begin_object(c->j);
        tc_json_key(c->j, "index");
        tc_json_uint(c->j, index);
        tc_json_key(c->j, "time");
        tc_json_string(c->j, t);
        tc_json_key(c->j, "type");
        tc_json_string(c->j, tc_audit_event_type_name(ev->type));
        if (ev->fields & TC_AUDIT_HAS_STATION) {
            tc_json_key(c->j, "station");
            tc_json_string(c->j, ev->station);
        }
        if (ev->fields & TC_AUDIT_HAS_ACTOR) {
            tc_json_key(c->j, "actor");
            tc_json_string(c->j, ev->actor);
        }
        tc_json_key(c->j, "event");
        tc_json_hex(c->j, event, len);
        tc_json_end_object(c->j);
        return TC_OK;
    }
    (void)fprintf(c->f, "%llu %s %s", (unsigned long long)index, t,
                  tc_audit_event_type_name(ev->type));
    if (ev->fields & TC_AUDIT_HAS_STATION)
        (void)fprintf(c->f, " station=%s", ev->station);
    if (ev->fields & TC_AUDIT_HAS_ACTOR)
        (void)fprintf(c->f, " actor=%s", ev->actor);
    if (ev->fields & TC_AUDIT_HAS_KVN)
        (void)fprintf(c->f, " kvn=0x%02X", ev->kvn);
    if (ev->fields & TC_AUDIT_HAS_PREV_KVN)
        (void)fprintf(c->f, " prev_kvn=0x%02X", ev->prev_kvn);
    if (ev->fields & TC_AUDIT_HAS_KCV) {
        hexs(&ev->kcv[0][0], sizeof ev->kcv, h, sizeof h);
        (void)fprintf(c->f, " kcv=%s", h);
    }
    if (ev->fields & TC_AUDIT_HAS_CERT_SERIAL) {
        hexs(ev->cert_serial, ev->cert_serial_len, h, sizeof h);
        (void)fprintf(c->f, " serial=%s", h);
    }
    if (ev->fields & TC_AUDIT_HAS_CERT_SHA256) {
        hexs(ev->cert_sha256, TC_AUDIT_HASH_LEN, h, sizeof h);
        (void)fprintf(c->f, " cert_sha256=%s", h);
    }
    if (ev->fields & TC_AUDIT_HAS_LIFECYCLE)
        (void)fprintf(c->f, " lifecycle=0x%02X", ev->lifecycle);
    if (ev->fields & TC_AUDIT_HAS_REASON)
        (void)fprintf(c->f, " reason=%u", ev->reason);
    if (ev->fields & TC_AUDIT_HAS_STEP)
        (void)fprintf(c->f, " step=%u", ev->step);
    if (ev->fields & TC_AUDIT_HAS_OP_ID)
        (void)fprintf(c->f, " op=%llu", (unsigned long long)ev->op_id);
    if (ev->fields & TC_AUDIT_HAS_OP_KIND)
        (void)fprintf(c->f, " op_kind=%s", tc_ota_op_name(ev->op_kind));
    if (ev->fields & TC_AUDIT_HAS_MASTER)
        (void)fprintf(c->f, " master=%s", ev->master);
    if (ev->fields & TC_AUDIT_HAS_DATA_SHA256) {
        hexs(ev->data_sha256, TC_AUDIT_HASH_LEN, h, sizeof h);
        (void)fprintf(c->f, " data_sha256=%s", h);
    }
    (void)fprintf(c->f, "\n");
    return TC_OK;
}

static int cmd_history(int argc, char **argv)
{
    struct dev_opts o;
    uint8_t eid[TC_AUDIT_EID_MAX];
    size_t eid_len = 0;
    int e = parse("history", argc, argv, &o);
    if (e == TC_EXIT_OK)
        e = parse_eid("history", &o, eid, &eid_len);
    if (e != TC_EXIT_OK)
        return e;
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("device history", o.workspace, NULL, NULL, true, &e);
    if (w == NULL)
        return e;
    struct tc_json j;
    /* Collected first so that a failure prints nothing on stdout. */
    char *buf = NULL;
    size_t blen = 0;
    FILE *mem = open_memstream(&buf, &blen);
    struct hist_ctx c = {o.json ? &j : NULL, mem};
    tc_err rc = mem != NULL ? TC_OK : TC_FAIL(TC_ERR_NOMEM, "out of memory");
    if (rc == TC_OK) {
        if (o.json) {
            tc_json_init(&j, mem);
            tc_json_begin_array(&j);
        }
        rc = tc_registry_device_history(tc_cli_audit_ws_registry(w), eid, eid_len, hist_one, &c);
        if (o.json) {
            tc_json_end_array(&j);
            tc_json_finish(&j);
        }
        (void)fclose(mem);
    }
    if (rc != TC_OK)
        e = fail(rc, "history");
    else
        (void)fwrite(buf, 1, blen, stdout);
    free(buf);
    tc_cli_audit_ws_close(w);
    return e;
}

/* ------------------------------------------------------------ list */

struct list_ctx {
    struct tc_json *j;
    uint64_t n;
};

static tc_err list_one(void *arg, const struct tc_registry_device *d)
{
    struct list_ctx *c = arg;
    c->n++;
    if (c->j != NULL) {
        tc_json_begin_object(c->j);
        device_json(c->j, d);
        tc_json_end_object(c->j);
        return TC_OK;
    }
    char h[2 * TC_AUDIT_EID_MAX + 1], t[32];
    hexs(d->eid, d->eid_len, h, sizeof h);
    time_text(d->last_time_ms, t);
    (void)printf("%s %-14s %s kvn=0x%02X last=%s\n", h, tc_registry_state_name(d->state), d->batch,
                 d->kvn, t);
    return TC_OK;
}

static int cmd_list(int argc, char **argv)
{
    struct dev_opts o;
    int e = parse("list", argc, argv, &o);
    if (e != TC_EXIT_OK)
        return e;
    if (o.npos > 0)
        return tc_cli_usage_error("device list: unexpected argument '%s'", o.pos[0]);
    enum tc_registry_state st = 0;
    if (o.state != NULL && tc_registry_state_parse(o.state, &st) != TC_OK)
        return tc_cli_usage_error("device list: unknown state '%s' (see 'trustchain device "
                                  "--help')",
                                  o.state);
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("device list", o.workspace, NULL, NULL, true, &e);
    if (w == NULL)
        return e;
    struct tc_json j;
    struct list_ctx c = {o.json ? &j : NULL, 0};
    if (o.json) {
        tc_json_init(&j, stdout);
        tc_json_begin_array(&j);
    }
    tc_err rc = tc_registry_device_list(tc_cli_audit_ws_registry(w), o.batch, st, list_one, &c);
    if (o.json) {
        tc_json_end_array(&j);
        tc_json_finish(&j);
    }
    if (rc != TC_OK)
        e = fail(rc, "list");
    tc_cli_audit_ws_close(w);
    return e;
}

/* ------------------------------------------------------------ cert */

/* DER of a PEM or DER file under the workspace's PKI directory. */
static tc_err load_der(const char *ws, const char *rel, struct tc_buf *der)
{
    char path[4200];
    int n = snprintf(path, sizeof path, "%s/pki/%s", ws, rel);
    TC_ENSURE_MSG(n > 0 && (size_t)n < sizeof path, TC_ERR_ARG, "workspace path too long");
    struct tc_buf raw;
    tc_buf_init_heap(&raw, 1u << 20);
    tc_err rc = tc_cli_read_file(path, &raw);
    if (rc == TC_OK)
        rc = tc_pki_der_from_pem(raw.data, raw.len, der);
    tc_buf_free(&raw);
    return rc;
}

static int cmd_cert(int argc, char **argv)
{
    struct dev_opts o;
    uint8_t eid[TC_AUDIT_EID_MAX];
    size_t eid_len = 0;
    int e = parse("cert", argc, argv, &o);
    if (e == TC_EXIT_OK)
        e = parse_eid("cert", &o, eid, &eid_len);
    if (e != TC_EXIT_OK)
        return e;
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("device cert", o.workspace, NULL, NULL, true, &e);
    if (w == NULL)
        return e;
    struct tc_registry *r = tc_cli_audit_ws_registry(w);
    struct tc_registry_device d;
    struct tc_buf dev, ca, root, pem, crl, rcrl;
    tc_buf_init_heap(&dev, TC_REGISTRY_CERT_MAX);
    tc_buf_init_heap(&ca, 1u << 16);
    tc_buf_init_heap(&root, 1u << 16);
    tc_buf_init_heap(&pem, 1u << 18);
    tc_buf_init_heap(&crl, 1u << 20);
    tc_buf_init_heap(&rcrl, 1u << 20);
    uint8_t der[TC_REGISTRY_CERT_MAX];
    size_t der_len = 0;
    char rel[256];
    tc_err rc = tc_registry_device_at(r, eid, eid_len, UINT64_MAX, &d, NULL, 0, NULL);
    if (rc == TC_OK && !d.has_cert)
        rc = TC_FAIL(TC_ERR_NOT_FOUND, "the log records no certificate for this device");
    /* Content-addressed: only DER whose SHA-256 is the logged one is printed. */
    if (rc == TC_OK)
        rc = tc_registry_cert_get(r, d.cert_sha256, der, sizeof der, &der_len);
    if (rc == TC_ERR_NOT_FOUND && d.has_cert) {
        /* Issued by `trustchain pki issue`: <ws>/pki/batches/<b>/devices/<serial>.pem */
        char sn[2 * TC_AUDIT_SERIAL_MAX + 1];
        hexs(d.cert_serial, d.cert_serial_len, sn, sizeof sn);
        (void)snprintf(rel, sizeof rel, "batches/%s/devices/%s.pem", d.batch, sn);
        rc = load_der(o.workspace, rel, &dev);
        uint8_t h[TC_AUDIT_HASH_LEN];
        struct tc_buf tmp;
        tc_buf_init_fixed(&tmp, der, sizeof der);
        if (rc == TC_OK) {
            tc_buf_put(&tmp, dev.data, dev.len);
            rc = tc_buf_status(&tmp);
        }
        if (rc == TC_OK)
            der_len = dev.len;
        if (rc == TC_OK)
            rc = tc_registry_cert_put(r, der, der_len, h);
        if (rc == TC_OK && memcmp(h, d.cert_sha256, sizeof h) != 0)
            rc = TC_FAIL(TC_ERR_VERIFY, "pki/%s does not match the certificate SHA-256 in the log",
                         rel);
        if (rc == TC_ERR_NOT_FOUND)
            rc = TC_FAIL(TC_ERR_NOT_FOUND, "the certificate is neither in the registry nor in "
                                           "the workspace PKI");
    }
    (void)snprintf(rel, sizeof rel, "batches/%s/ca.pem", d.batch);
    if (rc == TC_OK)
        rc = load_der(o.workspace, rel, &ca);
    if (rc == TC_OK)
        rc = load_der(o.workspace, "root.pem", &root);
    if (rc == TC_OK && o.verify) {
        char reason[256] = "";
        (void)snprintf(rel, sizeof rel, "batches/%s/crl.pem", d.batch);
        rc = load_der(o.workspace, rel, &crl);
        if (rc == TC_OK)
            rc = load_der(o.workspace, "root-crl.pem", &rcrl);
        struct tc_pki_chain c = {.root = root.data,
                                 .root_len = root.len,
                                 .batch = ca.data,
                                 .batch_len = ca.len,
                                 .device = der,
                                 .device_len = der_len,
                                 .root_crl = rcrl.data,
                                 .root_crl_len = rcrl.len,
                                 .batch_crl = crl.data,
                                 .batch_crl_len = crl.len};
        if (rc == TC_OK)
            rc = tc_pki_verify(&c, reason, sizeof reason);
    }
    if (rc == TC_OK)
        rc = tc_pki_pem_encode("CERTIFICATE", der, der_len, &pem);
    if (rc == TC_OK)
        rc = tc_pki_pem_encode("CERTIFICATE", ca.data, ca.len, &pem);
    if (rc == TC_OK)
        rc = tc_pki_pem_encode("CERTIFICATE", root.data, root.len, &pem);
    if (rc != TC_OK) {
        e = fail(rc, "cert");
    } else if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "eid");
        tc_json_hex(&j, d.eid, d.eid_len);
        tc_json_key(&j, "sha256");
        tc_json_hex(&j, d.cert_sha256, TC_AUDIT_HASH_LEN);
        tc_json_key(&j, "verified");
        tc_json_bool(&j, o.verify);
        char *text = malloc(pem.len + 1);
        if (text != NULL) {
            memcpy(text, pem.data, pem.len);
            text[pem.len] = '\0';
            tc_json_key(&j, "chain_pem");
            tc_json_string(&j, text);
            free(text);
        }
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)fwrite(pem.data, 1, pem.len, stdout);
    }
    tc_buf_free(&dev);
    tc_buf_free(&ca);
    tc_buf_free(&root);
    tc_buf_free(&pem);
    tc_buf_free(&crl);
    tc_buf_free(&rcrl);
    tc_cli_audit_ws_close(w);
    return e;
}

/* ------------------------------------------------------------ operations */

static const char *op_status_name(enum tc_ota_op_status s)
{
    switch (s) {
    case TC_OTA_OP_PENDING:
        return "pending";
    case TC_OTA_OP_DONE:
        return "done";
    case TC_OTA_OP_FAILED:
        return "failed";
    case TC_OTA_OP_CANCELLED:
        return "cancelled";
    default:
        return "unknown";
    }
}

static void ops_json(struct tc_json *j, const struct tc_ota_queue *q, bool all)
{
    char t[32], h[2 * TC_AUDIT_HASH_LEN + 1];
    tc_json_key(j, "keyset");
    tc_json_begin_object(j);
    tc_json_key(j, "kvn");
    tc_json_uint(j, q->kvn);
    tc_json_key(j, "master");
    if (q->master[0] != '\0')
        tc_json_string(j, q->master);
    else
        tc_json_null(j); /* the line's master */
    tc_json_end_object(j);
    tc_json_key(j, "operations");
    tc_json_begin_array(j);
    for (size_t i = 0; i < q->n; i++) {
        const struct tc_ota_op *op = &q->ops[i];
        if (!all && op->status != TC_OTA_OP_PENDING)
            continue;
        tc_json_begin_object(j);
        tc_json_key(j, "id");
        tc_json_uint(j, op->id);
        tc_json_key(j, "op");
        tc_json_string(j, tc_ota_op_name(op->code));
        tc_json_key(j, "status");
        tc_json_string(j, op_status_name(op->status));
        tc_json_key(j, "step");
        tc_json_uint(j, op->step);
        time_text(op->queued_ms, t);
        tc_json_key(j, "queued");
        tc_json_string(j, t);
        tc_json_key(j, "actor");
        tc_json_string(j, op->actor);
        if (op->kvn != 0) {
            tc_json_key(j, "kvn");
            tc_json_uint(j, op->kvn);
        }
        if (op->master[0] != '\0') {
            tc_json_key(j, "master");
            tc_json_string(j, op->master);
        }
        if (op->has_data) {
            hexs(op->data_sha256, TC_AUDIT_HASH_LEN, h, sizeof h);
            tc_json_key(j, "data_sha256");
            tc_json_string(j, h);
        }
        if (op->status == TC_OTA_OP_FAILED) {
            tc_json_key(j, "reason");
            tc_json_uint(j, op->reason);
        }
        tc_json_end_object(j);
    }
    tc_json_end_array(j);
}

static void ops_text(const struct tc_ota_queue *q, bool all)
{
    char t[32];
    (void)printf("keyset       KVN 0x%02X from master %s\n", q->kvn,
                 q->master[0] != '\0' ? q->master : "(the line's)");
    size_t shown = 0;
    for (size_t i = 0; i < q->n; i++) {
        const struct tc_ota_op *op = &q->ops[i];
        if (!all && op->status != TC_OTA_OP_PENDING)
            continue;
        time_text(op->queued_ms, t);
        (void)printf("operation    %llu %s %s (queued %s by %s", (unsigned long long)op->id,
                     tc_ota_op_name(op->code), op_status_name(op->status), t, op->actor);
        if (op->kvn != 0)
            (void)printf(", kvn 0x%02X", op->kvn);
        if (op->master[0] != '\0')
            (void)printf(", master %s", op->master);
        if (op->step != 0)
            (void)printf(", step %u", op->step);
        if (op->status == TC_OTA_OP_FAILED)
            (void)printf(", reason %u", op->reason);
        (void)printf(")\n");
        shown++;
    }
    if (shown == 0)
        (void)printf("operations   none %s\n", all ? "" : "pending");
}

static int cmd_ops(int argc, char **argv)
{
    struct dev_opts o;
    uint8_t eid[TC_AUDIT_EID_MAX];
    size_t eid_len = 0;
    uint64_t at = UINT64_MAX;
    int e = parse("ops", argc, argv, &o);
    if (e == TC_EXIT_OK)
        e = parse_eid("ops", &o, eid, &eid_len);
    if (e != TC_EXIT_OK)
        return e;
    if (o.at != NULL && tc_registry_time_parse(o.at, &at) != TC_OK)
        return tc_cli_usage_error("device ops: --at '%s' is not a time", o.at);
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("device ops", o.workspace, NULL, NULL, true, &e);
    if (w == NULL)
        return e;
    struct tc_ota_queue *q = calloc(1, sizeof *q);
    tc_err rc = q != NULL ? TC_OK : TC_FAIL(TC_ERR_NOMEM, "out of memory");
    if (rc == TC_OK)
        rc = tc_ota_queue_load(tc_cli_audit_ws_registry(w), eid, eid_len, at, q);
    if (rc != TC_OK) {
        e = fail(rc, "ops");
    } else if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "eid");
        tc_json_hex(&j, eid, eid_len);
        ops_json(&j, q, o.all);
        tc_json_key(&j, "pending");
        tc_json_uint(&j, q->pending);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        ops_text(q, o.all);
    }
    free(q);
    tc_cli_audit_ws_close(w);
    return e;
}

/* The data of store-data, read whole (at most TC_OTA_DATA_MAX bytes). */
static tc_err read_data(const char *path, uint8_t *out, size_t out_size, size_t *len)
{
    FILE *f = fopen(path, "rb");
    TC_ENSURE_MSG(f != NULL, TC_ERR_IO, "cannot open %s", path);
    *len = fread(out, 1, out_size, f);
    bool more = fgetc(f) != EOF;
    (void)fclose(f);
    TC_ENSURE_MSG(!more, TC_ERR_RANGE, "%s exceeds %zu bytes", path, out_size);
    return TC_OK;
}

static int cmd_queue(int argc, char **argv)
{
    struct dev_opts o;
    int e = parse("queue", argc, argv, &o);
    if (e != TC_EXIT_OK)
        return e;
    if (o.npos != 2)
        return tc_cli_usage_error("device queue: give an EID and an operation");
    const struct tc_ota_op_kind *k = tc_ota_op_kind_by_name(o.pos[1]);
    if (k == NULL)
        return tc_cli_usage_error("device queue: unknown operation '%s' (see 'trustchain device "
                                  "--help')",
                                  o.pos[1]);
    uint64_t kvn = 0;
    if ((k->params & TC_OTA_PARAM_KVN) &&
        (o.kvn == NULL || tc_parse_uint(o.kvn, 0x7F, &kvn) != TC_OK || kvn == 0))
        return tc_cli_usage_error("device queue: %s needs --kvn 0x01..0x7F", k->name);
    if ((k->params & TC_OTA_PARAM_MASTER) && o.master == NULL)
        return tc_cli_usage_error("device queue: %s needs --master NAME", k->name);
    if ((k->params & TC_OTA_PARAM_DATA) && o.file == NULL)
        return tc_cli_usage_error("device queue: %s needs --file FILE", k->name);
    if ((!(k->params & TC_OTA_PARAM_KVN) && o.kvn != NULL) ||
        (!(k->params & TC_OTA_PARAM_MASTER) && o.master != NULL) ||
        (!(k->params & TC_OTA_PARAM_DATA) && o.file != NULL))
        return tc_cli_usage_error("device queue: %s takes no such option", k->name);
    uint8_t data[TC_OTA_DATA_MAX];
    size_t data_len = 0;
    if (o.file != NULL) {
        tc_err rc = read_data(o.file, data, sizeof data, &data_len);
        if (rc != TC_OK)
            return fail(rc, "queue");
    }
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("device queue", o.workspace, NULL, NULL, false, &e);
    if (w == NULL)
        return e;
    struct tc_ota_queue_request rq = {.eid = o.pos[0],
                                      .code = k->code,
                                      .actor = o.actor != NULL ? o.actor : "operator",
                                      .kvn = (uint8_t)kvn,
                                      .master = o.master,
                                      .data = o.file != NULL ? data : NULL,
                                      .data_len = data_len,
                                      .workspace = o.workspace};
    uint64_t id = 0;
    tc_err rc = tc_ota_queue_add(tc_cli_audit_ws_registry(w), &rq, &id);
    if (rc != TC_OK) {
        e = fail(rc, "queue");
    } else if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "id");
        tc_json_uint(&j, id);
        tc_json_key(&j, "op");
        tc_json_string(&j, k->name);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)printf("queued %s for %s: operation %llu\n", k->name, o.pos[0],
                     (unsigned long long)id);
    }
    tc_cli_audit_ws_close(w);
    return e;
}

static int cmd_cancel(int argc, char **argv)
{
    struct dev_opts o;
    int e = parse("cancel", argc, argv, &o);
    if (e != TC_EXIT_OK)
        return e;
    uint64_t id = 0;
    if (o.npos != 2 || tc_parse_uint(o.pos[1], UINT64_MAX, &id) != TC_OK)
        return tc_cli_usage_error("device cancel: give an EID and an operation id");
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("device cancel", o.workspace, NULL, NULL, false, &e);
    if (w == NULL)
        return e;
    tc_err rc = tc_ota_queue_cancel(tc_cli_audit_ws_registry(w), o.pos[0], id,
                                    o.actor != NULL ? o.actor : "operator");
    if (rc != TC_OK)
        e = fail(rc, "cancel");
    else
        (void)printf("cancelled operation %llu\n", (unsigned long long)id);
    tc_cli_audit_ws_close(w);
    return e;
}

/* ------------------------------------------------------------ revocation */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The pki group does the CRL (its own HSM session, closed again before the
 * registry is opened); the event is logged once the CRL is published. */
struct argv_pool {
    char mem[8192];
    size_t used;
    char *av[16];
    int ac;
};

static bool argv_add(struct argv_pool *p, const char *a)
{
    size_t n = strlen(a) + 1;
    if (p->ac >= (int)TC_ARRAY_LEN(p->av) - 1 || n > sizeof p->mem - p->used)
        return false;
    memcpy(p->mem + p->used, a, n);
    p->av[p->ac++] = p->mem + p->used;
    p->av[p->ac] = NULL;
    p->used += n;
    return true;
}

/* The pki group does the CRL (its own HSM session, closed again before the
 * registry is opened); the event is logged once the CRL is published. */
static int run_pki(const char *sub, const char *ws, const char *pin_file, const char *batch,
                   const char *serial, const char *reason)
{
    struct argv_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return tc_cli_error(TC_FAIL(TC_ERR_NOMEM, "out of memory"), "device");
    bool ok = argv_add(p, "pki") && argv_add(p, sub) && argv_add(p, "--workspace") &&
              argv_add(p, ws) && argv_add(p, "--batch") && argv_add(p, batch);
    if (ok && serial != NULL)
        ok = argv_add(p, "--serial") && argv_add(p, serial);
    if (ok && reason != NULL)
        ok = argv_add(p, "--reason") && argv_add(p, reason);
    if (ok && pin_file != NULL)
        ok = argv_add(p, strcmp(sub, "revoke-batch") == 0 ? "--root-pin-file" : "--pin-file") &&
             argv_add(p, pin_file);
    int rc = ok ? tc_cli_pki(p->ac, p->av) : tc_cli_usage_error("device: arguments too long");
    free(p);
    return rc;
}

/* The serial is in the batch's revoked list already (revoked.txt,
 * "<serial> <time> <reason> <label>"). */
static bool revoked_listed(const char *ws, const char *batch, const char *serial)
{
    char path[4200], line[256];
    int w = snprintf(path, sizeof path, "%s/pki/batches/%s/revoked.txt", ws, batch);
    if (w <= 0 || (size_t)w >= sizeof path)
        return false;
    FILE *f = fopen(path, "r");
    bool found = false;
    size_t n = strlen(serial);
    while (f != NULL && !found && fgets(line, sizeof line, f) != NULL)
        found = strncasecmp(line, serial, n) == 0 && line[n] == ' ';
    if (f != NULL)
        (void)fclose(f);
    return found;
}

static int reason_code(const char *cmd, const char *v, uint16_t *out)
{
    /* RFC 5280 §5.3.1 CRLReason; the pki group checks names the same way. */
    static const char *const names[] = {
        "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
        "superseded",    "cessationOfOperation", "certificateHold", "",
        "removeFromCRL", "privilegeWithdrawn",   "aACompromise"};
    *out = 0;
    if (v == NULL)
        return TC_EXIT_OK;
    for (size_t i = 0; i < TC_ARRAY_LEN(names); i++) {
        if (names[i][0] != '\0' && strcmp(v, names[i]) == 0) {
            *out = (uint16_t)i;
            return TC_EXIT_OK;
        }
    }
    uint64_t n = 0;
    if (tc_parse_uint(v, 10, &n) == TC_OK && n != 7) {
        *out = (uint16_t)n;
        return TC_EXIT_OK;
    }
    return tc_cli_usage_error("device %s: unknown revocation reason '%s'", cmd, v);
}

/* The revoked device can never connect again: its pending operations end
 * (op-failed, reason revoked), a decommission whose answer was lost among
 * them. */
static int close_revoked(struct tc_cli_audit_ws *w, const uint8_t *eid, size_t eid_len,
                         const char *name, const char *actor)
{
    size_t n = 0;
    tc_err rc = tc_ota_queue_close_revoked(tc_cli_audit_ws_registry(w), eid, eid_len,
                                           actor != NULL ? actor : "operator", &n);
    if (rc != TC_OK)
        return fail(rc, "revoke: ending the device's pending operations");
    if (n > 0)
        (void)printf("logged op-failed (revoked) for %zu pending operation%s of %s\n", n,
                     n == 1 ? "" : "s", name);
    return TC_EXIT_OK;
}

static int cmd_revoke(int argc, char **argv)
{
    struct dev_opts o;
    uint8_t eid[TC_AUDIT_EID_MAX];
    size_t eid_len = 0;
    uint16_t reason = 0;
    int e = parse("revoke", argc, argv, &o);
    if (e == TC_EXIT_OK)
        e = parse_eid("revoke", &o, eid, &eid_len);
    if (e == TC_EXIT_OK)
        e = reason_code("revoke", o.reason, &reason);
    if (e != TC_EXIT_OK)
        return e;
    /* Every certificate the log shows issued to the device and not
     * revoked: after an abandoned renewal the registry's current
     * certificate is not the only valid one. */
    struct tc_registry_device d;
    struct tc_ota_cert_ref certs[TC_OTA_CERTS_MAX];
    size_t n = 0;
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("device revoke", o.workspace, NULL, NULL, true, &e);
    if (w == NULL)
        return e;
    tc_err rc = tc_registry_device_get(tc_cli_audit_ws_registry(w), eid, eid_len, &d);
    if (rc == TC_OK)
        rc = tc_ota_unrevoked_certs(tc_cli_audit_ws_registry(w), eid, eid_len, certs,
                                    TC_ARRAY_LEN(certs), &n);
    tc_cli_audit_ws_close(w);
    if (rc == TC_OK && n == 0)
        rc = TC_FAIL(TC_ERR_STATE, "device %s has no certificate that is not revoked", o.pos[0]);
    if (rc != TC_OK)
        return fail(rc, "revoke");
    char rs[8];
    (void)snprintf(rs, sizeof rs, "%u", reason);
    /* `pki revoke --serial` finds a line-issued certificate in the
     * registry when the batch's issued.txt does not list it. */
    for (size_t i = 0; i < n; i++) {
        char sn[2 * TC_AUDIT_SERIAL_MAX + 1];
        rc = tc_hex_encode(certs[i].serial, certs[i].serial_len, sn, sizeof sn);
        if (rc != TC_OK)
            return fail(rc, "revoke");
        if (!revoked_listed(o.workspace, d.batch, sn) &&
            (e = run_pki("revoke", o.workspace, o.pin_file, d.batch, sn, rs)) != TC_EXIT_OK)
            return e;
    }
    w = tc_cli_audit_ws_open("device revoke", o.workspace, NULL, NULL, false, &e);
    if (w == NULL)
        return e;
    for (size_t i = 0; i < n && e == TC_EXIT_OK; i++) {
        struct tc_audit_event ev;
        memset(&ev, 0, sizeof ev);
        ev.type = TC_AUDIT_CERT_REVOKED;
        ev.time_ms = wall_ms();
        ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR |
                    TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256 | TC_AUDIT_HAS_REASON;
        memcpy(ev.eid, eid, eid_len);
        ev.eid_len = eid_len;
        (void)snprintf(ev.batch, sizeof ev.batch, "%s", d.batch);
        (void)snprintf(ev.actor, sizeof ev.actor, "%s", o.actor != NULL ? o.actor : "operator");
        memcpy(ev.cert_serial, certs[i].serial, certs[i].serial_len);
        ev.cert_serial_len = certs[i].serial_len;
        memcpy(ev.cert_sha256, certs[i].sha256, TC_AUDIT_HASH_LEN);
        ev.reason = reason;
        uint64_t index = 0;
        rc = tc_registry_append(tc_cli_audit_ws_registry(w), &ev, &index);
        if (rc != TC_OK)
            e = fail(rc, "revoke");
        else
            (void)printf("logged cert-revoked for %s (log index %llu)\n", o.pos[0],
                         (unsigned long long)index);
    }
    if (e == TC_EXIT_OK)
        e = close_revoked(w, eid, eid_len, o.pos[0], o.actor);
    tc_cli_audit_ws_close(w);
    return e;
}

/* A device of a revoked batch, for close_revoked. */
struct batch_devs {
    uint8_t (*eids)[TC_AUDIT_EID_MAX];
    size_t *lens;
    size_t n, cap;
};

static tc_err batch_dev(void *arg, const struct tc_registry_device *d)
{
    struct batch_devs *b = arg;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        uint8_t(*eids)[TC_AUDIT_EID_MAX] = realloc(b->eids, cap * sizeof *eids);
        if (eids != NULL)
            b->eids = eids;
        size_t *lens = realloc(b->lens, cap * sizeof *lens);
        if (lens != NULL)
            b->lens = lens;
        TC_ENSURE(eids != NULL && lens != NULL, TC_ERR_NOMEM);
        b->cap = cap;
    }
    memcpy(b->eids[b->n], d->eid, d->eid_len);
    b->lens[b->n++] = d->eid_len;
    return TC_OK;
}

static int cmd_revoke_batch(int argc, char **argv)
{
    struct dev_opts o;
    uint16_t reason = 0;
    int e = parse("revoke-batch", argc, argv, &o);
    if (e == TC_EXIT_OK && o.npos != 1)
        e = tc_cli_usage_error("device revoke-batch: give one batch ID");
    if (e == TC_EXIT_OK)
        e = reason_code("revoke-batch", o.reason, &reason);
    if (e != TC_EXIT_OK)
        return e;
    if (strlen(o.pos[0]) > TC_AUDIT_ID_MAX)
        return tc_cli_usage_error("device revoke-batch: batch ID too long");
    char rs[8];
    (void)snprintf(rs, sizeof rs, "%u", reason);
    e = run_pki("revoke-batch", o.workspace, o.root_pin_file, o.pos[0], NULL, rs);
    if (e != TC_EXIT_OK)
        return e;
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("device revoke-batch", o.workspace, NULL, NULL, false, &e);
    if (w == NULL)
        return e;
    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_BATCH_REVOKED;
    ev.time_ms = wall_ms();
    ev.fields = TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_REASON;
    (void)snprintf(ev.batch, sizeof ev.batch, "%s", o.pos[0]);
    (void)snprintf(ev.actor, sizeof ev.actor, "%s", o.actor != NULL ? o.actor : "operator");
    ev.reason = reason;
    uint64_t index = 0;
    tc_err rc = tc_registry_append(tc_cli_audit_ws_registry(w), &ev, &index);
    if (rc != TC_OK)
        e = fail(rc, "revoke-batch");
    else
        (void)printf("logged batch-revoked for %s (log index %llu)\n", o.pos[0],
                     (unsigned long long)index);
    /* Every device of the batch is refused at TLS from now on. */
    struct batch_devs b = {0};
    if (e == TC_EXIT_OK) {
        rc = tc_registry_device_list(tc_cli_audit_ws_registry(w), o.pos[0], 0, batch_dev, &b);
        if (rc != TC_OK)
            e = fail(rc, "revoke-batch: listing the batch's devices");
    }
    for (size_t i = 0; i < b.n && e == TC_EXIT_OK; i++) {
        char name[2 * TC_AUDIT_EID_MAX + 1];
        if (tc_hex_encode(b.eids[i], b.lens[i], name, sizeof name) != TC_OK)
            name[0] = '\0';
        e = close_revoked(w, b.eids[i], b.lens[i], name, o.actor);
    }
    free(b.eids);
    free(b.lens);
    tc_cli_audit_ws_close(w);
    return e;
}

static const struct tc_cli_cmd cmds[] = {
    {"show", "credential state at a moment, with verified inclusion proofs", cmd_show},
    {"history", "every event of a device", cmd_history},
    {"list", "devices by batch and state", cmd_list},
    {"cert", "the device certificate and its chain (PEM)", cmd_cert},
    {"queue", "queue an over-the-air operation for a device", cmd_queue},
    {"ops", "a device's operations and current keyset", cmd_ops},
    {"cancel", "cancel a pending operation that has not started", cmd_cancel},
    {"revoke", "revoke a device's certificate (batch CRL) and log it", cmd_revoke},
    {"revoke-batch", "revoke a batch CA (root CRL) and log it", cmd_revoke_batch},
};

int tc_cli_device(int argc, char **argv)
{
    return tc_cli_group("device", usage, cmds, TC_ARRAY_LEN(cmds), argc, argv);
}
