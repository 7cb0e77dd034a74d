/*
 * The operation queue as the fold of a device's events (docs/ota.md,
 * "Operations"): op-queued adds an operation (its id is the event's log
 * index), op-step records the intent reached, op-done / op-failed /
 * op-cancelled end it. The keyset the device holds (KVN and the master it
 * derives from) is folded from the same events, so the server knows every
 * device's current keys from the log alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <trustchain/crypto.h>
#include <trustchain/ota_ops.h>
#include <trustchain/pki.h>

#include "ota/ops_internal.h"

void tc_ota_queue_init(struct tc_ota_queue *q)
{
    memset(q, 0, sizeof *q);
}

static struct tc_ota_op *find_op(struct tc_ota_queue *q, uint64_t id)
{
    for (size_t i = 0; i < q->n; i++)
        if (q->ops[i].id == id)
            return &q->ops[i];
    return NULL;
}

static void count_pending(struct tc_ota_queue *q)
{
    q->pending = 0;
    for (size_t i = 0; i < q->n; i++)
        if (q->ops[i].status == TC_OTA_OP_PENDING)
            q->pending++;
}

/* Room for one more operation: the oldest finished one goes. */
static bool make_room(struct tc_ota_queue *q)
{
    if (q->n < TC_OTA_QUEUE_MAX)
        return true;
    for (size_t i = 0; i < q->n; i++) {
        if (q->ops[i].status != TC_OTA_OP_PENDING) {
            memmove(&q->ops[i], &q->ops[i + 1], (q->n - i - 1) * sizeof q->ops[0]);
            q->n--;
            return true;
        }
    }
    return false;
}

tc_err tc_ota_queue_fold(struct tc_ota_queue *q, uint64_t index, const struct tc_audit_event *ev)
{
    TC_ENSURE(q != NULL && ev != NULL, TC_ERR_ARG);
    struct tc_ota_op *op = NULL;
    if (ev->fields & TC_AUDIT_HAS_OP_ID)
        op = find_op(q, ev->op_id);
    switch (ev->type) {
    case TC_AUDIT_OP_QUEUED:
        if (!make_room(q)) {
            q->overflow = true;
            break;
        }
        op = &q->ops[q->n++];
        memset(op, 0, sizeof *op);
        op->id = index;
        op->code = ev->op_kind;
        op->status = TC_OTA_OP_PENDING;
        op->queued_ms = ev->time_ms;
        (void)snprintf(op->actor, sizeof op->actor, "%s", ev->actor);
        if (ev->fields & TC_AUDIT_HAS_KVN)
            op->kvn = ev->kvn;
        if (ev->fields & TC_AUDIT_HAS_MASTER)
            (void)snprintf(op->master, sizeof op->master, "%s", ev->master);
        if (ev->fields & TC_AUDIT_HAS_DATA_SHA256) {
            memcpy(op->data_sha256, ev->data_sha256, TC_AUDIT_HASH_LEN);
            op->has_data = true;
        }
        break;
    case TC_AUDIT_OP_STEP:
        if (op != NULL && ev->step > op->step)
            op->step = ev->step;
        break;
    case TC_AUDIT_OP_DONE:
        if (op != NULL && op->status == TC_OTA_OP_PENDING)
            op->status = TC_OTA_OP_DONE;
        break;
    case TC_AUDIT_OP_FAILED:
        if (op != NULL && op->status == TC_OTA_OP_PENDING) {
            op->status = TC_OTA_OP_FAILED;
            op->reason = ev->reason;
            if ((ev->fields & TC_AUDIT_HAS_STEP) && ev->step > op->step)
                op->step = ev->step;
        }
        break;
    case TC_AUDIT_OP_CANCELLED:
        /* Only an operation that has not started can be cancelled. */
        if (op != NULL && op->status == TC_OTA_OP_PENDING && op->step == 0)
            op->status = TC_OTA_OP_CANCELLED;
        break;
    case TC_AUDIT_CARD_RECEIVED:
        if (ev->fields & TC_AUDIT_HAS_KVN)
            q->kvn = ev->kvn;
        q->lifecycle = ev->lifecycle;
        q->master[0] = '\0';
        break;
    case TC_AUDIT_KEYS_INJECTED:
    case TC_AUDIT_INJECTION_CONFIRMED:
        /* The line's keys: derived from the default master. */
        q->kvn = ev->kvn;
        q->master[0] = '\0';
        break;
    case TC_AUDIT_KEYS_ROTATED:
        q->kvn = ev->kvn;
        q->master[0] = '\0';
        if (op != NULL && op->master[0] != '\0')
            (void)snprintf(q->master, sizeof q->master, "%s", op->master);
        break;
    case TC_AUDIT_LIFECYCLE_CHANGED:
        q->lifecycle = ev->lifecycle;
        break;
    default:
        break;
    }
    count_pending(q);
    return TC_OK;
}

struct load_arg {
    struct tc_ota_queue *q;
    uint64_t at;
};

static tc_err load_one(void *arg, uint64_t index, const struct tc_audit_event *ev,
                       const uint8_t *event, size_t len)
{
    struct load_arg *a = arg;
    (void)event;
    (void)len;
    if (ev->time_ms > a->at)
        return TC_OK;
    return tc_ota_queue_fold(a->q, index, ev);
}

/*
 * The queue as a registry device snapshot (docs/registry.md, "Device
 * snapshots"), version 1: operation count, KVN, life cycle, overflow (one
 * byte each), the master (length byte and text), then each operation: id
 * (8 bytes, big-endian), code, status, queued time (8), actor (length and
 * text), KVN, master (length and text), has-data (0 or 1), data SHA-256
 * (32, only with has-data), step, reason (2).
 */
static void put_u64(struct tc_buf *b, uint64_t v)
{
    tc_buf_put_u32be(b, (uint32_t)(v >> 32));
    tc_buf_put_u32be(b, (uint32_t)v);
}

static void put_text(struct tc_buf *b, const char *t)
{
    size_t n = strnlen(t, TC_AUDIT_ID_MAX);
    tc_buf_put_u8(b, (uint8_t)n);
    tc_buf_put(b, t, n);
}

static tc_err snap_encode(const void *state, uint8_t *out, size_t out_size, size_t *out_len)
{
    const struct tc_ota_queue *q = state;
    struct tc_buf b;
    tc_buf_init_fixed(&b, out, out_size);
    tc_buf_put_u8(&b, (uint8_t)q->n);
    tc_buf_put_u8(&b, q->kvn);
    tc_buf_put_u8(&b, q->lifecycle);
    tc_buf_put_u8(&b, q->overflow ? 1 : 0);
    put_text(&b, q->master);
    for (size_t i = 0; i < q->n; i++) {
        const struct tc_ota_op *op = &q->ops[i];
        put_u64(&b, op->id);
        tc_buf_put_u8(&b, op->code);
        tc_buf_put_u8(&b, (uint8_t)op->status);
        put_u64(&b, op->queued_ms);
        put_text(&b, op->actor);
        tc_buf_put_u8(&b, op->kvn);
        put_text(&b, op->master);
        tc_buf_put_u8(&b, op->has_data ? 1 : 0);
        if (op->has_data)
            tc_buf_put(&b, op->data_sha256, TC_AUDIT_HASH_LEN);
        tc_buf_put_u8(&b, op->step);
        tc_buf_put_u16be(&b, op->reason);
    }
    TC_GUARD(tc_buf_status(&b));
    *out_len = b.len;
    return TC_OK;
}

static tc_err get_u64(struct tc_cursor *c, uint64_t *v)
{
    uint32_t hi = 0, lo = 0;
    TC_GUARD(tc_cursor_u32be(c, &hi));
    TC_GUARD(tc_cursor_u32be(c, &lo));
    *v = (uint64_t)hi << 32 | lo;
    return TC_OK;
}

static tc_err get_text(struct tc_cursor *c, char out[static TC_AUDIT_ID_MAX + 1])
{
    uint8_t n = 0;
    TC_GUARD(tc_cursor_u8(c, &n));
    TC_ENSURE_MSG(n <= TC_AUDIT_ID_MAX, TC_ERR_FORMAT, "queue snapshot text of %u bytes", n);
    TC_GUARD(tc_cursor_copy(c, out, n));
    out[n] = '\0';
    return TC_OK;
}

static tc_err snap_decode(const uint8_t *in, size_t len, void *state)
{
    struct tc_ota_queue *q = state;
    struct tc_cursor c;
    uint8_t n = 0, flag = 0, status = 0;
    tc_ota_queue_init(q);
    tc_cursor_init(&c, in, len);
    TC_GUARD(tc_cursor_u8(&c, &n));
    TC_ENSURE_MSG(n <= TC_OTA_QUEUE_MAX, TC_ERR_FORMAT, "queue snapshot of %u operations", n);
    TC_GUARD(tc_cursor_u8(&c, &q->kvn));
    TC_GUARD(tc_cursor_u8(&c, &q->lifecycle));
    TC_GUARD(tc_cursor_u8(&c, &flag));
    TC_ENSURE(flag <= 1, TC_ERR_FORMAT);
    q->overflow = flag == 1;
    TC_GUARD(get_text(&c, q->master));
    for (q->n = 0; q->n < n; q->n++) {
        struct tc_ota_op *op = &q->ops[q->n];
        TC_GUARD(get_u64(&c, &op->id));
        TC_GUARD(tc_cursor_u8(&c, &op->code));
        TC_GUARD(tc_cursor_u8(&c, &status));
        TC_ENSURE_MSG(status >= TC_OTA_OP_PENDING && status <= TC_OTA_OP_CANCELLED, TC_ERR_FORMAT,
                      "queue snapshot operation status %u", status);
        op->status = (enum tc_ota_op_status)status;
        TC_GUARD(get_u64(&c, &op->queued_ms));
        TC_GUARD(get_text(&c, op->actor));
        TC_GUARD(tc_cursor_u8(&c, &op->kvn));
        TC_GUARD(get_text(&c, op->master));
        TC_GUARD(tc_cursor_u8(&c, &flag));
        TC_ENSURE(flag <= 1, TC_ERR_FORMAT);
        op->has_data = flag == 1;
        if (op->has_data)
            TC_GUARD(tc_cursor_copy(&c, op->data_sha256, TC_AUDIT_HASH_LEN));
        TC_GUARD(tc_cursor_u8(&c, &op->step));
        TC_GUARD(tc_cursor_u16be(&c, &op->reason));
    }
    TC_GUARD(tc_cursor_expect_end(&c));
    count_pending(q);
    return TC_OK;
}

static void snap_init(void *state)
{
    tc_ota_queue_init(state);
}

static tc_err snap_fold(void *state, uint64_t index, const struct tc_audit_event *ev)
{
    return tc_ota_queue_fold(state, index, ev);
}

static const struct tc_registry_snap_kind queue_snap = {
    .version = 1,
    .state_size = sizeof(struct tc_ota_queue),
    .init = snap_init,
    .decode = snap_decode,
    .fold = snap_fold,
    .encode = snap_encode,
};

tc_err tc_ota_queue_register(struct tc_registry *r)
{
    TC_ENSURE(r != NULL, TC_ERR_ARG);
    return tc_registry_set_snap_kind(r, &queue_snap);
}

tc_err tc_ota_queue_load(struct tc_registry *r, const uint8_t *eid, size_t eid_len, uint64_t at_ms,
                         struct tc_ota_queue *q)
{
    TC_ENSURE(r != NULL && eid != NULL && q != NULL, TC_ERR_ARG);
    tc_ota_queue_init(q);
    tc_err rc;
    if (at_ms == UINT64_MAX) {
        /* The current queue: the registry's snapshot and the events after
         * it. Registered here, so the registry this process appends
         * through keeps the snapshots from now on. */
        TC_GUARD(tc_ota_queue_register(r));
        rc = tc_registry_device_snap(r, &queue_snap, eid, eid_len, q, NULL);
    } else {
        struct load_arg a = {q, at_ms};
        rc = tc_registry_device_history(r, eid, eid_len, load_one, &a);
    }
    if (rc == TC_ERR_NOT_FOUND) {
        tc_ota_queue_init(q);
        rc = TC_OK;
    }
    return rc;
}

struct certs_arg {
    struct tc_ota_cert_ref *out;
    size_t max, n;
    bool overflow;
};

static tc_err certs_one(void *arg, uint64_t index, const struct tc_audit_event *ev,
                        const uint8_t *event, size_t len)
{
    struct certs_arg *a = arg;
    (void)index;
    (void)event;
    (void)len;
    if (ev->type == TC_AUDIT_CERT_ISSUED) {
        if (a->n == a->max) {
            a->overflow = true;
            return TC_OK;
        }
        struct tc_ota_cert_ref *c = &a->out[a->n++];
        memcpy(c->serial, ev->cert_serial, ev->cert_serial_len);
        c->serial_len = ev->cert_serial_len;
        memcpy(c->sha256, ev->cert_sha256, TC_AUDIT_HASH_LEN);
    } else if (ev->type == TC_AUDIT_CERT_REVOKED) {
        for (size_t i = 0; i < a->n; i++) {
            if (a->out[i].serial_len == ev->cert_serial_len &&
                memcmp(a->out[i].serial, ev->cert_serial, ev->cert_serial_len) == 0) {
                memmove(&a->out[i], &a->out[i + 1], (a->n - i - 1) * sizeof a->out[0]);
                a->n--;
                break;
            }
        }
    }
    return TC_OK;
}

tc_err tc_ota_unrevoked_certs(struct tc_registry *r, const uint8_t *eid, size_t eid_len,
                              struct tc_ota_cert_ref *out, size_t max, size_t *n)
{
    TC_ENSURE(r != NULL && eid != NULL && out != NULL && n != NULL, TC_ERR_ARG);
    struct certs_arg a = {out, max, 0, false};
    *n = 0;
    tc_err rc = tc_registry_device_history(r, eid, eid_len, certs_one, &a);
    if (rc == TC_ERR_NOT_FOUND)
        rc = TC_OK;
    TC_GUARD(rc);
    TC_ENSURE_MSG(!a.overflow, TC_ERR_RANGE, "more than %zu certificates issued to the device",
                  max);
    *n = a.n;
    return TC_OK;
}

/* ------------------------------------------------------------------ queueing */

uint64_t ota_now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

tc_err ota_sha256(const uint8_t *p, size_t n, uint8_t out[TC_AUDIT_HASH_LEN])
{
    struct tc_iov v = {p, n};
    return tc_sha256_iov(&v, 1, out);
}

static tc_err blob_path(const char *ws, const uint8_t sha[TC_AUDIT_HASH_LEN], char *out,
                        size_t out_size)
{
    char hex[2 * TC_AUDIT_HASH_LEN + 1];
    TC_GUARD(tc_hex_encode(sha, TC_AUDIT_HASH_LEN, hex, sizeof hex));
    int w = snprintf(out, out_size, "%s/ota/blobs/%s", ws, hex);
    TC_ENSURE_MSG(w > 0 && (size_t)w < out_size, TC_ERR_RANGE, "workspace path too long");
    return TC_OK;
}

static tc_err mkdir_p(const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return TC_FAIL(TC_ERR_IO, "mkdir %s: %s", dir, strerror(errno));
    return TC_OK;
}

/* Content-addressed: written once (temporary file, fsync, rename), never
 * changed; the engine rehashes what it reads. */
static tc_err blob_put(const char *ws, const uint8_t *data, size_t len,
                       const uint8_t sha[TC_AUDIT_HASH_LEN])
{
    char dir[4096], path[4200], tmp[4300];
    int w = snprintf(dir, sizeof dir, "%s/ota", ws);
    TC_ENSURE_MSG(w > 0 && (size_t)w < sizeof dir, TC_ERR_RANGE, "workspace path too long");
    TC_GUARD(mkdir_p(ws));
    TC_GUARD(mkdir_p(dir));
    w = snprintf(dir, sizeof dir, "%s/ota/blobs", ws);
    TC_ENSURE_MSG(w > 0 && (size_t)w < sizeof dir, TC_ERR_RANGE, "workspace path too long");
    TC_GUARD(mkdir_p(dir));
    TC_GUARD(blob_path(ws, sha, path, sizeof path));
    w = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    TC_ENSURE_MSG(w > 0 && (size_t)w < sizeof tmp, TC_ERR_RANGE, "workspace path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    TC_ENSURE_MSG(fd >= 0, TC_ERR_IO, "%s: %s", tmp, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t k = write(fd, data + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            (void)close(fd);
            (void)unlink(tmp);
            return TC_FAIL(TC_ERR_IO, "write %s: %s", tmp, strerror(errno));
        }
        off += (size_t)k;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        (void)unlink(tmp);
        return TC_FAIL(TC_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        (void)unlink(tmp);
        return TC_FAIL(TC_ERR_IO, "rename %s: %s", path, strerror(errno));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        (void)close(dfd);
    }
    return TC_OK;
}

tc_err tc_ota_blob_get(const char *ws, const uint8_t sha[TC_AUDIT_HASH_LEN], uint8_t *out,
                       size_t out_size, size_t *out_len)
{
    char path[4200];
    uint8_t got[TC_SHA256_LEN];
    TC_ENSURE(ws != NULL && out != NULL && out_len != NULL, TC_ERR_ARG);
    TC_GUARD(blob_path(ws, sha, path, sizeof path));
    FILE *f = fopen(path, "rb");
    TC_ENSURE_MSG(f != NULL, TC_ERR_NOT_FOUND, "operation data %s: %s", path, strerror(errno));
    size_t n = fread(out, 1, out_size, f);
    bool more = fgetc(f) != EOF;
    (void)fclose(f);
    TC_ENSURE_MSG(!more, TC_ERR_RANGE, "operation data %s exceeds %zu bytes", path, out_size);
    TC_GUARD(ota_sha256(out, n, got));
    TC_ENSURE_MSG(tc_ct_equal(got, sha, TC_AUDIT_HASH_LEN), TC_ERR_VERIFY,
                  "operation data %s does not match its logged SHA-256", path);
    *out_len = n;
    return TC_OK;
}

static bool terminal(enum tc_registry_state s)
{
    return s == TC_REG_REJECTED || s == TC_REG_REVOKED || s == TC_REG_DECOMMISSIONED;
}

tc_err tc_ota_queue_add(struct tc_registry *r, const struct tc_ota_queue_request *rq, uint64_t *id)
{
    uint8_t eid[TC_AUDIT_EID_MAX];
    size_t eid_len = 0;
    TC_ENSURE(r != NULL && rq != NULL && rq->eid != NULL && id != NULL, TC_ERR_ARG);
    const struct tc_ota_op_kind *k = tc_ota_op_kind_by_code(rq->code);
    TC_ENSURE_MSG(k != NULL, TC_ERR_ARG, "no operation with code %u", rq->code);
    TC_ENSURE_MSG(strlen(rq->eid) == TC_PKI_EID_DIGITS, TC_ERR_ARG, "'%s' is not a 32-digit EID",
                  rq->eid);
    TC_GUARD(tc_hex_decode(rq->eid, strlen(rq->eid), 0, eid, sizeof eid, &eid_len));
    TC_ENSURE_MSG(rq->actor != NULL && rq->actor[0] != '\0', TC_ERR_ARG, "no actor");

    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_OP_QUEUED;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_OP_KIND | TC_AUDIT_HAS_BATCH;
    if (k->params & TC_OTA_PARAM_KVN) {
        /* GP CS 2.3 §11.1.8: key version numbers 01..7F; 0xFF is reserved. */
        TC_ENSURE_MSG(rq->kvn >= 0x01 && rq->kvn <= 0x7F, TC_ERR_ARG, "%s needs --kvn 0x01..0x7F",
                      k->name);
        ev.kvn = rq->kvn;
        ev.fields |= TC_AUDIT_HAS_KVN;
    }
    if (k->params & TC_OTA_PARAM_MASTER) {
        TC_ENSURE_MSG(rq->master != NULL && rq->master[0] != '\0', TC_ERR_ARG,
                      "%s needs --master NAME", k->name);
        TC_ENSURE_MSG(strlen(rq->master) <= TC_AUDIT_ID_MAX, TC_ERR_ARG, "master name too long");
        (void)snprintf(ev.master, sizeof ev.master, "%s", rq->master);
        ev.fields |= TC_AUDIT_HAS_MASTER;
    }
    if (k->params & TC_OTA_PARAM_DATA) {
        TC_ENSURE_MSG(rq->data != NULL && rq->data_len > 0 && rq->data_len <= TC_OTA_DATA_MAX,
                      TC_ERR_ARG, "%s needs --file with 1..%u bytes", k->name, TC_OTA_DATA_MAX);
        TC_ENSURE_MSG(rq->workspace != NULL, TC_ERR_ARG, "no workspace for the data");
        if (rq->code == TC_OTA_OP_STORE_DATA) {
            tc_err rc = ota_store_data_check(rq->data, rq->data_len);
            TC_ENSURE_MSG(rc == TC_OK, TC_ERR_ARG, "store-data: %s", tc_error_last()->msg);
        }
        TC_GUARD(ota_sha256(rq->data, rq->data_len, ev.data_sha256));
        ev.fields |= TC_AUDIT_HAS_DATA_SHA256;
    }

    struct tc_registry_device d;
    tc_err rc = tc_registry_device_get(r, eid, eid_len, &d);
    if (rc == TC_ERR_NOT_FOUND)
        return TC_FAIL(TC_ERR_NOT_FOUND, "device %s is not in the registry", rq->eid);
    TC_GUARD(rc);
    TC_ENSURE_MSG(!terminal(d.state), TC_ERR_STATE, "device %s is %s: nothing can be queued",
                  rq->eid, tc_registry_state_name(d.state));
    TC_ENSURE_MSG(d.state == TC_REG_PROVISIONED || d.state == TC_REG_LOCKED, TC_ERR_STATE,
                  "device %s is %s, not provisioned", rq->eid, tc_registry_state_name(d.state));
    struct tc_ota_queue *q = calloc(1, sizeof *q);
    TC_ENSURE(q != NULL, TC_ERR_NOMEM);
    rc = tc_ota_queue_load(r, eid, eid_len, UINT64_MAX, q);
    size_t pending = q->pending;
    free(q);
    TC_GUARD(rc);
    TC_ENSURE_MSG(pending < TC_OTA_QUEUE_MAX, TC_ERR_NOMEM, "device %s has %zu operations pending",
                  rq->eid, pending);
    if (ev.fields & TC_AUDIT_HAS_DATA_SHA256)
        TC_GUARD(blob_put(rq->workspace, rq->data, rq->data_len, ev.data_sha256));

    ev.time_ms = ota_now_ms();
    memcpy(ev.eid, eid, eid_len);
    ev.eid_len = eid_len;
    (void)snprintf(ev.batch, sizeof ev.batch, "%s", d.batch);
    (void)snprintf(ev.actor, sizeof ev.actor, "%s", rq->actor);
    ev.op_kind = rq->code;
    return tc_registry_append(r, &ev, id);
}

tc_err tc_ota_queue_cancel(struct tc_registry *r, const char *eid_s, uint64_t id, const char *actor)
{
    uint8_t eid[TC_AUDIT_EID_MAX];
    size_t eid_len = 0;
    TC_ENSURE(r != NULL && eid_s != NULL && actor != NULL, TC_ERR_ARG);
    TC_GUARD(tc_hex_decode(eid_s, strlen(eid_s), 0, eid, sizeof eid, &eid_len));
    struct tc_ota_queue *q = calloc(1, sizeof *q);
    TC_ENSURE(q != NULL, TC_ERR_NOMEM);
    tc_err ret = TC_ERR_INTERNAL;
    TC_TRY(tc_ota_queue_load(r, eid, eid_len, UINT64_MAX, q));
    const struct tc_ota_op *op = find_op(q, id);
    TC_CHECK_MSG(op != NULL, TC_ERR_NOT_FOUND, "device %s has no operation %llu", eid_s,
                 (unsigned long long)id);
    TC_CHECK_MSG(op->status == TC_OTA_OP_PENDING, TC_ERR_STATE, "operation %llu is not pending",
                 (unsigned long long)id);
    TC_CHECK_MSG(op->step == 0, TC_ERR_STATE,
                 "operation %llu has started (step %u): it is resumed, not cancelled",
                 (unsigned long long)id, op->step);
    struct tc_audit_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TC_AUDIT_OP_CANCELLED;
    ev.fields = TC_AUDIT_HAS_EID | TC_AUDIT_HAS_OP_ID | TC_AUDIT_HAS_ACTOR;
    ev.time_ms = ota_now_ms();
    memcpy(ev.eid, eid, eid_len);
    ev.eid_len = eid_len;
    ev.op_id = id;
    (void)snprintf(ev.actor, sizeof ev.actor, "%s", actor);
    TC_TRY(tc_registry_append(r, &ev, NULL));
    ret = TC_OK;
out:
    free(q);
    return ret;
}
