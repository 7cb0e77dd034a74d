/*
 * trustchain audit: the workspace's verifiable log (<ws>/registry.db) —
 * append canonical events, sign and print checkpoints with the HSM's
 * Ed25519 key (label tc:audit:checkpoint, created on first use), prove
 * inclusion, verify everything, rebuild the registry projection, export
 * tlog tiles (docs/registry.md, docs/audit-log.md). Also the plumbing the
 * device group shares: opening the registry, the checkpoint key, a verified
 * checkpoint covering a given size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <trustchain/audit.h>
#include <trustchain/hsm.h>
#include <trustchain/ota_ops.h>
#include <trustchain/registry.h>

#include "cli.h"

#define VKEY_ENV "TRUSTCHAIN_AUDIT_VKEY"

static const char usage[] =
    "usage: trustchain audit <command> [options]\n"
    "\n"
    "commands:\n"
    "  append [HEX...]     append canonical events (hex; one per argument, or one per line\n"
    "                      on standard input); prints the index of each\n"
    "  checkpoint          print the latest signed checkpoint (note text); signs a new one\n"
    "                      with the HSM key first if the log has grown (unless --no-sign)\n"
    "  verifier-key        print the checkpoint verifier key (c2sp.org/signed-note)\n"
    "  verify              recompute the whole tree, check every checkpoint signature and\n"
    "                      the consistency of successive checkpoints, check the registry\n"
    "                      projection against a rebuild from the log\n"
    "  prove INDEX         inclusion proof of event INDEX against the latest checkpoint\n"
    "  rebuild             rebuild the registry projection from the log\n"
    "  export-tiles DIR    write the log as C2SP tlog-tiles static files under DIR\n"
    "\n"
    "options:\n"
    "  --workspace DIR     the workspace (default $TRUSTCHAIN_WORKSPACE or ./trustchain-work)\n"
    "  --pin-file FILE     workspace token user PIN (default $" TC_HSM_ENV_PIN ", else\n"
    "                      <workspace>/secrets/user.pin)\n"
    "  --vkey KEY          checkpoint verifier key to verify with (default $" VKEY_ENV ",\n"
    "                      else the HSM's key)\n"
    "  --no-sign           checkpoint: print the stored checkpoint, never sign\n"
    "  --json              machine-readable output\n"
    "  -h, --help          print this help\n"
    "PINs are never accepted on the command line.\n";

struct audit_opts {
    const char *workspace, *pin_file, *vkey;
    bool json, no_sign;
    const char *pos[64];
    int npos;
};

static const struct tc_cli_opt audit_options[] = {
    TC_CLI_OPT_VALUE_AT("--workspace", struct audit_opts, workspace),
    TC_CLI_OPT_VALUE_AT("--pin-file", struct audit_opts, pin_file),
    TC_CLI_OPT_VALUE_AT("--vkey", struct audit_opts, vkey),
    TC_CLI_OPT_FLAG_AT("--json", struct audit_opts, json),
    TC_CLI_OPT_FLAG_AT("--no-sign", struct audit_opts, no_sign),
    TC_CLI_OPT_REFUSE("--pin", "PINs are not accepted on the command line; use $" TC_HSM_ENV_PIN
                               " or --pin-file"),
};

static int parse(const char *cmd, int argc, char **argv, struct audit_opts *o)
{
    memset(o, 0, sizeof *o);
    o->workspace = tc_cli_default_workspace();
    o->vkey = getenv(VKEY_ENV);
    if (o->vkey != NULL && o->vkey[0] == '\0')
        o->vkey = NULL;
    struct tc_cli_args args = {.pos = o->pos, .max = TC_ARRAY_LEN(o->pos)};
    int rc = tc_cli_parse_opts("audit", cmd, audit_options, TC_ARRAY_LEN(audit_options), argc, argv,
                               o, &args);
    o->npos = (int)args.n;
    return rc;
}

/* ------------------------------------------------------------ shared plumbing */

struct tc_cli_audit_ws {
    char cmd[48];
    char workspace[4096];
    char pin_file[4096];
    bool has_pin_file;
    char vkey[TC_NOTE_VKEY_MAX + 1];
    bool has_vkey;
    struct tc_registry *reg;
    struct tc_hsm *hsm;
    struct tc_signer signer;
    bool has_signer;
};

static int fail(tc_err rc, const char *group, const char *cmd)
{
    char what[96];
    (void)snprintf(what, sizeof what, "%s %s", group, cmd);
    return tc_cli_error(rc, what);
}

struct tc_cli_audit_ws *tc_cli_audit_ws_open(const char *cmd, const char *workspace,
                                             const char *pin_file, const char *vkey, bool reader,
                                             int *exit_code)
{
    struct tc_cli_audit_ws *w = calloc(1, sizeof *w);
    if (w == NULL) {
        *exit_code = tc_cli_error(TC_FAIL(TC_ERR_NOMEM, "out of memory"), cmd);
        return NULL;
    }
    (void)snprintf(w->cmd, sizeof w->cmd, "%s", cmd);
    if (strlen(workspace) >= sizeof w->workspace ||
        (pin_file != NULL && strlen(pin_file) >= sizeof w->pin_file) ||
        (vkey != NULL && strlen(vkey) > TC_NOTE_VKEY_MAX)) {
        *exit_code = tc_cli_usage_error("%s: argument too long", cmd);
        free(w);
        return NULL;
    }
    (void)snprintf(w->workspace, sizeof w->workspace, "%s", workspace);
    if (pin_file != NULL) {
        (void)snprintf(w->pin_file, sizeof w->pin_file, "%s", pin_file);
        w->has_pin_file = true;
    }
    if (vkey != NULL) {
        (void)snprintf(w->vkey, sizeof w->vkey, "%s", vkey);
        w->has_vkey = true;
    }
    tc_err rc;
    if (reader) {
        char path[4200];
        (void)snprintf(path, sizeof path, "%s/%s", workspace, TC_REGISTRY_DB_NAME);
        rc = tc_registry_open_reader(path, &w->reg);
        if (rc == TC_ERR_NOT_FOUND)
            rc = TC_FAIL(TC_ERR_NOT_FOUND, "the workspace %s has no registry (%s)", workspace,
                         TC_REGISTRY_DB_NAME);
    } else {
        rc = tc_registry_open_workspace(workspace, &w->reg);
    }
    /* The OTA queue is the registry's device snapshot kind: appends from
     * here keep each device's snapshot and a check refolds them. */
    if (rc == TC_OK)
        rc = tc_ota_queue_register(w->reg);
    if (rc != TC_OK) {
        *exit_code = tc_cli_error(rc, cmd);
        tc_registry_close(w->reg);
        free(w);
        return NULL;
    }
    *exit_code = TC_EXIT_OK;
    return w;
}

struct tc_registry *tc_cli_audit_ws_registry(struct tc_cli_audit_ws *w)
{
    return w->reg;
}

void tc_cli_audit_ws_close(struct tc_cli_audit_ws *w)
{
    if (w == NULL)
        return;
    if (w->has_signer)
        tc_hsm_signer_free(&w->signer);
    tc_hsm_close(w->hsm);
    tc_registry_close(w->reg);
    free(w);
}

/* The checkpoint key: an Ed25519 key pair in the workspace token, labelled
 * per docs/hsm.md, generated the first time it is needed (create). */
static tc_err ws_signer(struct tc_cli_audit_ws *w, bool create)
{
    if (w->has_signer)
        return TC_OK;
    struct tc_hsm_workspace hws;
    char pin[TC_HSM_PIN_MAX + 1];
    size_t pin_len = 0;
    tc_err rc = tc_hsm_workspace_load(w->workspace, &hws);
    if (rc == TC_ERR_NOT_FOUND)
        return TC_FAIL(TC_ERR_NOT_FOUND,
                       "the workspace has no HSM for the checkpoint key (run 'trustchain hsm "
                       "init')");
    TC_GUARD(rc);
    rc = tc_hsm_pin_read(TC_HSM_ENV_PIN, w->has_pin_file ? w->pin_file : NULL, pin, sizeof pin,
                         &pin_len);
    if (rc == TC_ERR_NOT_FOUND && !w->has_pin_file) {
        /* A workspace made by `trustchain init` keeps its PIN in secrets/user.pin (0600). */
        char demo[4200];
        (void)snprintf(demo, sizeof demo, "%s/secrets/user.pin", w->workspace);
        if (access(demo, F_OK) == 0)
            rc = tc_hsm_pin_read(NULL, demo, pin, sizeof pin, &pin_len);
    }
    if (rc == TC_ERR_NOT_FOUND)
        return TC_FAIL(TC_ERR_ARG, "the checkpoint key needs the token PIN ($%s or --pin-file)",
                       TC_HSM_ENV_PIN);
    TC_GUARD(rc);
    struct tc_hsm_config cfg = {.module_path = hws.module_path,
                                .softhsm_conf = hws.softhsm_conf,
                                .token_label = hws.token_label,
                                .pin = pin,
                                .pin_len = pin_len,
                                .pool_size = 1};
    rc = tc_hsm_open(&cfg, &w->hsm);
    tc_memzero(pin, sizeof pin);
    TC_GUARD(rc);
    rc = tc_hsm_signer(w->hsm, TC_HSM_LABEL_AUDIT, &w->signer);
    if (rc == TC_ERR_NOT_FOUND && create) {
        tc_hsm_obj priv, pub;
        TC_GUARD(tc_hsm_keypair_generate(w->hsm, TC_SIG_ED25519, TC_HSM_LABEL_AUDIT, &priv, &pub));
        rc = tc_hsm_signer(w->hsm, TC_HSM_LABEL_AUDIT, &w->signer);
    }
    if (rc == TC_ERR_NOT_FOUND)
        return TC_FAIL(TC_ERR_NOT_FOUND, "the token holds no checkpoint key (%s)",
                       TC_HSM_LABEL_AUDIT);
    TC_GUARD(rc);
    TC_ENSURE_MSG(w->signer.alg == TC_SIG_ED25519, TC_ERR_STATE, "%s is not an Ed25519 key",
                  TC_HSM_LABEL_AUDIT);
    w->has_signer = true;
    return TC_OK;
}

static tc_err ws_vkey(struct tc_cli_audit_ws *w, bool create, char *out, size_t out_size)
{
    TC_GUARD(ws_signer(w, create));
    return tc_note_verifier_key(&w->signer, tc_registry_origin(w->reg), out, out_size);
}

/* The verifier: --vkey / $TRUSTCHAIN_AUDIT_VKEY, else the HSM's key. */
static tc_err ws_verifier(struct tc_cli_audit_ws *w, struct tc_note_verifier *v)
{
    if (w->has_vkey) {
        tc_err rc = tc_note_verifier_parse(w->vkey, v);
        if (rc != TC_OK)
            return TC_FAIL(TC_ERR_FORMAT, "--vkey is not a signed-note verifier key: %s",
                           tc_error_last()->msg);
        TC_ENSURE_MSG(strcmp(v->name, tc_registry_origin(w->reg)) == 0, TC_ERR_VERIFY,
                      "the verifier key names '%s', the log is '%s'", v->name,
                      tc_registry_origin(w->reg));
        return TC_OK;
    }
    char vk[TC_NOTE_VKEY_MAX + 1];
    TC_GUARD(ws_vkey(w, false, vk, sizeof vk));
    return tc_note_verifier_parse(vk, v);
}

/* Opens a note with the verifier and parses its checkpoint for this log. */
static tc_err open_checkpoint(struct tc_cli_audit_ws *w, const uint8_t *note, size_t len,
                              struct tc_checkpoint *cp)
{
    struct tc_note_verifier v;
    size_t text_len = 0, verified = 0;
    TC_GUARD(ws_verifier(w, &v));
    TC_GUARD(tc_note_open(note, len, &v, 1, &text_len, &verified));
    TC_GUARD(tc_checkpoint_parse(note, text_len, cp));
    TC_ENSURE_MSG(strcmp(cp->origin, tc_registry_origin(w->reg)) == 0, TC_ERR_VERIFY,
                  "checkpoint origin '%s' is not the log's", cp->origin);
    return TC_OK;
}

/* The latest checkpoint, signed now if it does not cover need_size events
 * (and sign is allowed); its signature verified. */
tc_err tc_cli_audit_ws_checkpoint(struct tc_cli_audit_ws *w, uint64_t need_size, bool sign,
                                  uint8_t *note, size_t note_size, size_t *note_len, uint64_t *size,
                                  uint8_t *root)
{
    struct tc_audit_log *log = tc_registry_log(w->reg);
    TC_ENSURE(log != NULL, TC_ERR_STATE);
    struct tc_checkpoint cp;
    tc_err rc = tc_audit_log_latest_checkpoint(log, note, note_size, note_len);
    bool fresh = rc == TC_ERR_NOT_FOUND;
    if (!fresh) {
        TC_GUARD(rc);
        size_t text_len = 0;
        /* Size first (unverified) to decide whether a new one is needed. */
        for (size_t i = 0; i + 1 < *note_len; i++)
            if (note[i] == '\n' && note[i + 1] == '\n')
                text_len = i + 1;
        TC_ENSURE_MSG(text_len > 0, TC_ERR_FORMAT, "stored checkpoint is not a signed note");
        TC_GUARD(tc_checkpoint_parse(note, text_len, &cp));
        fresh = cp.size < need_size || cp.size == 0;
    }
    if (fresh) {
        TC_ENSURE_MSG(sign, TC_ERR_NOT_FOUND,
                      "no checkpoint covers the log's %llu events (run 'trustchain audit "
                      "checkpoint')",
                      (unsigned long long)need_size);
        TC_ENSURE_MSG(tc_audit_log_size(log) > 0, TC_ERR_NOT_FOUND, "the log is empty");
        TC_GUARD(ws_signer(w, true));
        TC_GUARD(tc_registry_checkpoint(w->reg, &w->signer, note, note_size, note_len));
    }
    TC_GUARD(open_checkpoint(w, note, *note_len, &cp));
    TC_ENSURE_MSG(cp.size >= need_size, TC_ERR_VERIFY, "checkpoint does not cover the events");
    *size = cp.size;
    memcpy(root, cp.root, TC_AUDIT_HASH_LEN);
    return TC_OK;
}

/* ------------------------------------------------------------ commands */

static void hexs(const uint8_t *p, size_t n, char *out, size_t out_size)
{
    if (tc_hex_encode(p, n, out, out_size) != TC_OK && out_size > 0)
        out[0] = '\0';
}

static int cmd_append(int argc, char **argv)
{
    struct audit_opts o;
    int e = parse("append", argc, argv, &o);
    if (e != TC_EXIT_OK)
        return e;
    /* Hex events: arguments, or lines of standard input. */
    size_t cap = 1024, n = 0;
    uint8_t(*evs)[TC_AUDIT_EVENT_MAX] = malloc(cap * TC_AUDIT_EVENT_MAX);
    size_t *lens = malloc(cap * sizeof *lens);
    const uint8_t **ptrs = malloc(cap * sizeof *ptrs);
    char line[2 * TC_AUDIT_EVENT_MAX + 8];
    int ret = TC_EXIT_FAIL;
    struct tc_cli_audit_ws *w = NULL;
    if (evs == NULL || lens == NULL || ptrs == NULL)
        goto out;
    for (int i = 0;; i++) {
        const char *hex;
        if (o.npos > 0) {
            if (i >= o.npos)
                break;
            hex = o.pos[i];
        } else {
            if (fgets(line, sizeof line, stdin) == NULL)
                break;
            line[strcspn(line, "\r\n")] = '\0';
            if (line[0] == '\0' || line[0] == '#')
                continue;
            hex = line;
        }
        if (n == cap) {
            ret = tc_cli_usage_error("audit append: more than %zu events at once", cap);
            goto out;
        }
        size_t len = 0;
        tc_err rc = tc_hex_decode(hex, strlen(hex), 0, evs[n], TC_AUDIT_EVENT_MAX, &len);
        struct tc_audit_event ev;
        if (rc == TC_OK)
            rc = tc_audit_event_decode(evs[n], len, &ev);
        if (rc != TC_OK) {
            char what[64];
            (void)snprintf(what, sizeof what, "audit append: event %zu", n + 1);
            /* Whatever is wrong with it, the input is: a usage error. */
            ret = tc_cli_error(TC_FAIL(TC_ERR_FORMAT, "%s", tc_error_last()->msg), what);
            goto out;
        }
        lens[n] = len;
        ptrs[n] = evs[n];
        n++;
    }
    if (n == 0) {
        ret = tc_cli_usage_error("audit append: no events given");
        goto out;
    }
    w = tc_cli_audit_ws_open("audit append", o.workspace, o.pin_file, o.vkey, false, &ret);
    if (w == NULL)
        goto out;
    uint64_t first = 0;
    tc_err rc = tc_registry_append_encoded(w->reg, ptrs, lens, n, &first);
    if (rc != TC_OK) {
        ret = fail(rc, "audit", "append");
        goto out;
    }
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "first_index");
        tc_json_uint(&j, first);
        tc_json_key(&j, "count");
        tc_json_uint(&j, n);
        tc_json_key(&j, "size");
        tc_json_uint(&j, tc_audit_log_size(tc_registry_log(w->reg)));
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        for (size_t i = 0; i < n; i++)
            (void)printf("%llu\n", (unsigned long long)(first + i));
    }
    ret = TC_EXIT_OK;
out:
    tc_cli_audit_ws_close(w);
    free(evs);
    free(lens);
    free(ptrs);
    return ret;
}

static int cmd_checkpoint(int argc, char **argv)
{
    struct audit_opts o;
    int e = parse("checkpoint", argc, argv, &o);
    if (e != TC_EXIT_OK)
        return e;
    if (o.npos > 0)
        return tc_cli_usage_error("audit checkpoint: unexpected argument '%s'", o.pos[0]);
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("audit checkpoint", o.workspace, o.pin_file, o.vkey, false, &e);
    if (w == NULL)
        return e;
    uint8_t note[TC_NOTE_MAX], root[TC_AUDIT_HASH_LEN];
    size_t len = 0;
    uint64_t size = 0;
    uint64_t need = tc_audit_log_size(tc_registry_log(w->reg));
    tc_err rc =
        tc_cli_audit_ws_checkpoint(w, need, !o.no_sign, note, sizeof note, &len, &size, root);
    if (rc != TC_OK) {
        e = fail(rc, "audit", "checkpoint");
    } else if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "origin");
        tc_json_string(&j, tc_registry_origin(w->reg));
        tc_json_key(&j, "size");
        tc_json_uint(&j, size);
        tc_json_key(&j, "root");
        tc_json_hex(&j, root, sizeof root);
        char text[TC_NOTE_MAX + 1];
        memcpy(text, note, len);
        text[len] = '\0';
        tc_json_key(&j, "note");
        tc_json_string(&j, text);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)fwrite(note, 1, len, stdout);
    }
    tc_cli_audit_ws_close(w);
    return e;
}

static int cmd_verifier_key(int argc, char **argv)
{
    struct audit_opts o;
    int e = parse("verifier-key", argc, argv, &o);
    if (e != TC_EXIT_OK)
        return e;
    if (o.npos > 0)
        return tc_cli_usage_error("audit verifier-key: unexpected argument '%s'", o.pos[0]);
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("audit verifier-key", o.workspace, o.pin_file, NULL, false, &e);
    if (w == NULL)
        return e;
    char vk[TC_NOTE_VKEY_MAX + 1];
    tc_err rc = ws_vkey(w, true, vk, sizeof vk);
    if (rc != TC_OK) {
        e = fail(rc, "audit", "verifier-key");
    } else if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "verifier_key");
        tc_json_string(&j, vk);
        tc_json_key(&j, "label");
        tc_json_string(&j, TC_HSM_LABEL_AUDIT);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)printf("%s\n", vk);
    }
    tc_cli_audit_ws_close(w);
    return e;
}

static int cmd_verify(int argc, char **argv)
{
    struct audit_opts o;
    int e = parse("verify", argc, argv, &o);
    if (e != TC_EXIT_OK)
        return e;
    if (o.npos > 0)
        return tc_cli_usage_error("audit verify: unexpected argument '%s'", o.pos[0]);
    /* Read side only: a damaged log must still be examined, not opened. */
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("audit verify", o.workspace, o.pin_file, o.vkey, true, &e);
    if (w == NULL)
        return e;
    struct tc_note_verifier v;
    struct tc_audit_verify_report rep;
    uint8_t hs[TC_AUDIT_HASH_LEN];
    tc_err rc = ws_verifier(w, &v);
    if (rc == TC_OK)
        rc = tc_registry_verify(w->reg, &v, &rep);
    if (rc == TC_OK)
        rc = tc_registry_dump_hash(w->reg, hs);
    if (rc != TC_OK) {
        e = fail(rc, "audit", "verify");
    } else if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "ok");
        tc_json_bool(&j, true);
        tc_json_key(&j, "origin");
        tc_json_string(&j, tc_registry_origin(w->reg));
        tc_json_key(&j, "events");
        tc_json_uint(&j, rep.size);
        tc_json_key(&j, "checkpoints");
        tc_json_uint(&j, rep.checkpoints);
        tc_json_key(&j, "root");
        tc_json_hex(&j, rep.root, sizeof rep.root);
        tc_json_key(&j, "projection_sha256");
        tc_json_hex(&j, hs, sizeof hs);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        char r[2 * TC_AUDIT_HASH_LEN + 1], p[2 * TC_AUDIT_HASH_LEN + 1];
        hexs(rep.root, sizeof rep.root, r, sizeof r);
        hexs(hs, sizeof hs, p, sizeof p);
        (void)printf("log %s: %llu events, tree recomputed, root %s\n", tc_registry_origin(w->reg),
                     (unsigned long long)rep.size, r);
        (void)printf("%llu checkpoints: signatures verified, each consistent with the next\n",
                     (unsigned long long)rep.checkpoints);
        (void)printf("registry projection equals its rebuild from the log (SHA-256 %s)\n", p);
        (void)printf("verified\n");
    }
    tc_cli_audit_ws_close(w);
    return e;
}

static void print_hex_line(const char *label, const uint8_t *p, size_t n)
{
    char h[2 * 64 + 1];
    hexs(p, n, h, sizeof h);
    (void)printf("%s%s\n", label, h);
}

static int cmd_prove(int argc, char **argv)
{
    struct audit_opts o;
    int e = parse("prove", argc, argv, &o);
    if (e != TC_EXIT_OK)
        return e;
    if (o.npos != 1)
        return tc_cli_usage_error("audit prove: give one event INDEX");
    uint64_t index = 0;
    if (tc_parse_uint(o.pos[0], INT64_MAX, &index) != TC_OK)
        return tc_cli_usage_error("audit prove: '%s' is not an event index", o.pos[0]);
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("audit prove", o.workspace, o.pin_file, o.vkey, false, &e);
    if (w == NULL)
        return e;
    struct tc_audit_log *log = tc_registry_log(w->reg);
    uint8_t note[TC_NOTE_MAX], root[TC_AUDIT_HASH_LEN], ev[TC_AUDIT_EVENT_MAX];
    uint8_t leaf[TC_AUDIT_HASH_LEN], proof[TC_MERKLE_PROOF_MAX][TC_AUDIT_HASH_LEN];
    size_t note_len = 0, ev_len = 0, n = 0;
    uint64_t size = 0;
    tc_err rc = TC_OK;
    if (index >= tc_audit_log_size(log)) {
        e = tc_cli_usage_error("audit prove: no event %llu (the log holds %llu)",
                               (unsigned long long)index,
                               (unsigned long long)tc_audit_log_size(log));
        goto out;
    }
    rc = tc_cli_audit_ws_checkpoint(w, index + 1, true, note, sizeof note, &note_len, &size, root);
    if (rc == TC_OK)
        rc = tc_audit_log_event(log, index, ev, sizeof ev, &ev_len);
    if (rc == TC_OK)
        rc = tc_merkle_leaf_hash(ev, ev_len, leaf);
    if (rc == TC_OK)
        rc = tc_audit_log_prove_inclusion(log, index, size, proof, TC_MERKLE_PROOF_MAX, &n);
    /* RFC 9162 §2.1.3.2: the proof is checked here, as any verifier would. */
    if (rc == TC_OK)
        rc = tc_merkle_verify_inclusion(leaf, index, size,
                                        (const uint8_t(*)[TC_AUDIT_HASH_LEN])proof, n, root);
    if (rc != TC_OK) {
        e = fail(rc, "audit", "prove");
        goto out;
    }
    if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "index");
        tc_json_uint(&j, index);
        tc_json_key(&j, "event");
        tc_json_hex(&j, ev, ev_len);
        tc_json_key(&j, "leaf_hash");
        tc_json_hex(&j, leaf, sizeof leaf);
        tc_json_key(&j, "tree_size");
        tc_json_uint(&j, size);
        tc_json_key(&j, "root");
        tc_json_hex(&j, root, sizeof root);
        tc_json_key(&j, "proof");
        tc_json_begin_array(&j);
        for (size_t i = 0; i < n; i++)
            tc_json_hex(&j, proof[i], TC_AUDIT_HASH_LEN);
        tc_json_end_array(&j);
        tc_json_key(&j, "verified");
        tc_json_bool(&j, true);
        char text[TC_NOTE_MAX + 1];
        memcpy(text, note, note_len);
        text[note_len] = '\0';
        tc_json_key(&j, "checkpoint");
        tc_json_string(&j, text);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)printf("index %llu\n", (unsigned long long)index);
        char evh[2 * TC_AUDIT_EVENT_MAX + 1];
        hexs(ev, ev_len, evh, sizeof evh);
        (void)printf("event %s\n", evh);
        print_hex_line("leaf hash ", leaf, sizeof leaf);
        (void)printf("tree size %llu\n", (unsigned long long)size);
        print_hex_line("root ", root, sizeof root);
        (void)printf("proof (%zu hashes, RFC 9162 §2.1.3.1)\n", n);
        for (size_t i = 0; i < n; i++)
            print_hex_line("  ", proof[i], TC_AUDIT_HASH_LEN);
        (void)printf("verified against the signed checkpoint:\n");
        (void)fwrite(note, 1, note_len, stdout);
    }
out:
    tc_cli_audit_ws_close(w);
    return e;
}

static int cmd_rebuild(int argc, char **argv)
{
    struct audit_opts o;
    int e = parse("rebuild", argc, argv, &o);
    if (e != TC_EXIT_OK)
        return e;
    if (o.npos > 0)
        return tc_cli_usage_error("audit rebuild: unexpected argument '%s'", o.pos[0]);
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("audit rebuild", o.workspace, o.pin_file, o.vkey, true, &e);
    if (w == NULL)
        return e;
    uint8_t before[TC_AUDIT_HASH_LEN], after[TC_AUDIT_HASH_LEN];
    tc_err rc = tc_registry_dump_hash(w->reg, before);
    if (rc == TC_OK)
        rc = tc_registry_rebuild(w->reg);
    if (rc == TC_OK)
        rc = tc_registry_check(w->reg, after, NULL);
    if (rc != TC_OK) {
        e = fail(rc, "audit", "rebuild");
    } else if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "before_sha256");
        tc_json_hex(&j, before, sizeof before);
        tc_json_key(&j, "after_sha256");
        tc_json_hex(&j, after, sizeof after);
        tc_json_key(&j, "unchanged");
        tc_json_bool(&j, memcmp(before, after, sizeof after) == 0);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        print_hex_line("projection before  ", before, sizeof before);
        print_hex_line("projection rebuilt ", after, sizeof after);
        (void)printf("%s\n", memcmp(before, after, sizeof after) == 0
                                 ? "unchanged: the stored projection was the log's"
                                 : "replaced: the stored projection differed from the log's");
    }
    tc_cli_audit_ws_close(w);
    return e;
}

static int cmd_export_tiles(int argc, char **argv)
{
    struct audit_opts o;
    int e = parse("export-tiles", argc, argv, &o);
    if (e != TC_EXIT_OK)
        return e;
    if (o.npos != 1)
        return tc_cli_usage_error("audit export-tiles: give one output DIR");
    struct tc_cli_audit_ws *w =
        tc_cli_audit_ws_open("audit export-tiles", o.workspace, o.pin_file, o.vkey, false, &e);
    if (w == NULL)
        return e;
    uint8_t note[TC_NOTE_MAX], root[TC_AUDIT_HASH_LEN];
    size_t len = 0;
    uint64_t size = 0;
    struct tc_audit_log *log = tc_registry_log(w->reg);
    tc_err rc = tc_cli_audit_ws_checkpoint(w, tc_audit_log_size(log), !o.no_sign, note, sizeof note,
                                           &len, &size, root);
    if (rc == TC_OK)
        rc = tc_audit_export_tiles(log, o.pos[0]);
    if (rc != TC_OK) {
        e = fail(rc, "audit", "export-tiles");
    } else if (o.json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "dir");
        tc_json_string(&j, o.pos[0]);
        tc_json_key(&j, "size");
        tc_json_uint(&j, size);
        tc_json_end_object(&j);
        tc_json_finish(&j);
    } else {
        (void)printf("exported %llu events as tlog tiles under %s\n", (unsigned long long)size,
                     o.pos[0]);
    }
    tc_cli_audit_ws_close(w);
    return e;
}

static const struct tc_cli_cmd cmds[] = {
    {"append", "append canonical events (hex)", cmd_append},
    {"checkpoint", "print the latest signed checkpoint (signing one if needed)", cmd_checkpoint},
    {"verifier-key", "print the checkpoint verifier key", cmd_verifier_key},
    {"verify", "verify the log, its checkpoints and the registry projection", cmd_verify},
    {"prove", "inclusion proof of an event against the latest checkpoint", cmd_prove},
    {"rebuild", "rebuild the registry projection from the log", cmd_rebuild},
    {"export-tiles", "write the log as C2SP tlog-tiles", cmd_export_tiles},
};

int tc_cli_audit(int argc, char **argv)
{
    return tc_cli_group("audit", usage, cmds, TC_ARRAY_LEN(cmds), argc, argv);
}
