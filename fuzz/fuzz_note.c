/*
 * libFuzzer target for the audit log's parsers. The first byte picks one:
 *   0: signed note, opened with the Go test key (PeterNeumann)
 *   1: checkpoint text; one that parses must format back to the same
 *      bytes when it has no extension lines
 *   2: audit event; one that decodes must encode back to the same bytes
 *   3: verifier key string
 *   4: inclusion proof verification (index, size, hashes from the input)
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/audit.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char peter[] = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t which = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    static uint8_t out[TC_NOTE_MAX];
    size_t out_len = 0;

    switch (which % 5) {
    case 0: {
        struct tc_note_verifier v;
        if (tc_note_verifier_parse(peter, &v) != TC_OK)
            abort();
        size_t text_len = 0, verified = 0;
        if (tc_note_open(in, n, &v, 1, &text_len, &verified) == TC_OK &&
            (verified != 1 || text_len == 0 || text_len >= n || in[text_len - 1] != '\n'))
            abort();
        break;
    }
    case 1: {
        struct tc_checkpoint cp;
        if (tc_checkpoint_parse(in, n, &cp) == TC_OK && cp.extensions == 0) {
            if (tc_checkpoint_format(cp.origin, cp.size, cp.root, out, sizeof out, &out_len) !=
                    TC_OK ||
                out_len != n || memcmp(out, in, n) != 0)
                abort();
        }
        break;
    }
    case 2: {
        struct tc_audit_event ev;
        if (tc_audit_event_decode(in, n, &ev) == TC_OK) {
            if (tc_audit_event_encode(&ev, out, sizeof out, &out_len) != TC_OK || out_len != n ||
                memcmp(out, in, n) != 0)
                abort();
        }
        break;
    }
    case 3: {
        char s[TC_NOTE_VKEY_MAX + 2];
        size_t k = n < sizeof s - 1 ? n : sizeof s - 1;
        memcpy(s, in, k);
        s[k] = '\0';
        struct tc_note_verifier v;
        (void)tc_note_verifier_parse(s, &v);
        break;
    }
    case 4: {
        if (n < 16 + 64)
            break;
        uint64_t index = get_u64(in), tree = get_u64(in + 8);
        const uint8_t *leaf = in + 16, *root = in + 48;
        size_t np = (n - 80) / TC_AUDIT_HASH_LEN;
        if (np > TC_MERKLE_PROOF_MAX)
            np = TC_MERKLE_PROOF_MAX;
        uint8_t proof[TC_MERKLE_PROOF_MAX][TC_AUDIT_HASH_LEN];
        memcpy(proof, in + 80, np * TC_AUDIT_HASH_LEN);
        (void)tc_merkle_verify_inclusion(leaf, index, tree,
                                         (const uint8_t(*)[TC_AUDIT_HASH_LEN])proof, np, root);
        (void)tc_merkle_verify_consistency(index, tree, leaf, root,
                                           (const uint8_t(*)[TC_AUDIT_HASH_LEN])proof, np);
        break;
    }
    default:
        break;
    }
    return 0;
}
