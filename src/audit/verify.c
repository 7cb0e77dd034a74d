/*
 * Full verification of a stored log, trusting nothing it holds: events are
 * re-decoded and re-hashed, the tree recomputed, every checkpoint's
 * signature, origin and root checked, and successive checkpoints proven
 * consistent with RFC 9162 consistency proofs.
 */
#include <stdlib.h>
#include <string.h>

#include "audit/internal.h"

struct scan_ctx {
    struct tc_merkle_tree *tree;
};

static tc_err check_event(void *arg, uint64_t index, const uint8_t *event, size_t len,
                          const uint8_t *leaf_hash, size_t hash_len)
{
    struct scan_ctx *c = arg;
    TC_ENSURE_MSG(index == c->tree->size, TC_ERR_VERIFY,
                  "event index %llu where %llu was expected (deleted or inserted event)",
                  (unsigned long long)index, (unsigned long long)c->tree->size);
    struct tc_audit_event ev;
    tc_err rc = tc_audit_event_decode(event, len, &ev);
    if (rc != TC_OK) {
        char why[sizeof tc_error_last()->msg];
        memcpy(why, tc_error_last()->msg, sizeof why);
        return TC_FAIL(TC_ERR_VERIFY, "event %llu is not a canonical event: %s",
                       (unsigned long long)index, why);
    }
    uint8_t h[TC_AUDIT_HASH_LEN];
    TC_GUARD(tc_merkle_leaf_hash(event, len, h));
    TC_ENSURE_MSG(hash_len == TC_AUDIT_HASH_LEN && memcmp(h, leaf_hash, sizeof h) == 0,
                  TC_ERR_VERIFY, "stored leaf hash of event %llu does not match the event",
                  (unsigned long long)index);
    return tc_merkle_append(c->tree, h);
}

tc_err tc_audit_verify_store(struct tc_audit_store *store, const char *origin,
                             const struct tc_note_verifier *verifier, bool require_full_checkpoint,
                             struct tc_audit_verify_report *report)
{
    tc_err ret = TC_ERR_INTERNAL;
    TC_ENSURE(store != NULL && store->ops != NULL && origin != NULL && verifier != NULL &&
                  report != NULL,
              TC_ERR_ARG);
    memset(report, 0, sizeof *report);
    struct tc_merkle_tree t;
    tc_merkle_init(&t);
    uint8_t *note = malloc(TC_NOTE_MAX);
    TC_CHECK(note != NULL, TC_ERR_NOMEM);

    struct scan_ctx sc = {&t};
    TC_TRY(store->ops->scan_events(store->ctx, check_event, &sc));
    uint8_t root[TC_AUDIT_HASH_LEN], stored[TC_AUDIT_HASH_LEN];
    TC_TRY(tc_merkle_root(&t, t.size, root));
    uint64_t stored_size = 0;
    tc_err rc = store->ops->get_tree(store->ctx, &stored_size, stored);
    if (rc == TC_ERR_NOT_FOUND) {
        TC_CHECK_MSG(t.size == 0, TC_ERR_VERIFY, "events stored without a tree head");
    } else {
        TC_TRY(rc);
        TC_CHECK_MSG(stored_size == t.size, TC_ERR_VERIFY,
                     "tree head says %llu events, the log holds %llu",
                     (unsigned long long)stored_size, (unsigned long long)t.size);
        TC_CHECK_MSG(memcmp(stored, root, sizeof root) == 0, TC_ERR_VERIFY,
                     "stored tree head does not match the recomputed tree");
    }

    uint64_t after = 0, prev_size = 0, last_size = 0;
    uint8_t prev_root[TC_AUDIT_HASH_LEN];
    bool have_prev = false;
    for (;;) {
        uint64_t cp_size = 0;
        size_t note_len = 0, text_len = 0, verified = 0;
        rc = store->ops->next_checkpoint(store->ctx, after, &cp_size, note, TC_NOTE_MAX, &note_len);
        if (rc == TC_ERR_NOT_FOUND)
            break;
        TC_TRY(rc);
        after = cp_size;
        char why[sizeof tc_error_last()->msg];
        rc = tc_note_open(note, note_len, verifier, 1, &text_len, &verified);
        if (rc != TC_OK)
            memcpy(why, tc_error_last()->msg, sizeof why);
        TC_CHECK_MSG(rc == TC_OK, TC_ERR_VERIFY, "checkpoint at %llu: %s",
                     (unsigned long long)cp_size, why);
        struct tc_checkpoint cp;
        rc = tc_checkpoint_parse(note, text_len, &cp);
        if (rc != TC_OK)
            memcpy(why, tc_error_last()->msg, sizeof why);
        TC_CHECK_MSG(rc == TC_OK, TC_ERR_VERIFY, "checkpoint at %llu: %s",
                     (unsigned long long)cp_size, why);
        TC_CHECK_MSG(strcmp(cp.origin, origin) == 0, TC_ERR_VERIFY,
                     "checkpoint at %llu is for origin \"%s\"", (unsigned long long)cp_size,
                     cp.origin);
        TC_CHECK_MSG(cp.size == cp_size, TC_ERR_VERIFY, "checkpoint stored at %llu says size %llu",
                     (unsigned long long)cp_size, (unsigned long long)cp.size);
        TC_CHECK_MSG(cp.size <= t.size, TC_ERR_VERIFY,
                     "checkpoint at %llu is beyond the log's %llu events (events deleted)",
                     (unsigned long long)cp.size, (unsigned long long)t.size);
        uint8_t mine[TC_AUDIT_HASH_LEN];
        TC_TRY(tc_merkle_root(&t, cp.size, mine));
        TC_CHECK_MSG(memcmp(mine, cp.root, sizeof mine) == 0, TC_ERR_VERIFY,
                     "signed checkpoint at %llu does not match the log's events",
                     (unsigned long long)cp.size);
        /* Each checkpoint extends the previous one (RFC 9162 §2.1.4). */
        if (have_prev && prev_size > 0) {
            uint8_t proof[TC_MERKLE_PROOF_MAX][TC_AUDIT_HASH_LEN];
            size_t np = 0;
            TC_TRY(tc_merkle_consistency_proof(&t, prev_size, cp.size, proof, TC_MERKLE_PROOF_MAX,
                                               &np));
            TC_TRY(tc_merkle_verify_consistency(prev_size, cp.size, prev_root, cp.root,
                                                (const uint8_t(*)[TC_AUDIT_HASH_LEN])proof, np));
        }
        memcpy(prev_root, cp.root, sizeof prev_root);
        prev_size = cp.size;
        have_prev = true;
        last_size = cp.size;
        report->checkpoints++;
    }
    if (require_full_checkpoint)
        TC_CHECK_MSG(have_prev && last_size == t.size, TC_ERR_VERIFY,
                     "no signed checkpoint covers the whole log (%llu events, last checkpoint "
                     "at %llu)",
                     (unsigned long long)t.size, (unsigned long long)last_size);
    report->size = t.size;
    memcpy(report->root, root, sizeof root);
    ret = TC_OK;
out:
    free(note);
    tc_merkle_free(&t);
    return ret;
}
