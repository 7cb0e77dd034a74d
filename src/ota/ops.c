/*
 * The OTA operations engine: the server's application (struct tc_ota_app)
 * that applies each connecting device's pending operations in queue order
 * inside its Amendment B dialog (docs/ota.md, "Operations").
 *
 * Per dialog: the device's registry state and its queue (the fold of its
 * events) are loaded, then the current operation's step machine is asked
 * for actions. AUTH becomes SELECT + INITIALIZE UPDATE and EXTERNAL
 * AUTHENTICATE scripts with a keyset re-derived in the HSM (GP Amendment D
 * §7.1), SEND one wrapped command per script (its R-MAC is chained to it,
 * Amendment D §6.2.5), DONE / FAIL one durable batch of events. Every
 * record of intent is on disk before the script carrying its command is
 * returned.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include <trustchain/ota_ops.h>
#include <trustchain/ota_renew.h>
#include <trustchain/pki.h>

#include "ota/ops_internal.h"

/* ------------------------------------------------------------------ kinds */

static const struct tc_ota_op_kind *const kinds[] = {
    &tc_ota_op_rotate_keys, &tc_ota_op_store_data,   &tc_ota_op_lock,
    &tc_ota_op_unlock,      &tc_ota_op_decommission, &tc_ota_op_renew_cert,
};

const struct tc_ota_op_kind *tc_ota_op_kind_by_name(const char *name)
{
    for (size_t i = 0; name != NULL && i < TC_ARRAY_LEN(kinds); i++)
        if (strcmp(kinds[i]->name, name) == 0)
            return kinds[i];
    return NULL;
}

const struct tc_ota_op_kind *tc_ota_op_kind_by_code(uint8_t code)
{
    for (size_t i = 0; i < TC_ARRAY_LEN(kinds); i++)
        if (kinds[i]->code == code)
            return kinds[i];
    return NULL;
}

const char *tc_ota_op_name(uint8_t code)
{
    const struct tc_ota_op_kind *k = tc_ota_op_kind_by_code(code);
    return k != NULL ? k->name : "unknown";
}

void tc_ota_op_kinds(void (*fn)(void *arg, const struct tc_ota_op_kind *k), void *arg)
{
    for (size_t i = 0; i < TC_ARRAY_LEN(kinds); i++)
        fn(arg, kinds[i]);
}

/* ------------------------------------------------------------------ engine state */

#define MASTERS_MAX 16u
#define KEYSETS_MAX TC_HSM_SCP03_KEYSETS

static const uint8_t default_isd[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

enum sess_state { S_NONE = 0, S_IU_SENT, S_EA_SENT, S_OPEN, S_CMD_SENT };

/* A keyset of the dialog's HSM provider (which holds its keys). */
struct keyset {
    bool used;
    uint8_t kvn;
    char master[TC_AUDIT_ID_MAX + 1];
};

struct slot {
    struct tc_ota_ops *e;
    struct slot *hnext; /* the next dialog in its hash bucket */
    char eid[TC_PKI_EID_DIGITS + 1];
    uint8_t eid_bin[TC_AUDIT_EID_MAX];
    size_t eid_len;
    struct tc_registry_device dev;
    struct tc_ota_queue q;
    size_t cur; /* index in q.ops of the running operation */
    const struct tc_ota_op_kind *kind;
    struct tc_ota_op_run run;
    struct tc_ota_act act;
    struct tc_ota_result res;
    /* the SCP03 session */
    enum sess_state st;
    struct tc_scp03_host host;
    uint8_t s_kvn;
    char s_master[TC_AUDIT_ID_MAX + 1];
    uint8_t s_aid[16];
    size_t s_aid_len;
    struct tc_hsm_scp03_provider m;
    struct tc_scp03_key_provider kp;
    struct keyset keys[KEYSETS_MAX];
    /* the action being carried out, and whether its records are on disk */
    bool have_act, act_logged;
    bool dev_stale; /* an operation ended since dev was read */
    /* asynchronous dialogs: the held request and the append it waits for */
    struct job *job;
    void (*reply)(void *arg, tc_err rc, const uint8_t *script, size_t len);
    void *reply_arg;
    struct tc_buf out;
};

/* Events of one dialog on their way to disk (asynchronous mode). */
struct job {
    struct job *next;
    struct slot *slot; /* NULL once the dialog is gone */
    char eid[TC_PKI_EID_DIGITS + 1];
    size_t n;
    uint8_t ev[TC_OTA_ACT_EVENTS + 1][TC_AUDIT_EVENT_MAX];
    size_t lens[TC_OTA_ACT_EVENTS + 1];
    struct tc_audit_event evs[TC_OTA_ACT_EVENTS + 1];
    tc_err rc;
    uint64_t first;
    char msg[256];
};

struct master {
    char name[TC_AUDIT_ID_MAX + 1];
    tc_hsm_obj obj;
};

struct tc_ota_ops {
    struct tc_ota_ops_config cfg;
    char workspace[4096];
    char default_master[TC_AUDIT_ID_MAX + 1];
    char actor[TC_AUDIT_ID_MAX + 1];
    uint8_t isd[16];
    size_t isd_len;
    struct slot **slots; /* hash buckets by EID (nbuckets, a power of two) */
    size_t nbuckets, nslots;
    struct master masters[MASTERS_MAX];
    size_t nmasters;
    struct tc_ota_ops_stats stats;
    /* asynchronous mode: a writer thread appends for every dialog at once
     * (one durable commit per batch) and wakes the loop through a pipe */
    bool async;
    pthread_t writer;
    bool writer_started;
    pthread_mutex_t mu;
    pthread_cond_t cv, idle;
    struct job *todo, *todo_tail, *done, *done_tail;
    struct job *writing; /* the batch the writer is committing */
    bool stop, busy;
    int pipefd[2];
    struct event *wake;
};

static struct slot *slot_of(struct tc_ota_op_run *run)
{
    return (struct slot *)(void *)((char *)run - offsetof(struct slot, run));
}

/* FNV-1a of the EID text: the dialogs are found in O(1) among thousands. */
static struct slot **bucket(struct tc_ota_ops *e, const char *eid)
{
    uint64_t h = 14695981039346656037u;
    for (const char *p = eid; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211u;
    return &e->slots[h & (e->nbuckets - 1)];
}

/* The link that points at the device's dialog (for unlinking), or NULL. */
static struct slot **find_slot(struct tc_ota_ops *e, const char *eid)
{
    for (struct slot **sp = bucket(e, eid); *sp != NULL; sp = &(*sp)->hnext)
        if (strcmp((*sp)->eid, eid) == 0)
            return sp;
    return NULL;
}

static void session_wipe(struct slot *s)
{
    tc_scp03_host_wipe(&s->host);
    s->st = S_NONE;
}

static void slot_free(struct tc_ota_ops *e, struct slot **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    struct slot *s = *sp;
    *sp = s->hnext; /* unlinked first: the reply below may end the session */
    e->nslots--;
    if (s->job != NULL)
        s->job->slot = NULL; /* the append still completes; nobody waits */
    if (s->reply != NULL) {
        void (*reply)(void *, tc_err, const uint8_t *, size_t) = s->reply;
        s->reply = NULL;
        reply(s->reply_arg, TC_FAIL(TC_ERR_STATE, "device %s: dialog ended", s->eid), NULL, 0);
    }
    tc_buf_free(&s->out);
    session_wipe(s);
    for (size_t i = 0; i < KEYSETS_MAX; i++)
        if (s->keys[i].used)
            tc_hsm_keyset_destroy(e->cfg.hsm, tc_hsm_scp03_provider_keyset(&s->m, s->keys[i].kvn));
    tc_memzero(s, sizeof *s);
    free(s);
}

/* ------------------------------------------------------------------ keys */

static tc_err master_obj(struct tc_ota_ops *e, const char *name, tc_hsm_obj *obj)
{
    for (size_t i = 0; i < e->nmasters; i++) {
        if (strcmp(e->masters[i].name, name) == 0) {
            *obj = e->masters[i].obj;
            return TC_OK;
        }
    }
    char label[TC_HSM_LABEL_MAX + 1];
    int w = snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_MASTER, name);
    TC_ENSURE_MSG(w > 0 && (size_t)w < sizeof label, TC_ERR_ARG, "master name '%s' too long", name);
    TC_GUARD(tc_hsm_find(e->cfg.hsm, TC_HSM_KIND_SECRET, label, obj));
    if (e->nmasters < MASTERS_MAX) {
        (void)snprintf(e->masters[e->nmasters].name, sizeof e->masters[0].name, "%s", name);
        e->masters[e->nmasters++].obj = *obj;
    }
    return TC_OK;
}

/* (kvn 0, "") is the device's current keyset; "" the default master. */
static void resolve(const struct slot *s, uint8_t *kvn, const char **master)
{
    if (*kvn == 0) {
        *kvn = s->run.kvn;
        *master = s->run.master;
    }
    if (*master == NULL || (*master)[0] == '\0')
        *master = s->e->default_master;
}

/* Keyset (kvn, master) in the slot's HSM provider, made on first use.
 * Its keys are derived as the dialog uses them (tc_hsm_diversify_deferred,
 * the same keys): a rotation never derives the new keyset's DEK, whose
 * KCV comes with its PUT KEY block. */
static tc_err slot_keys(struct slot *s, uint8_t kvn, const char *master)
{
    struct tc_ota_ops *e = s->e;
    resolve(s, &kvn, &master);
    TC_ENSURE_MSG(kvn >= 0x01 && kvn <= 0x7F, TC_ERR_STATE, "device %s: no known keyset", s->eid);
    struct keyset *free_k = NULL;
    for (size_t i = 0; i < KEYSETS_MAX; i++) {
        struct keyset *k = &s->keys[i];
        if (k->used && k->kvn == kvn) {
            if (strcmp(k->master, master) == 0)
                return TC_OK;
            /* Same KVN from another master: replaced. */
            tc_hsm_keyset_destroy(e->cfg.hsm, tc_hsm_scp03_provider_keyset(&s->m, k->kvn));
            k->used = false;
        }
        if (!k->used && free_k == NULL)
            free_k = k;
    }
    TC_ENSURE_MSG(free_k != NULL, TC_ERR_NOMEM, "device %s: too many keysets in one dialog",
                  s->eid);
    tc_hsm_obj mo = 0;
    uint8_t bcd[TC_PKI_EID_BCD_LEN];
    struct tc_hsm_keyset ks;
    TC_GUARD(master_obj(e, master, &mo));
    TC_GUARD(tc_pki_eid_to_bcd(s->eid, bcd));
    TC_GUARD(tc_hsm_diversify_deferred(e->cfg.hsm, mo, bcd, e->cfg.key_len, &ks));
    /* Nothing is derived yet: a refusal leaves nothing to destroy. */
    TC_GUARD(tc_hsm_scp03_provider_add(&s->m, kvn, &ks));
    free_k->used = true;
    free_k->kvn = kvn;
    (void)snprintf(free_k->master, sizeof free_k->master, "%s", master);
    return TC_OK;
}

tc_err tc_ota_run_keys(struct tc_ota_op_run *run, uint8_t kvn, const char *master,
                       const struct tc_scp03_key_provider **p)
{
    TC_ENSURE(run != NULL && p != NULL, TC_ERR_ARG);
    struct slot *s = slot_of(run);
    TC_GUARD(slot_keys(s, kvn, master));
    *p = &s->kp;
    return TC_OK;
}

tc_err tc_ota_run_data(struct tc_ota_op_run *run, uint8_t *out, size_t out_size, size_t *out_len)
{
    TC_ENSURE(run != NULL && run->op != NULL && run->op->has_data, TC_ERR_ARG);
    return tc_ota_blob_get(slot_of(run)->e->workspace, run->op->data_sha256, out, out_size,
                           out_len);
}

struct tc_registry *tc_ota_run_registry(struct tc_ota_op_run *run)
{
    return slot_of(run)->e->cfg.reg;
}

struct tc_hsm *tc_ota_run_hsm(struct tc_ota_op_run *run)
{
    return slot_of(run)->e->cfg.hsm;
}

const char *tc_ota_run_workspace(struct tc_ota_op_run *run)
{
    return slot_of(run)->e->workspace;
}

/* ------------------------------------------------------------------ durable records */

/* Completes an operation's event (time, device, op id, batch, actor where
 * the type allows them and the kind left them out). */
static tc_err complete_event(struct slot *s, struct tc_audit_event *ev, uint64_t t)
{
    uint32_t req = 0, allowed = 0;
    TC_GUARD(tc_audit_event_schema(ev->type, &req, &allowed));
    ev->time_ms = t;
    if (allowed & TC_AUDIT_HAS_EID) {
        memcpy(ev->eid, s->eid_bin, s->eid_len);
        ev->eid_len = s->eid_len;
        ev->fields |= TC_AUDIT_HAS_EID;
    }
    if (allowed & TC_AUDIT_HAS_OP_ID) {
        ev->op_id = s->run.op->id;
        ev->fields |= TC_AUDIT_HAS_OP_ID;
    }
    if ((allowed & TC_AUDIT_HAS_BATCH) && !(ev->fields & TC_AUDIT_HAS_BATCH) &&
        s->dev.batch[0] != '\0') {
        (void)snprintf(ev->batch, sizeof ev->batch, "%s", s->dev.batch);
        ev->fields |= TC_AUDIT_HAS_BATCH;
    }
    if ((allowed & TC_AUDIT_HAS_ACTOR) && !(ev->fields & TC_AUDIT_HAS_ACTOR)) {
        (void)snprintf(ev->actor, sizeof ev->actor, "%s", s->e->actor);
        ev->fields |= TC_AUDIT_HAS_ACTOR;
    }
    if ((req & TC_AUDIT_HAS_STATION) && !(ev->fields & TC_AUDIT_HAS_STATION)) {
        /* lifecycle-changed names a station: the OTA server is one. */
        (void)snprintf(ev->station, sizeof ev->station, "%s", s->e->actor);
        ev->fields |= TC_AUDIT_HAS_STATION;
    }
    return TC_OK;
}

/* The fold and the fault hook once a batch is durable. */
static tc_err job_apply(struct slot *s, struct job *j)
{
    struct tc_ota_ops *e = s->e;
    if (j->rc != TC_OK)
        return TC_FAIL(j->rc, "durable append: %s", j->msg);
    e->stats.appends++;
    for (size_t i = 0; i < j->n; i++)
        TC_GUARD(tc_ota_queue_fold(&s->q, j->first + i, &j->evs[i]));
    if (e->cfg.fault != NULL && e->cfg.fault(e->cfg.fault_arg, TC_OTA_FAULT_APPENDED, s->eid))
        return TC_FAIL(TC_ERR_IO, "fault injected after a durable append");
    return TC_OK;
}

/* One durable batch: the kind's events, then `lead` (op-step / op-done /
 * op-failed). Synchronous mode: on disk when it returns. Asynchronous
 * mode: handed to the writer, *pending set; the dialog continues when the
 * batch is durable. */
static tc_err append(struct slot *s, struct tc_audit_event *lead, struct tc_audit_event *evs,
                     size_t n, bool *pending)
{
    struct tc_ota_ops *e = s->e;
    tc_err ret = TC_ERR_INTERNAL;
    uint64_t t = ota_now_ms();
    *pending = false;
    TC_ENSURE(n <= TC_OTA_ACT_EVENTS, TC_ERR_RANGE);
    if (n == 0 && lead == NULL)
        return TC_OK;
    struct job *j = calloc(1, sizeof *j);
    TC_ENSURE(j != NULL, TC_ERR_NOMEM);
    for (size_t i = 0; i < n; i++)
        j->evs[j->n++] = evs[i];
    if (lead != NULL)
        j->evs[j->n++] = *lead;
    for (size_t i = 0; i < j->n; i++) {
        TC_TRY(complete_event(s, &j->evs[i], t));
        TC_TRY(tc_audit_event_encode(&j->evs[i], j->ev[i], sizeof j->ev[i], &j->lens[i]));
    }
    if (e->async) {
        (void)snprintf(j->eid, sizeof j->eid, "%s", s->eid);
        j->slot = s;
        s->job = j;
        pthread_mutex_lock(&e->mu);
        if (e->todo_tail != NULL)
            e->todo_tail->next = j;
        else
            e->todo = j;
        e->todo_tail = j;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        j = NULL;
        *pending = true;
        ret = TC_OK;
        goto out;
    }
    const uint8_t *ptrs[TC_OTA_ACT_EVENTS + 1];
    for (size_t i = 0; i < j->n; i++)
        ptrs[i] = j->ev[i];
    j->rc = tc_registry_append_encoded(e->cfg.reg, ptrs, j->lens, j->n, &j->first);
    if (j->rc != TC_OK)
        (void)snprintf(j->msg, sizeof j->msg, "%s", tc_error_last()->msg);
    TC_TRY(job_apply(s, j));
    ret = TC_OK;
out:
    free(j);
    return ret;
}

static tc_err log_intent(struct slot *s, struct tc_ota_act *a, bool *pending)
{
    *pending = false;
    if (a->intent == 0 && a->nevents == 0)
        return TC_OK;
    struct tc_audit_event step;
    memset(&step, 0, sizeof step);
    step.type = TC_AUDIT_OP_STEP;
    step.fields = TC_AUDIT_HAS_STEP;
    step.step = a->intent;
    return append(s, a->intent != 0 ? &step : NULL, a->events, a->nevents, pending);
}

/* The current action's records, once (an action resumed after its
 * asynchronous append does not log again). */
static tc_err log_once(struct slot *s, struct tc_ota_act *a, bool *pending)
{
    *pending = false;
    if (s->act_logged)
        return TC_OK;
    TC_GUARD(log_intent(s, a, pending));
    s->act_logged = true;
    return TC_OK;
}

/* ------------------------------------------------------------------ scripts */

static uint16_t sw_of(const struct tc_ota_bytes *b)
{
    return (uint16_t)((unsigned)b->p[b->len - 2] << 8 | b->p[b->len - 1]);
}

/* SELECT the target + INITIALIZE UPDATE with keyset (kvn, master). */
static tc_err start_auth(struct slot *s, const struct tc_ota_act *a, struct tc_buf *script)
{
    struct tc_ota_ops *e = s->e;
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t kvn = a->kvn;
    const char *master = a->master;
    resolve(s, &kvn, &master);
    session_wipe(s);
    TC_TRY(slot_keys(s, kvn, master));
    s->s_kvn = kvn;
    (void)snprintf(s->s_master, sizeof s->s_master, "%s", master);
    if (a->aid_len > 0) {
        TC_CHECK(a->aid_len >= 5 && a->aid_len <= sizeof s->s_aid, TC_ERR_ARG);
        memcpy(s->s_aid, a->aid, a->aid_len);
        s->s_aid_len = a->aid_len;
    } else {
        memcpy(s->s_aid, e->isd, e->isd_len);
        s->s_aid_len = e->isd_len;
    }
    /* The card derives its pseudo-random challenge over the ISD AID even
     * when an application is selected (docs/identity-applet.md, "Secure
     * messaging"): the host checks it against the ISD's. */
    struct tc_scp03_host_config c = {
        .kvn = kvn, .level = e->cfg.level, .aid = e->isd, .aid_len = e->isd_len, .select = false};
    TC_TRY(tc_scp03_host_init(&s->host, &s->kp, &c));
    TC_TRY(ota_select_iu_script(&s->host, s->s_aid, s->s_aid_len, script));
    s->st = S_IU_SENT;
    ret = TC_OK;
out:
    return ret;
}

static tc_err send_cmd(struct slot *s, const struct tc_ota_act *a, struct tc_buf *script)
{
    tc_err ret = TC_ERR_INTERNAL;
    uint8_t mem[600];
    struct tc_buf cmds;
    size_t len;
    tc_buf_init_fixed(&cmds, mem, sizeof mem);
    TC_CHECK_MSG(s->st == S_OPEN, TC_ERR_STATE, "%s: command without an open session",
                 s->kind->name);
    struct tc_apdu c = a->cmd;
    TC_CHECK(c.lc <= sizeof a->data, TC_ERR_RANGE);
    c.data = c.lc > 0 ? a->data : NULL;
    TC_TRY(tc_scp03_host_wrap(&s->host, &c, &cmds));
    len = cmds.len;
    TC_TRY(ota_script_of(&cmds, &len, 1, script));
    s->st = S_CMD_SENT;
    ret = TC_OK;
out:
    tc_memzero(mem, sizeof mem);
    return ret;
}

/* ------------------------------------------------------------------ the dialog */

static bool next_pending(struct slot *s, size_t from)
{
    for (size_t i = from; i < s->q.n; i++) {
        if (s->q.ops[i].status == TC_OTA_OP_PENDING) {
            s->cur = i;
            s->kind = tc_ota_op_kind_by_code(s->q.ops[i].code);
            memset(&s->run, 0, sizeof s->run);
            s->run.op = &s->q.ops[i];
            s->run.dev = &s->dev;
            s->run.eid = s->eid;
            s->run.kvn = s->q.kvn != 0 ? s->q.kvn : s->dev.kvn;
            if (s->run.kvn == 0)
                s->run.kvn = s->e->cfg.default_kvn;
            s->run.master = s->q.master;
            s->run.engine = s->e;
            return true;
        }
    }
    s->kind = NULL;
    return false;
}

static tc_err finish_log(struct slot *s, struct tc_ota_act *a, bool done, bool *pending)
{
    struct tc_audit_event lead;
    memset(&lead, 0, sizeof lead);
    lead.type = done ? TC_AUDIT_OP_DONE : TC_AUDIT_OP_FAILED;
    if (!done) {
        lead.fields = TC_AUDIT_HAS_REASON;
        lead.reason = a->reason;
        if (s->run.op->step != 0) {
            lead.fields |= TC_AUDIT_HAS_STEP;
            lead.step = s->run.op->step;
        }
    }
    return append(s, &lead, a->events, a->nevents, pending);
}

static void finish_post(struct slot *s, bool done)
{
    if (done)
        s->e->stats.ops_done++;
    else
        s->e->stats.ops_failed++;
    /* What the operation changed (keys, life cycle) is read back from the
     * log before the next operation of the dialog starts, if there is one
     * (refresh_dev). */
    s->dev_stale = true;
}

/* The registry's view of the device again, once an operation of this
 * dialog has ended and another one is about to start. */
static tc_err refresh_dev(struct slot *s)
{
    if (!s->dev_stale)
        return TC_OK;
    bool more = false;
    for (size_t i = 0; i < s->q.n && !more; i++)
        more = s->q.ops[i].status == TC_OTA_OP_PENDING;
    if (!more)
        return TC_OK; /* the dialog ends: nothing reads it */
    TC_GUARD(tc_registry_device_get(s->e->cfg.reg, s->eid_bin, s->eid_len, &s->dev));
    s->dev_stale = false;
    return TC_OK;
}

/*
 * Runs step machines until one needs the card: the next script in
 * `script`, or nothing when every pending operation is over (the dialog
 * ends). have_res: s->res answers the previous action. *pending: waiting
 * for a durable append (asynchronous mode); call again when it is done.
 */
static tc_err drive(struct slot *s, bool have_res, struct tc_buf *script, bool *pending)
{
    *pending = false;
    for (unsigned guard = 0; guard < 4096; guard++) {
        struct tc_ota_act *a = &s->act;
        if (!s->have_act) {
            if (s->kind == NULL) {
                TC_GUARD(refresh_dev(s));
                if (!next_pending(s, 0))
                    return TC_OK; /* nothing left: 204 */
                have_res = false;
            }
            memset(a, 0, sizeof *a);
            if (s->kind == NULL) {
                /* A code this server does not implement: fails for good. */
                a->kind = TC_OTA_ACT_FAIL;
                a->reason = TC_OTA_FAIL_UNSUPPORTED;
            } else {
                TC_GUARD(s->kind->next(&s->run, have_res ? &s->res : NULL, a));
            }
            s->have_act = true;
            s->act_logged = false;
        }
        switch (a->kind) {
        case TC_OTA_ACT_AUTH: {
            TC_GUARD(log_once(s, a, pending));
            if (*pending)
                return TC_OK;
            s->have_act = false;
            uint8_t kvn = a->kvn;
            const char *master = a->master;
            resolve(s, &kvn, &master);
            const uint8_t *aid = a->aid_len > 0 ? a->aid : s->e->isd;
            size_t aid_len = a->aid_len > 0 ? a->aid_len : s->e->isd_len;
            if (s->st == S_OPEN && s->s_kvn == kvn && strcmp(s->s_master, master) == 0 &&
                s->s_aid_len == aid_len && memcmp(s->s_aid, aid, aid_len) == 0) {
                memset(&s->res, 0, sizeof s->res);
                s->res.kind = TC_OTA_ACT_AUTH;
                s->res.rc = TC_OK;
                s->res.sw = 0x9000;
                have_res = true;
                continue;
            }
            return start_auth(s, a, script);
        }
        case TC_OTA_ACT_SEND:
            TC_GUARD(log_once(s, a, pending));
            if (*pending)
                return TC_OK;
            s->have_act = false;
            return send_cmd(s, a, script);
        case TC_OTA_ACT_DONE:
        case TC_OTA_ACT_FAIL: {
            bool done = a->kind == TC_OTA_ACT_DONE;
            if (!s->act_logged) {
                TC_GUARD(finish_log(s, a, done, pending));
                s->act_logged = true;
                if (*pending)
                    return TC_OK;
            }
            s->have_act = false;
            finish_post(s, done);
            s->kind = NULL;
            s->cur++;
            continue;
        }
        default:
            return TC_FAIL(TC_ERR_INTERNAL, "%s: unknown action %d",
                           s->kind != NULL ? s->kind->name : "?", (int)a->kind);
        }
    }
    return TC_FAIL(TC_ERR_INTERNAL, "device %s: operations did not converge", s->eid);
}

/* The card's answer to the last script, as the result of its action. */
static tc_err absorb(struct slot *s, const uint8_t *resp, size_t len, struct tc_buf *script,
                     bool *again)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_ota_bytes rs[TC_OTA_SCRIPT_MAX];
    size_t n = 0, executed = 0;
    uint8_t mem[64];
    struct tc_buf ea;
    tc_buf_init_fixed(&ea, mem, sizeof mem);
    struct tc_ota_result *r = &s->res;
    *again = false;
    TC_TRY(tc_ota_response_decode(resp, len, rs, &n, &executed));
    memset(r, 0, sizeof *r);
    switch (s->st) {
    case S_IU_SENT: {
        r->kind = TC_OTA_ACT_AUTH;
        /* The agent stops at the first error: SELECT may be the only answer. */
        TC_CHECK_MSG(n >= 1 && n <= 2, TC_ERR_FORMAT, "%zu responses to 2 commands", n);
        uint16_t sel = sw_of(&rs[0]);
        /* GP CS 2.3 §11.9.3: 6283 = the selected card is CARD_LOCKED. */
        if (sel != 0x9000 && sel != 0x6283) {
            r->rc = TC_ERR_CARD;
            r->sw = sel;
            session_wipe(s);
            break;
        }
        TC_CHECK_MSG(n == 2, TC_ERR_FORMAT, "no INITIALIZE UPDATE response");
        uint16_t iu = sw_of(&rs[1]);
        if (iu != 0x9000) {
            r->rc = TC_ERR_CARD;
            r->sw = iu;
            session_wipe(s);
            break;
        }
        /* Card cryptogram (and pseudo-random challenge) verified first. */
        tc_err rc = tc_scp03_host_external_authenticate(&s->host, rs[1].p, rs[1].len - 2, &ea);
        if (rc != TC_OK) {
            r->rc = rc == TC_ERR_VERIFY ? TC_ERR_VERIFY : TC_ERR_CARD;
            session_wipe(s);
            break;
        }
        size_t l = ea.len;
        TC_TRY(ota_script_of(&ea, &l, 1, script));
        s->st = S_EA_SENT;
        *again = true; /* the script goes out; no result yet */
        break;
    }
    case S_EA_SENT:
        r->kind = TC_OTA_ACT_AUTH;
        TC_CHECK_MSG(n == 1, TC_ERR_FORMAT, "%zu responses to 1 command", n);
        r->sw = sw_of(&rs[0]);
        r->rc = tc_scp03_host_authenticated(&s->host, r->sw);
        if (r->rc != TC_OK) {
            r->rc = TC_ERR_CARD;
            session_wipe(s);
        } else {
            s->st = S_OPEN;
        }
        break;
    case S_CMD_SENT:
        r->kind = TC_OTA_ACT_SEND;
        TC_CHECK_MSG(n == 1, TC_ERR_FORMAT, "%zu responses to 1 command", n);
        /* R-MAC verified (a tampered answer aborts the dialog). */
        TC_TRY(tc_scp03_host_unwrap(&s->host, rs[0].p, rs[0].len, r->data, sizeof r->data, &r->len,
                                    &r->sw));
        r->rc = TC_OK;
        if (r->sw == 0x6982 || r->sw == 0x6988) {
            /* GP Amendment D: the card closed its session. */
            session_wipe(s);
        } else {
            s->st = S_OPEN;
        }
        break;
    default:
        TC_CHECK_MSG(false, TC_ERR_STATE, "device %s: a response without a command", s->eid);
    }
    ret = TC_OK;
out:
    tc_memzero(mem, sizeof mem);
    return ret;
}

/* Records of an earlier dialog of the device not yet applied (written or
 * waiting): a new dialog would read a queue without them. */
static bool records_in_flight(struct tc_ota_ops *e, const char *eid)
{
    bool found = false;
    pthread_mutex_lock(&e->mu);
    struct job *lists[3] = {e->todo, e->writing, e->done};
    for (size_t i = 0; i < 3 && !found; i++)
        for (struct job *j = lists[i]; j != NULL && !found; j = j->next)
            found = strcmp(j->eid, eid) == 0;
    pthread_mutex_unlock(&e->mu);
    return found;
}

static tc_err open_dialog(struct tc_ota_ops *e, const char *eid, struct slot **out)
{
    /* Asynchronous mode: an earlier dialog's records must be on disk and
     * folded before this one reads the device's queue (else it could redo
     * a step the log is about to show done); the device retries. */
    TC_ENSURE_MSG(!e->async || !records_in_flight(e, eid), TC_ERR_STATE,
                  "device %s: the previous dialog's records are still being written", eid);
    struct slot **sp = find_slot(e, eid);
    slot_free(e, sp); /* a new dialog restarts the device's */
    TC_ENSURE_MSG(e->nslots < e->cfg.max_sessions, TC_ERR_NOMEM, "%zu dialogs open",
                  e->cfg.max_sessions);
    struct slot *s = calloc(1, sizeof *s);
    TC_ENSURE(s != NULL, TC_ERR_NOMEM);
    sp = bucket(e, eid);
    s->hnext = *sp;
    e->nslots++;
    s->e = e;
    tc_buf_init_heap(&s->out, TC_OTA_SCRIPT_BYTES_MAX);
    (void)snprintf(s->eid, sizeof s->eid, "%s", eid);
    tc_hsm_scp03_provider_init(&s->m, e->cfg.hsm, &s->kp);
    *sp = s;
    *out = s;
    tc_err rc = tc_hex_decode(eid, strlen(eid), 0, s->eid_bin, sizeof s->eid_bin, &s->eid_len);
    if (rc == TC_OK)
        rc = tc_registry_device_get(e->cfg.reg, s->eid_bin, s->eid_len, &s->dev);
    if (rc == TC_ERR_NOT_FOUND) {
        tc_error_clear();
        s->q.n = 0; /* a device the registry does not know has nothing queued */
        return TC_OK;
    }
    if (rc == TC_OK)
        rc = tc_ota_queue_load(e->cfg.reg, s->eid_bin, s->eid_len, UINT64_MAX, &s->q);
    return rc;
}

static tc_err ops_next(void *ctx, const struct tc_ota_admin_in *in, struct tc_buf *script)
{
    struct tc_ota_ops *e = ctx;
    struct slot *s = NULL;
    tc_err rc;
    if (in->step == 0) {
        e->stats.dialogs++;
        bool pending = false;
        rc = open_dialog(e, in->eid, &s);
        if (rc == TC_OK)
            rc = drive(s, false, script, &pending);
    } else {
        struct slot **sp = find_slot(e, in->eid);
        TC_ENSURE_MSG(sp != NULL, TC_ERR_STATE, "no dialog for %s", in->eid);
        s = *sp;
        if (in->status != TC_OTA_STATUS_OK || in->response == NULL) {
            rc = TC_FAIL(TC_ERR_CARD, "the agent could not run the script (status %d)",
                         (int)in->status);
        } else {
            bool again = false, pending = false;
            rc = absorb(s, in->response, in->response_len, script, &again);
            if (rc == TC_OK && !again)
                rc = drive(s, true, script, &pending);
        }
    }
    if (rc == TC_OK && script->len > 0 && e->cfg.fault != NULL &&
        e->cfg.fault(e->cfg.fault_arg, TC_OTA_FAULT_REPLY, in->eid))
        rc = TC_FAIL(TC_ERR_IO, "fault injected before the reply");
    if (rc != TC_OK || script->len == 0) {
        if (rc != TC_OK)
            e->stats.aborted++;
        tc_buf_reset(script);
        slot_free(e, find_slot(e, in->eid));
    }
    return rc;
}

static void ops_end(void *ctx, const char *eid, bool completed)
{
    struct tc_ota_ops *e = ctx;
    (void)completed;
    slot_free(e, find_slot(e, eid));
}

/* ------------------------------------------------------------------ asynchronous mode */

/* Answers the held request of s (which may be freed by the reply: the
 * server ends the session on 204 and on errors). */
static void answer(struct tc_ota_ops *e, struct slot *s, tc_err rc)
{
    char eid[TC_PKI_EID_DIGITS + 1];
    (void)snprintf(eid, sizeof eid, "%s", s->eid);
    if (rc == TC_OK && s->out.len > 0 && e->cfg.fault != NULL &&
        e->cfg.fault(e->cfg.fault_arg, TC_OTA_FAULT_REPLY, eid))
        rc = TC_FAIL(TC_ERR_IO, "fault injected before the reply");
    if (rc != TC_OK)
        e->stats.aborted++;
    void (*reply)(void *, tc_err, const uint8_t *, size_t) = s->reply;
    void *arg = s->reply_arg;
    s->reply = NULL;
    size_t len = rc == TC_OK ? s->out.len : 0;
    if (reply != NULL)
        reply(arg, rc, s->out.data, len);
    if (rc != TC_OK || len == 0)
        slot_free(e, find_slot(e, eid));
}

static tc_err ops_next_async(void *ctx, const struct tc_ota_admin_in *in,
                             void (*reply)(void *arg, tc_err rc, const uint8_t *script, size_t len),
                             void *arg)
{
    struct tc_ota_ops *e = ctx;
    struct slot *s = NULL;
    bool pending = false;
    tc_err rc;
    if (in->step == 0) {
        e->stats.dialogs++;
        rc = open_dialog(e, in->eid, &s);
        if (rc != TC_OK) {
            slot_free(e, find_slot(e, in->eid));
            return rc;
        }
        s->reply = reply;
        s->reply_arg = arg;
        rc = drive(s, false, &s->out, &pending);
    } else {
        struct slot **sp = find_slot(e, in->eid);
        TC_ENSURE_MSG(sp != NULL, TC_ERR_STATE, "no dialog for %s", in->eid);
        s = *sp;
        TC_ENSURE_MSG(s->reply == NULL, TC_ERR_STATE, "device %s: a request is already held",
                      in->eid);
        s->reply = reply;
        s->reply_arg = arg;
        tc_buf_reset(&s->out);
        if (in->status != TC_OTA_STATUS_OK || in->response == NULL) {
            rc = TC_FAIL(TC_ERR_CARD, "the agent could not run the script (status %d)",
                         (int)in->status);
        } else {
            bool again = false;
            rc = absorb(s, in->response, in->response_len, &s->out, &again);
            if (rc == TC_OK && !again)
                rc = drive(s, true, &s->out, &pending);
        }
    }
    if (rc == TC_OK && pending)
        return TC_OK; /* answered when the records are durable */
    answer(e, s, rc);
    return TC_OK;
}

/* The writer: every waiting dialog's records in one append (one commit). */
static void *writer_main(void *arg)
{
    struct tc_ota_ops *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (e->todo == NULL && !e->stop)
            pthread_cond_wait(&e->cv, &e->mu);
        if (e->todo == NULL)
            break;
        struct job *batch = e->todo;
        e->todo = e->todo_tail = NULL;
        e->writing = batch;
        e->busy = true;
        struct tc_registry *reg = e->cfg.reg;
        pthread_mutex_unlock(&e->mu);

        size_t total = 0, k = 0;
        for (struct job *j = batch; j != NULL; j = j->next)
            total += j->n;
        const uint8_t **ptrs = calloc(total, sizeof *ptrs);
        size_t *lens = calloc(total, sizeof *lens);
        uint64_t first = 0;
        tc_err rc = ptrs != NULL && lens != NULL ? TC_OK : TC_FAIL(TC_ERR_NOMEM, "out of memory");
        for (struct job *j = batch; rc == TC_OK && j != NULL; j = j->next)
            for (size_t i = 0; i < j->n; i++, k++) {
                ptrs[k] = j->ev[i];
                lens[k] = j->lens[i];
            }
        if (rc == TC_OK)
            rc = tc_registry_append_encoded(reg, ptrs, lens, total, &first);
        k = 0;
        for (struct job *j = batch; j != NULL; j = j->next) {
            j->rc = rc;
            j->first = first + k;
            k += j->n;
            if (rc != TC_OK)
                (void)snprintf(j->msg, sizeof j->msg, "%s", tc_error_last()->msg);
        }
        free(ptrs);
        free(lens);

        pthread_mutex_lock(&e->mu);
        struct job *last = batch;
        while (last->next != NULL)
            last = last->next;
        if (e->done_tail != NULL)
            e->done_tail->next = batch;
        else
            e->done = batch;
        e->done_tail = last;
        e->writing = NULL;
        e->busy = false;
        pthread_cond_broadcast(&e->idle);
        uint8_t one = 1;
        while (write(e->pipefd[1], &one, 1) < 0 && errno == EINTR)
            continue;
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* On the loop: continue every dialog whose records are now durable. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tc_ota_ops *e = arg;
    uint8_t buf[256];
    (void)what;
    while (read(fd, buf, sizeof buf) > 0)
        continue;
    pthread_mutex_lock(&e->mu);
    struct job *done = e->done;
    e->done = e->done_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    while (done != NULL) {
        struct job *j = done;
        done = j->next;
        struct slot *s = j->slot;
        if (s == NULL) {
            free(j);
            continue;
        }
        s->job = NULL;
        tc_err rc = job_apply(s, j);
        free(j);
        bool pending = false;
        if (rc == TC_OK) {
            tc_buf_reset(&s->out);
            rc = drive(s, false, &s->out, &pending);
        }
        if (rc == TC_OK && pending)
            continue;
        answer(e, s, rc);
    }
}

static tc_err async_start(struct tc_ota_ops *e)
{
    TC_ENSURE_MSG(pipe(e->pipefd) == 0, TC_ERR_IO, "pipe: %s", strerror(errno));
    for (int i = 0; i < 2; i++)
        (void)fcntl(e->pipefd[i], F_SETFL, fcntl(e->pipefd[i], F_GETFL) | O_NONBLOCK);
    e->wake = event_new(e->cfg.base, e->pipefd[0], EV_READ | EV_PERSIST, wake_cb, e);
    TC_ENSURE_MSG(e->wake != NULL && event_add(e->wake, NULL) == 0, TC_ERR_IO,
                  "cannot watch the writer's pipe");
    TC_ENSURE_MSG(pthread_create(&e->writer, NULL, writer_main, e) == 0, TC_ERR_IO,
                  "cannot start the writer thread");
    e->writer_started = true;
    e->async = true;
    return TC_OK;
}

tc_err tc_ota_ops_new(const struct tc_ota_ops_config *cfg, struct tc_ota_ops **out,
                      struct tc_ota_app *app)
{
    TC_ENSURE(cfg != NULL && out != NULL && app != NULL && cfg->reg != NULL && cfg->hsm != NULL,
              TC_ERR_ARG);
    TC_ENSURE_MSG(cfg->default_master != NULL && cfg->default_master[0] != '\0' &&
                      strlen(cfg->default_master) <= TC_AUDIT_ID_MAX,
                  TC_ERR_ARG, "no default master key name");
    *out = NULL;
    struct tc_ota_ops *e = calloc(1, sizeof *e);
    TC_ENSURE(e != NULL, TC_ERR_NOMEM);
    e->cfg = *cfg;
    if (e->cfg.max_sessions == 0)
        e->cfg.max_sessions = 1024;
    if (e->cfg.max_sessions > (1u << 20))
        e->cfg.max_sessions = 1u << 20;
    if (e->cfg.key_len == 0)
        e->cfg.key_len = 16;
    if (e->cfg.level == 0)
        e->cfg.level = TC_SCP03_LEVEL_RENC;
    (void)snprintf(e->default_master, sizeof e->default_master, "%s", cfg->default_master);
    (void)snprintf(e->actor, sizeof e->actor, "%s", cfg->actor != NULL ? cfg->actor : "ota-server");
    (void)snprintf(e->workspace, sizeof e->workspace, "%s",
                   cfg->workspace != NULL ? cfg->workspace : ".");
    e->cfg.workspace = e->workspace;
    e->cfg.default_master = e->default_master;
    e->cfg.actor = e->actor;
    if (cfg->isd_aid != NULL) {
        if (cfg->isd_aid_len < 5 || cfg->isd_aid_len > sizeof e->isd) {
            free(e);
            return TC_FAIL(TC_ERR_ARG, "ISD AID of %zu bytes", cfg->isd_aid_len);
        }
        memcpy(e->isd, cfg->isd_aid, cfg->isd_aid_len);
        e->isd_len = cfg->isd_aid_len;
    } else {
        memcpy(e->isd, default_isd, sizeof default_isd);
        e->isd_len = sizeof default_isd;
    }
    e->cfg.isd_aid = e->isd;
    e->nbuckets = 64;
    while (e->nbuckets < e->cfg.max_sessions)
        e->nbuckets *= 2;
    e->slots = calloc(e->nbuckets, sizeof *e->slots);
    if (e->slots == NULL) {
        free(e);
        return TC_FAIL(TC_ERR_NOMEM, "no memory for %zu dialogs", cfg->max_sessions);
    }
    e->pipefd[0] = e->pipefd[1] = -1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->idle, NULL);
    if (cfg->base != NULL) {
        tc_err rc = async_start(e);
        if (rc != TC_OK) {
            tc_ota_ops_free(e);
            return rc;
        }
    }
    *app = (struct tc_ota_app){
        .ctx = e, .next = ops_next, .end = ops_end, .next_async = e->async ? ops_next_async : NULL};
    *out = e;
    return TC_OK;
}

void tc_ota_ops_stats(const struct tc_ota_ops *e, struct tc_ota_ops_stats *out)
{
    if (e != NULL && out != NULL)
        *out = e->stats;
}

void tc_ota_ops_free(struct tc_ota_ops *e)
{
    if (e == NULL)
        return;
    if (e->writer_started) {
        pthread_mutex_lock(&e->mu);
        e->stop = true;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        (void)pthread_join(e->writer, NULL); /* what was queued is on disk */
    }
    for (size_t i = 0; e->slots != NULL && i < e->nbuckets; i++)
        while (e->slots[i] != NULL)
            slot_free(e, &e->slots[i]);
    for (struct job *j = e->done; j != NULL;) {
        struct job *n = j->next;
        free(j);
        j = n;
    }
    if (e->wake != NULL)
        event_free(e->wake);
    for (int i = 0; i < 2; i++)
        if (e->pipefd[i] >= 0)
            (void)close(e->pipefd[i]);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->idle);
    free(e->slots);
    free(e);
}

bool tc_ota_run_can_revoke(struct tc_ota_op_run *run)
{
    return run != NULL && slot_of(run)->e->cfg.revoke != NULL;
}

tc_err tc_ota_run_revoke(struct tc_ota_op_run *run, const uint8_t *serial, size_t serial_len,
                         uint16_t reason)
{
    TC_ENSURE(run != NULL && serial != NULL, TC_ERR_ARG);
    struct slot *s = slot_of(run);
    TC_ENSURE_MSG(s->e->cfg.revoke != NULL, TC_ERR_UNSUPPORTED, "no revocation configured");
    return s->e->cfg.revoke(s->e->cfg.revoke_arg, s->eid, s->dev.batch, serial, serial_len, reason);
}

void tc_ota_ops_set_registry(struct tc_ota_ops *e, struct tc_registry *reg)
{
    if (e == NULL || reg == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    while (e->busy) /* the writer finishes its commit on the old one */
        pthread_cond_wait(&e->idle, &e->mu);
    e->cfg.reg = reg;
    pthread_mutex_unlock(&e->mu);
}
