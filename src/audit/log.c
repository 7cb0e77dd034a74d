/*
 * The log: durable appends with group commit, the in-memory tree state,
 * proofs and checkpoints.
 *
 * Group commit: an appender queues its events and waits. Whoever finds no
 * commit in progress becomes the leader, takes every queued request, and
 * writes them in one transaction (events, then the new tree head) whose
 * COMMIT is the one fsync; then it releases everyone it committed. Events
 * are only added to the in-memory tree after COMMIT, so readers never see
 * an index that is not durable.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "audit/internal.h"

struct pending {
    const uint8_t *const *events;
    const size_t *lens;
    size_t n;
    uint8_t (*leaf)[TC_AUDIT_HASH_LEN];
    uint64_t first;
    tc_err rc;
    bool done;
    pthread_cond_t cv; /* signalled when done, or when it should lead */
    struct pending *next;
};

struct tc_audit_log {
    struct tc_audit_store store;
    char origin[TC_CHECKPOINT_ORIGIN_MAX + 1];
    pthread_mutex_t mu; /* queue and leader flag */
    struct pending *head, *tail;
    bool committing;
    tc_err broken;              /* sticky: durable state and memory diverged */
    pthread_mutex_t store_mu;   /* one store user at a time */
    pthread_rwlock_t tree_lock; /* the in-memory tree */
    struct tc_merkle_tree tree;
    void (*hook)(void *arg, enum tc_audit_step step);
    void *hook_arg;
    tc_audit_batch_hook batch_hook;
    void *batch_arg;
    /* The leader's scratch (under store_mu): the full subtrees a batch's
     * leaves complete, hashed once before COMMIT and kept for the tree. */
    uint8_t (*parents)[TC_AUDIT_HASH_LEN];
    size_t parents_cap;
    struct tc_audit_batch_event *evs;
    size_t evs_cap;
};

static void fault(struct tc_audit_log *log, enum tc_audit_step step)
{
    if (log->hook)
        log->hook(log->hook_arg, step);
}

struct load_ctx {
    struct tc_merkle_tree *tree;
};

static tc_err load_one(void *arg, uint64_t index, const uint8_t *event, size_t len,
                       const uint8_t *leaf_hash, size_t hash_len)
{
    struct load_ctx *c = arg;
    (void)event;
    (void)len;
    TC_ENSURE_MSG(index == c->tree->size, TC_ERR_VERIFY,
                  "stored events are not contiguous: index %llu where %llu was expected",
                  (unsigned long long)index, (unsigned long long)c->tree->size);
    TC_ENSURE_MSG(hash_len == TC_AUDIT_HASH_LEN, TC_ERR_VERIFY, "stored leaf hash of %zu bytes",
                  hash_len);
    return tc_merkle_append(c->tree, leaf_hash);
}

tc_err tc_audit_log_open(struct tc_audit_store store, const char *origin, struct tc_audit_log **out)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct tc_audit_log *log = NULL;
    TC_CHECK(store.ops != NULL && origin != NULL && out != NULL, TC_ERR_ARG);
    size_t olen = strlen(origin);
    TC_CHECK_MSG(olen > 0 && olen <= TC_CHECKPOINT_ORIGIN_MAX, TC_ERR_ARG,
                 "log origin must be 1..%u bytes", TC_CHECKPOINT_ORIGIN_MAX);
    log = calloc(1, sizeof *log);
    TC_CHECK(log != NULL, TC_ERR_NOMEM);
    log->store = store;
    store.ops = NULL; /* owned by the log from here */
    memcpy(log->origin, origin, olen + 1);
    pthread_mutex_init(&log->mu, NULL);
    pthread_mutex_init(&log->store_mu, NULL);
    pthread_rwlock_init(&log->tree_lock, NULL);
    tc_merkle_init(&log->tree);

    /* Load the leaf hashes and check them against the stored tree head.
     * (tc_audit_verify_store recomputes everything from the events.) */
    struct load_ctx lc = {&log->tree};
    TC_TRY(log->store.ops->scan_events(log->store.ctx, load_one, &lc));
    TC_TRY(tc_merkle_seal(&log->tree));
    uint64_t size = 0;
    uint8_t root[TC_AUDIT_HASH_LEN], mine[TC_AUDIT_HASH_LEN];
    tc_err rc = log->store.ops->get_tree(log->store.ctx, &size, root);
    if (rc == TC_ERR_NOT_FOUND) {
        TC_CHECK_MSG(log->tree.size == 0, TC_ERR_VERIFY, "events stored without a tree head");
    } else {
        TC_TRY(rc);
        TC_CHECK_MSG(size == log->tree.size, TC_ERR_VERIFY,
                     "tree head says %llu events, store holds %llu", (unsigned long long)size,
                     (unsigned long long)log->tree.size);
        TC_TRY(tc_merkle_root(&log->tree, size, mine));
        TC_CHECK_MSG(memcmp(mine, root, sizeof root) == 0, TC_ERR_VERIFY,
                     "stored tree head does not match the stored leaves");
    }
    *out = log;
    log = NULL;
    ret = TC_OK;
out:
    if (store.ops != NULL)
        tc_audit_store_close(&store);
    tc_audit_log_close(log);
    return ret;
}

void tc_audit_log_close(struct tc_audit_log *log)
{
    if (log == NULL)
        return;
    tc_audit_store_close(&log->store);
    tc_merkle_free(&log->tree);
    free(log->parents);
    free(log->evs);
    pthread_mutex_destroy(&log->mu);
    pthread_mutex_destroy(&log->store_mu);
    pthread_rwlock_destroy(&log->tree_lock);
    free(log);
}

void tc_audit_log_set_fault_hook(struct tc_audit_log *log,
                                 void (*hook)(void *arg, enum tc_audit_step step), void *arg)
{
    log->hook = hook;
    log->hook_arg = arg;
}

void tc_audit_log_set_batch_hook(struct tc_audit_log *log, tc_audit_batch_hook hook, void *arg)
{
    pthread_mutex_lock(&log->store_mu);
    log->batch_hook = hook;
    log->batch_arg = arg;
    pthread_mutex_unlock(&log->store_mu);
}

/* Grows one of the leader's scratch arrays to hold n elements. */
static tc_err scratch(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap)
        return TC_OK;
    size_t want = n < 64 ? 64 : n;
    TC_ENSURE(want <= SIZE_MAX / elem, TC_ERR_NOMEM);
    void *q = realloc(*p, want * elem);
    TC_ENSURE(q != NULL, TC_ERR_NOMEM);
    *p = q;
    *cap = want;
    return TC_OK;
}

static tc_err run_batch_hook(struct tc_audit_log *log, struct pending *batch, uint64_t first,
                             uint64_t end)
{
    TC_ENSURE(end - first <= SIZE_MAX / sizeof(struct tc_audit_batch_event), TC_ERR_NOMEM);
    size_t n = (size_t)(end - first), k = 0;
    void *evs = log->evs;
    TC_GUARD(scratch(&evs, &log->evs_cap, n, sizeof *log->evs));
    log->evs = evs;
    for (struct pending *p = batch; p; p = p->next)
        for (size_t i = 0; i < p->n && k < n; i++, k++) {
            log->evs[k].index = first + k;
            log->evs[k].event = p->events[i];
            log->evs[k].len = p->lens[i];
        }
    TC_ENSURE(k == n, TC_ERR_INTERNAL);
    return log->batch_hook(log->batch_arg, &log->store, log->evs, n);
}

/*
 * One transaction for the whole batch; runs with no lock but store_mu.
 *
 * Every node hash is computed once: the frontier (a copy of the tree's
 * right border) takes the batch's leaves before COMMIT, keeping the full
 * subtrees they complete in log->parents, and its fold gives both the new
 * root (stored as the tree head) and the seal cache; after COMMIT the tree
 * takes the leaves with those hashes (tc_merkle_append_computed) and the
 * cache (tc_merkle_set_border). A leaf's parents are a pure function of the
 * hashes left of it, so they are the ones tc_merkle_append would compute.
 */
static tc_err commit_batch(struct tc_audit_log *log, struct pending *batch)
{
    tc_err ret = TC_ERR_INTERNAL;
    const struct tc_audit_store_ops *ops = log->store.ops;
    void *ctx = log->store.ctx;
    bool open = false;
    struct tc_merkle_frontier f;
    uint8_t border[TC_MERKLE_LEVELS][TC_AUDIT_HASH_LEN];
    size_t leaves = 0, np = 0;
    for (struct pending *p = batch; p; p = p->next)
        leaves += p->n;
    /* Leaves s..e-1 complete at most (e - s) + 63 full subtrees. */
    void *parents = log->parents;
    TC_TRY(scratch(&parents, &log->parents_cap, leaves + TC_MERKLE_LEVELS, TC_AUDIT_HASH_LEN));
    log->parents = parents;
    /* Only the leader changes the tree, so reading it here needs no lock. */
    TC_TRY(tc_merkle_frontier_from_tree(&log->tree, &f));
    fault(log, TC_AUDIT_STEP_BEGIN);
    TC_TRY(ops->begin(ctx));
    open = true;
    for (struct pending *p = batch; p; p = p->next) {
        p->first = f.size;
        for (size_t i = 0; i < p->n; i++) {
            size_t k = 0;
            TC_TRY(ops->put_event(ctx, f.size, p->events[i], p->lens[i], p->leaf[i]));
            TC_TRY(tc_merkle_frontier_append_rec(&f, p->leaf[i], log->parents + np,
                                                 log->parents_cap - np, &k));
            np += k;
            fault(log, TC_AUDIT_STEP_EVENT);
        }
    }
    if (log->batch_hook)
        TC_TRY(run_batch_hook(log, batch, log->tree.size, f.size));
    uint8_t root[TC_AUDIT_HASH_LEN];
    TC_TRY(tc_merkle_frontier_seal(&f, border, root));
    TC_TRY(ops->put_tree(ctx, f.size, root));
    fault(log, TC_AUDIT_STEP_TREE);
    fault(log, TC_AUDIT_STEP_COMMIT);
    TC_TRY(ops->commit(ctx));
    open = false;
    fault(log, TC_AUDIT_STEP_COMMITTED);

    /* Durable: now the tree may show it. */
    pthread_rwlock_wrlock(&log->tree_lock);
    tc_err rc = TC_OK;
    size_t used = 0;
    for (struct pending *p = batch; p && rc == TC_OK; p = p->next)
        for (size_t i = 0; i < p->n && rc == TC_OK; i++) {
            size_t k = (size_t)__builtin_ctzll(~log->tree.size);
            rc = used + k <= np ? tc_merkle_append_computed(
                                      &log->tree, p->leaf[i],
                                      (const uint8_t(*)[TC_AUDIT_HASH_LEN])(log->parents + used), k)
                                : TC_FAIL(TC_ERR_INTERNAL, "frontier and tree disagree");
            used += k;
        }
    if (rc == TC_OK && used != np)
        rc = TC_FAIL(TC_ERR_INTERNAL, "frontier and tree disagree");
    if (rc == TC_OK)
        tc_merkle_set_border(&log->tree, (const uint8_t(*)[TC_AUDIT_HASH_LEN])border);
    pthread_rwlock_unlock(&log->tree_lock);
    if (rc != TC_OK) {
        /* On disk but not in memory: refuse further work until reopened. */
        log->broken = rc;
        ret = rc;
        goto out;
    }
    ret = TC_OK;
out:
    if (open)
        ops->rollback(ctx);
    return ret;
}

tc_err tc_audit_log_append(struct tc_audit_log *log, const uint8_t *const *events,
                           const size_t *lens, size_t n, uint64_t *first_index)
{
    tc_err ret = TC_ERR_INTERNAL;
    struct pending p = {events, lens, n, NULL, 0, TC_ERR_INTERNAL, false, PTHREAD_COND_INITIALIZER,
                        NULL};
    TC_CHECK(log != NULL && events != NULL && lens != NULL && n > 0, TC_ERR_ARG);
    TC_CHECK(n <= 1u << 20, TC_ERR_RANGE);
    p.leaf = malloc(n * TC_AUDIT_HASH_LEN);
    TC_CHECK(p.leaf != NULL, TC_ERR_NOMEM);
    /* Only canonical events enter the log; hashing here spreads the work
     * over the appending threads. */
    for (size_t i = 0; i < n; i++) {
        struct tc_audit_event ev;
        TC_TRY(tc_audit_event_decode(events[i], lens[i], &ev));
        TC_TRY(tc_merkle_leaf_hash(events[i], lens[i], p.leaf[i]));
    }

    pthread_mutex_lock(&log->mu);
    if (log->tail)
        log->tail->next = &p;
    else
        log->head = &p;
    log->tail = &p;
    while (!p.done) {
        if (log->committing) {
            /* Woken only when done, or as the head of the queue when the
             * leader finished: each waiter has its own condition, so a
             * commit wakes just the appenders it served. */
            pthread_cond_wait(&p.cv, &log->mu);
            continue;
        }
        struct pending *batch = log->head;
        log->head = log->tail = NULL;
        log->committing = true;
        tc_err broken = log->broken;
        pthread_mutex_unlock(&log->mu);

        tc_err rc = broken;
        if (rc == TC_OK) {
            pthread_mutex_lock(&log->store_mu);
            rc = commit_batch(log, batch);
            pthread_mutex_unlock(&log->store_mu);
        } else {
            rc = TC_FAIL(TC_ERR_STATE, "log is unusable after an earlier failure");
        }

        pthread_mutex_lock(&log->mu);
        for (struct pending *q = batch, *next; q; q = next) {
            next = q->next; /* q may be gone once it is released */
            q->rc = rc;
            q->done = true;
            if (q != &p)
                pthread_cond_signal(&q->cv);
        }
        log->committing = false;
        /* Hand the lead to the first appender that queued meanwhile. */
        if (log->head)
            pthread_cond_signal(&log->head->cv);
        pthread_mutex_unlock(&log->mu);
        fault(log, TC_AUDIT_STEP_ACKNOWLEDGED);
        pthread_mutex_lock(&log->mu);
    }
    pthread_mutex_unlock(&log->mu);
    TC_TRY(p.rc);
    if (first_index)
        *first_index = p.first;
    ret = TC_OK;
out:
    pthread_cond_destroy(&p.cv);
    free(p.leaf);
    return ret;
}

tc_err tc_audit_log_append_event(struct tc_audit_log *log, const struct tc_audit_event *ev,
                                 uint64_t *index)
{
    uint8_t buf[TC_AUDIT_EVENT_MAX];
    size_t len = 0;
    TC_GUARD(tc_audit_event_encode(ev, buf, sizeof buf, &len));
    const uint8_t *events[1] = {buf};
    return tc_audit_log_append(log, events, &len, 1, index);
}

uint64_t tc_audit_log_size(struct tc_audit_log *log)
{
    pthread_rwlock_rdlock(&log->tree_lock);
    uint64_t n = log->tree.size;
    pthread_rwlock_unlock(&log->tree_lock);
    return n;
}

tc_err tc_audit_log_root(struct tc_audit_log *log, uint64_t size,
                         uint8_t root[static TC_AUDIT_HASH_LEN])
{
    pthread_rwlock_rdlock(&log->tree_lock);
    tc_err rc = tc_merkle_root(&log->tree, size, root);
    pthread_rwlock_unlock(&log->tree_lock);
    return rc;
}

tc_err tc_audit_log_event(struct tc_audit_log *log, uint64_t index, uint8_t *out, size_t out_size,
                          size_t *out_len)
{
    TC_ENSURE_MSG(index < tc_audit_log_size(log), TC_ERR_NOT_FOUND, "no event %llu",
                  (unsigned long long)index);
    pthread_mutex_lock(&log->store_mu);
    tc_err rc = log->store.ops->get_event(log->store.ctx, index, out, out_size, out_len, NULL);
    pthread_mutex_unlock(&log->store_mu);
    return rc;
}

tc_err tc_audit_log_prove_inclusion(struct tc_audit_log *log, uint64_t index, uint64_t size,
                                    uint8_t (*proof)[TC_AUDIT_HASH_LEN], size_t max, size_t *n)
{
    pthread_rwlock_rdlock(&log->tree_lock);
    tc_err rc = tc_merkle_inclusion_proof(&log->tree, index, size, proof, max, n);
    pthread_rwlock_unlock(&log->tree_lock);
    return rc;
}

tc_err tc_audit_log_prove_consistency(struct tc_audit_log *log, uint64_t size1, uint64_t size2,
                                      uint8_t (*proof)[TC_AUDIT_HASH_LEN], size_t max, size_t *n)
{
    pthread_rwlock_rdlock(&log->tree_lock);
    tc_err rc = tc_merkle_consistency_proof(&log->tree, size1, size2, proof, max, n);
    pthread_rwlock_unlock(&log->tree_lock);
    return rc;
}

tc_err tc_audit_log_checkpoint(struct tc_audit_log *log, const struct tc_signer *signer,
                               uint8_t *note, size_t note_size, size_t *note_len)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(log != NULL && signer != NULL && note != NULL && note_len != NULL, TC_ERR_ARG);
    /* Holding store_mu keeps commits out, so the signed head is the
     * current durable tree and checkpoints are stored in size order. */
    pthread_mutex_lock(&log->store_mu);
    bool open = false;
    uint8_t root[TC_AUDIT_HASH_LEN], text[TC_CHECKPOINT_ORIGIN_MAX + 64];
    size_t text_len = 0;
    uint64_t size = log->tree.size;
    TC_CHECK_MSG(log->broken == TC_OK, TC_ERR_STATE, "log is unusable after an earlier failure");
    TC_TRY(tc_merkle_root(&log->tree, size, root));
    TC_TRY(tc_checkpoint_format(log->origin, size, root, text, sizeof text, &text_len));
    /* tlog-checkpoint: the log's key name SHOULD match the origin line. */
    TC_TRY(tc_note_sign(text, text_len, signer, log->origin, note, note_size, note_len));
    TC_TRY(log->store.ops->begin(log->store.ctx));
    open = true;
    TC_TRY(log->store.ops->put_checkpoint(log->store.ctx, size, note, *note_len));
    TC_TRY(log->store.ops->commit(log->store.ctx));
    open = false;
    ret = TC_OK;
out:
    if (open)
        log->store.ops->rollback(log->store.ctx);
    pthread_mutex_unlock(&log->store_mu);
    return ret;
}

tc_err tc_audit_log_latest_checkpoint(struct tc_audit_log *log, uint8_t *note, size_t note_size,
                                      size_t *note_len)
{
    uint64_t size = 0;
    pthread_mutex_lock(&log->store_mu);
    tc_err rc = log->store.ops->last_checkpoint(log->store.ctx, &size, note, note_size, note_len);
    pthread_mutex_unlock(&log->store_mu);
    return rc;
}

const struct tc_merkle_tree *tc_audit_log_tree_rdlock(struct tc_audit_log *log)
{
    pthread_rwlock_rdlock(&log->tree_lock);
    return &log->tree;
}

void tc_audit_log_tree_unlock(struct tc_audit_log *log)
{
    pthread_rwlock_unlock(&log->tree_lock);
}

struct tc_audit_store *tc_audit_log_store_lock(struct tc_audit_log *log)
{
    pthread_mutex_lock(&log->store_mu);
    return &log->store;
}

void tc_audit_log_store_unlock(struct tc_audit_log *log)
{
    pthread_mutex_unlock(&log->store_mu);
}
