/*
 * C2SP signed notes (c2sp.org/signed-note) with Ed25519 signatures, their
 * verifier key strings, and C2SP checkpoints (c2sp.org/tlog-checkpoint).
 * Parsing is strict and goes through the cursor; signing goes through
 * struct tc_signer so the checkpoint key can stay in the HSM.
 */
#include <stdio.h>
#include <string.h>

#include "audit/internal.h"

#define SIG_TYPE_ED25519 0x01u
#define ED25519_SIG_LEN  64u

/* "— " : U+2014 EM DASH, then a space. */
static const uint8_t sig_prefix[] = {0xE2, 0x80, 0x94, 0x20};

/* RFC 8410 §4: SubjectPublicKeyInfo of an Ed25519 key, before the key. */
static const uint8_t ed25519_spki_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                                0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

tc_err tc_audit_ed25519_raw(const uint8_t *spki, size_t len, uint8_t pub[static 32])
{
    TC_ENSURE_MSG(len == sizeof ed25519_spki_prefix + 32 &&
                      memcmp(spki, ed25519_spki_prefix, sizeof ed25519_spki_prefix) == 0,
                  TC_ERR_FORMAT, "not an Ed25519 SubjectPublicKeyInfo");
    memcpy(pub, spki + sizeof ed25519_spki_prefix, 32);
    return TC_OK;
}

void tc_audit_ed25519_spki(const uint8_t pub[static 32], uint8_t spki[static 44])
{
    memcpy(spki, ed25519_spki_prefix, sizeof ed25519_spki_prefix);
    memcpy(spki + sizeof ed25519_spki_prefix, pub, 32);
}

/* ------------------------------------------------------------ UTF-8 text */

/* One UTF-8 scalar value (RFC 3629 §4: shortest form, no surrogates). */
static tc_err utf8_next(struct tc_cursor *c, uint32_t *cp)
{
    uint8_t b0 = 0;
    TC_GUARD(tc_cursor_u8(c, &b0));
    if (b0 < 0x80) {
        *cp = b0;
        return TC_OK;
    }
    size_t extra;
    uint32_t v, min;
    if ((b0 & 0xE0) == 0xC0) {
        extra = 1, v = b0 & 0x1Fu, min = 0x80;
    } else if ((b0 & 0xF0) == 0xE0) {
        extra = 2, v = b0 & 0x0Fu, min = 0x800;
    } else if ((b0 & 0xF8) == 0xF0) {
        extra = 3, v = b0 & 0x07u, min = 0x10000;
    } else {
        return TC_FAIL(TC_ERR_FORMAT, "invalid UTF-8 lead byte 0x%02x", b0);
    }
    for (size_t i = 0; i < extra; i++) {
        uint8_t b = 0;
        TC_ENSURE_MSG(tc_cursor_u8(c, &b) == TC_OK, TC_ERR_FORMAT, "truncated UTF-8 sequence");
        TC_ENSURE_MSG((b & 0xC0) == 0x80, TC_ERR_FORMAT, "invalid UTF-8 continuation byte");
        v = v << 6 | (b & 0x3Fu);
    }
    TC_ENSURE_MSG(v >= min && v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF), TC_ERR_FORMAT,
                  "non-canonical UTF-8 or invalid code point");
    *cp = v;
    return TC_OK;
}

/* signed-note: valid UTF-8, no ASCII control characters but newline. */
static tc_err text_ok(const uint8_t *p, size_t n)
{
    struct tc_cursor c;
    tc_cursor_init(&c, p, n);
    while (tc_cursor_remaining(&c) > 0) {
        uint32_t cp = 0;
        TC_GUARD(utf8_next(&c, &cp));
        TC_ENSURE_MSG(cp >= 0x20 || cp == '\n', TC_ERR_FORMAT, "control character 0x%02x in a note",
                      (unsigned)cp);
    }
    return TC_OK;
}

static bool unicode_space(uint32_t cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* signed-note: key names are non-empty, without Unicode spaces or '+'. */
static tc_err name_ok(const uint8_t *p, size_t n)
{
    TC_ENSURE_MSG(n > 0 && n <= TC_NOTE_NAME_MAX, TC_ERR_FORMAT, "key name must be 1..%u bytes",
                  TC_NOTE_NAME_MAX);
    struct tc_cursor c;
    tc_cursor_init(&c, p, n);
    while (tc_cursor_remaining(&c) > 0) {
        uint32_t cp = 0;
        TC_GUARD(utf8_next(&c, &cp));
        TC_ENSURE_MSG(cp >= 0x20 && cp != '+' && !unicode_space(cp), TC_ERR_FORMAT,
                      "key name contains a space, '+' or a control character");
    }
    return TC_OK;
}

/* ------------------------------------------------------------- key IDs */

tc_err tc_note_key_id(const char *name, const uint8_t pub[static 32], uint32_t *key_id)
{
    /* key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4] */
    const uint8_t sep[2] = {0x0A, SIG_TYPE_ED25519};
    uint8_t h[TC_AUDIT_HASH_LEN];
    TC_GUARD(tc_audit_sha256(name, strlen(name), sep, sizeof sep, pub, 32, h));
    *key_id = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    return TC_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

tc_err tc_note_verifier_parse(const char *vkey, struct tc_note_verifier *v)
{
    TC_ENSURE(vkey != NULL && v != NULL, TC_ERR_ARG);
    memset(v, 0, sizeof *v);
    size_t len = strnlen(vkey, TC_NOTE_VKEY_MAX + 1);
    TC_ENSURE_MSG(len <= TC_NOTE_VKEY_MAX, TC_ERR_FORMAT, "verifier key too long");
    const char *p1 = memchr(vkey, '+', len);
    TC_ENSURE_MSG(p1 != NULL, TC_ERR_FORMAT, "verifier key lacks '+'");
    size_t name_len = (size_t)(p1 - vkey);
    TC_GUARD(name_ok((const uint8_t *)vkey, name_len));
    const char *id = p1 + 1;
    size_t rest = len - name_len - 1;
    /* Key ID: exactly 8 lower-case hex digits, as the key string is written. */
    TC_ENSURE_MSG(rest > 9 && id[8] == '+', TC_ERR_FORMAT, "verifier key ID must be 8 hex digits");
    uint32_t key_id = 0;
    for (size_t i = 0; i < 8; i++) {
        int d = hexval(id[i]);
        TC_ENSURE_MSG(d >= 0, TC_ERR_FORMAT, "verifier key ID must be lower-case hex");
        key_id = key_id << 4 | (uint32_t)d;
    }
    const char *k64 = id + 9;
    uint8_t key[40];
    size_t key_len = 0;
    TC_GUARD(tc_b64_decode(k64, rest - 9, key, sizeof key, &key_len));
    TC_ENSURE_MSG(key_len >= 1 && key[0] == SIG_TYPE_ED25519, TC_ERR_UNSUPPORTED,
                  "verifier key is not an Ed25519 key (type 0x01)");
    TC_ENSURE_MSG(key_len == 33, TC_ERR_FORMAT, "Ed25519 verifier key must be 32 bytes");
    memcpy(v->name, vkey, name_len);
    v->name[name_len] = '\0';
    memcpy(v->pub, key + 1, 32);
    uint32_t want = 0;
    TC_GUARD(tc_note_key_id(v->name, v->pub, &want));
    TC_ENSURE_MSG(want == key_id, TC_ERR_FORMAT, "verifier key ID %08x does not match the key",
                  (unsigned)key_id);
    v->key_id = key_id;
    return TC_OK;
}

static tc_err signer_pub(const struct tc_signer *signer, uint8_t pub[static 32])
{
    TC_ENSURE(signer != NULL && signer->public_key != NULL && signer->sign != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(signer->alg == TC_SIG_ED25519, TC_ERR_UNSUPPORTED,
                  "signed notes here use Ed25519 keys only");
    uint8_t spki[TC_SPKI_MAX];
    size_t spki_len = 0;
    TC_GUARD(signer->public_key(signer->ctx, spki, sizeof spki, &spki_len));
    return tc_audit_ed25519_raw(spki, spki_len, pub);
}

tc_err tc_note_verifier_key(const struct tc_signer *signer, const char *name, char *out,
                            size_t out_size)
{
    TC_ENSURE(name != NULL && out != NULL, TC_ERR_ARG);
    TC_GUARD(name_ok((const uint8_t *)name, strlen(name)));
    uint8_t pub[33];
    TC_GUARD(signer_pub(signer, pub + 1));
    pub[0] = SIG_TYPE_ED25519;
    uint32_t id = 0;
    TC_GUARD(tc_note_key_id(name, pub + 1, &id));
    char b64[64];
    size_t b64_len = 0;
    TC_GUARD(tc_b64_encode(pub, sizeof pub, b64, sizeof b64, &b64_len));
    int n = snprintf(out, out_size, "%s+%08x+%s", name, (unsigned)id, b64);
    TC_ENSURE_MSG(n > 0 && (size_t)n < out_size, TC_ERR_SPACE, "verifier key needs %d bytes",
                  n + 1);
    return TC_OK;
}

/* ---------------------------------------------------------------- sign */

tc_err tc_note_sign(const uint8_t *text, size_t text_len, const struct tc_signer *signer,
                    const char *name, uint8_t *out, size_t out_size, size_t *out_len)
{
    TC_ENSURE(text != NULL && name != NULL && out != NULL && out_len != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(text_len > 0 && text[text_len - 1] == '\n', TC_ERR_FORMAT,
                  "note text must be non-empty and end with a newline");
    TC_GUARD(text_ok(text, text_len));
    TC_GUARD(name_ok((const uint8_t *)name, strlen(name)));
    uint8_t pub[32];
    TC_GUARD(signer_pub(signer, pub));
    uint8_t sig[4 + TC_SIG_MAX];
    size_t sig_len = 0;
    uint32_t id = 0;
    TC_GUARD(tc_note_key_id(name, pub, &id));
    sig[0] = (uint8_t)(id >> 24);
    sig[1] = (uint8_t)(id >> 16);
    sig[2] = (uint8_t)(id >> 8);
    sig[3] = (uint8_t)id;
    /* Ed25519 signatures are generated according to RFC 8032 over the note text. */
    TC_GUARD(signer->sign(signer->ctx, text, text_len, sig + 4, sizeof sig - 4, &sig_len));
    TC_ENSURE_MSG(sig_len == ED25519_SIG_LEN, TC_ERR_CRYPTO, "Ed25519 signature of %zu bytes",
                  sig_len);
    char b64[128];
    size_t b64_len = 0;
    TC_GUARD(tc_b64_encode(sig, 4 + sig_len, b64, sizeof b64, &b64_len));

    struct tc_buf b;
    tc_buf_init_fixed(&b, out, out_size);
    tc_buf_put(&b, text, text_len);
    tc_buf_put_u8(&b, '\n');
    tc_buf_put(&b, sig_prefix, sizeof sig_prefix);
    tc_buf_put(&b, name, strlen(name));
    tc_buf_put_u8(&b, ' ');
    tc_buf_put(&b, b64, b64_len);
    tc_buf_put_u8(&b, '\n');
    TC_GUARD(tc_buf_status(&b));
    *out_len = b.len;
    return TC_OK;
}

/* ---------------------------------------------------------------- open */

static tc_err verify_sig(const struct tc_note_verifier *v, const uint8_t *text, size_t text_len,
                         const uint8_t *sig, size_t sig_len)
{
    TC_ENSURE_MSG(sig_len == ED25519_SIG_LEN, TC_ERR_VERIFY,
                  "invalid signature for key %s+%08x (length)", v->name, (unsigned)v->key_id);
    uint8_t spki[44];
    tc_audit_ed25519_spki(v->pub, spki);
    tc_err rc = tc_sig_verify(TC_SIG_ED25519, spki, sizeof spki, text, text_len, sig, sig_len);
    if (rc != TC_OK)
        return TC_FAIL(TC_ERR_VERIFY, "invalid signature for key %s+%08x", v->name,
                       (unsigned)v->key_id);
    return TC_OK;
}

tc_err tc_note_text_len(const uint8_t *note, size_t len, size_t *text_len)
{
    /* The text is separated from the signatures by the last empty line. */
    size_t split = len;
    for (size_t i = len; i >= 2; i--)
        if (note[i - 1] == '\n' && note[i - 2] == '\n') {
            split = i - 1; /* note[0..split) is the text, ending in '\n' */
            break;
        }
    TC_ENSURE_MSG(split < len, TC_ERR_FORMAT, "note has no blank line before signatures");
    TC_ENSURE_MSG(split > 0, TC_ERR_FORMAT, "note text is empty");
    *text_len = split;
    return TC_OK;
}

tc_err tc_note_open(const uint8_t *note, size_t len, const struct tc_note_verifier *verifiers,
                    size_t nverifiers, size_t *text_len, size_t *verified)
{
    TC_ENSURE(note != NULL || len == 0, TC_ERR_ARG);
    TC_ENSURE(text_len != NULL && verified != NULL, TC_ERR_ARG);
    *text_len = 0;
    *verified = 0;
    TC_ENSURE_MSG(len <= TC_NOTE_MAX, TC_ERR_FORMAT, "note of %zu bytes exceeds %u", len,
                  TC_NOTE_MAX);
    TC_GUARD(text_ok(note, len));
    size_t split = 0;
    TC_GUARD(tc_note_text_len(note, len, &split));
    struct tc_cursor c;
    tc_cursor_init(&c, note + split + 1, len - split - 1);
    TC_ENSURE_MSG(tc_cursor_remaining(&c) > 0, TC_ERR_FORMAT, "note has no signature lines");

    size_t lines = 0, ok = 0;
    uint32_t seen[TC_NOTE_SIGS_MAX];
    const struct tc_note_verifier *seen_v[TC_NOTE_SIGS_MAX];
    while (tc_cursor_remaining(&c) > 0) {
        TC_ENSURE_MSG(++lines <= TC_NOTE_SIGS_MAX, TC_ERR_FORMAT,
                      "note has more than %u signatures", TC_NOTE_SIGS_MAX);
        const uint8_t *line = c.data + c.pos;
        size_t rem = tc_cursor_remaining(&c);
        const uint8_t *nl = memchr(line, '\n', rem);
        TC_ENSURE_MSG(nl != NULL, TC_ERR_FORMAT, "signature line does not end in a newline");
        struct tc_cursor l;
        TC_GUARD(tc_cursor_sub(&c, (size_t)(nl - line), &l));
        TC_GUARD(tc_cursor_skip(&c, 1));
        /* "— <key name> <base64(key ID || signature)>" */
        const uint8_t *prefix = NULL;
        TC_ENSURE_MSG(tc_cursor_view(&l, sizeof sig_prefix, &prefix) == TC_OK &&
                          memcmp(prefix, sig_prefix, sizeof sig_prefix) == 0,
                      TC_ERR_FORMAT, "signature line does not start with an em dash and space");
        const uint8_t *name = l.data + l.pos;
        size_t lrem = tc_cursor_remaining(&l);
        const uint8_t *sp = memchr(name, ' ', lrem);
        TC_ENSURE_MSG(sp != NULL, TC_ERR_FORMAT, "signature line lacks a signature");
        size_t name_len = (size_t)(sp - name);
        TC_GUARD(name_ok(name, name_len));
        TC_GUARD(tc_cursor_skip(&l, name_len + 1));
        uint8_t sig[4 + TC_SIG_MAX];
        size_t sig_len = 0;
        const uint8_t *b64 = NULL;
        size_t b64_len = tc_cursor_remaining(&l);
        TC_GUARD(tc_cursor_view(&l, b64_len, &b64));
        TC_GUARD(tc_b64_decode((const char *)b64, b64_len, sig, sizeof sig, &sig_len));
        TC_ENSURE_MSG(sig_len >= 5, TC_ERR_FORMAT, "signature shorter than key ID plus one byte");
        uint32_t id =
            (uint32_t)sig[0] << 24 | (uint32_t)sig[1] << 16 | (uint32_t)sig[2] << 8 | sig[3];
        /* Verifiers MUST ignore signatures from unknown keys, even if they
         * share a name or ID (but not both) with a known key. */
        const struct tc_note_verifier *v = NULL;
        for (size_t i = 0; i < nverifiers; i++)
            if (verifiers[i].key_id == id && strlen(verifiers[i].name) == name_len &&
                memcmp(verifiers[i].name, name, name_len) == 0) {
                v = &verifiers[i];
                break;
            }
        if (v == NULL)
            continue;
        /* If the key name and ID match a known key, verifiers MUST verify the
         * signature; a failure rejects the whole note. */
        TC_GUARD(verify_sig(v, note, split, sig + 4, sig_len - 4));
        bool dup = false;
        for (size_t i = 0; i < ok; i++)
            dup |= seen_v[i] == v && seen[i] == id;
        if (!dup) {
            seen[ok] = id;
            seen_v[ok] = v;
            ok++;
        }
    }
    /* If no signature from a known key verifies, clients MUST reject. */
    TC_ENSURE_MSG(ok > 0, TC_ERR_VERIFY, "note has no verifiable signatures");
    *text_len = split;
    *verified = ok;
    return TC_OK;
}

/* ----------------------------------------------------------- checkpoint */

tc_err tc_checkpoint_format(const char *origin, uint64_t size,
                            const uint8_t root[static TC_AUDIT_HASH_LEN], uint8_t *out,
                            size_t out_size, size_t *out_len)
{
    TC_ENSURE(origin != NULL && out != NULL && out_len != NULL, TC_ERR_ARG);
    size_t olen = strlen(origin);
    TC_ENSURE_MSG(olen > 0 && olen <= TC_CHECKPOINT_ORIGIN_MAX, TC_ERR_ARG,
                  "checkpoint origin must be 1..%u bytes", TC_CHECKPOINT_ORIGIN_MAX);
    TC_ENSURE_MSG(memchr(origin, '\n', olen) == NULL, TC_ERR_ARG, "origin contains a newline");
    TC_GUARD(text_ok((const uint8_t *)origin, olen));
    char b64[48];
    size_t b64_len = 0;
    TC_GUARD(tc_b64_encode(root, TC_AUDIT_HASH_LEN, b64, sizeof b64, &b64_len));
    int n =
        snprintf((char *)out, out_size, "%s\n%llu\n%s\n", origin, (unsigned long long)size, b64);
    TC_ENSURE_MSG(n > 0 && (size_t)n < out_size, TC_ERR_SPACE, "checkpoint needs %d bytes", n + 1);
    *out_len = (size_t)n;
    return TC_OK;
}

/* Next line without its newline; every line must end in one. */
static tc_err next_line(struct tc_cursor *c, const uint8_t **line, size_t *n)
{
    const uint8_t *p = c->data + c->pos;
    const uint8_t *nl = memchr(p, '\n', tc_cursor_remaining(c));
    TC_ENSURE_MSG(nl != NULL, TC_ERR_FORMAT, "checkpoint line does not end in a newline");
    *n = (size_t)(nl - p);
    TC_GUARD(tc_cursor_view(c, *n, line));
    return tc_cursor_skip(c, 1);
}

tc_err tc_checkpoint_parse(const uint8_t *text, size_t len, struct tc_checkpoint *cp)
{
    TC_ENSURE(cp != NULL && (text != NULL || len == 0), TC_ERR_ARG);
    memset(cp, 0, sizeof *cp);
    TC_GUARD(text_ok(text, len));
    struct tc_cursor c;
    tc_cursor_init(&c, text, len);
    const uint8_t *line = NULL;
    size_t n = 0;
    /* 1. origin: non-empty. */
    TC_GUARD(next_line(&c, &line, &n));
    TC_ENSURE_MSG(n > 0 && n <= TC_CHECKPOINT_ORIGIN_MAX, TC_ERR_FORMAT,
                  "checkpoint origin must be 1..%u bytes", TC_CHECKPOINT_ORIGIN_MAX);
    memcpy(cp->origin, line, n);
    cp->origin[n] = '\0';
    /* 2. tree size: ASCII decimal, no leading zeroes unless "0". */
    TC_GUARD(next_line(&c, &line, &n));
    TC_ENSURE_MSG(n > 0 && n <= 19, TC_ERR_FORMAT, "checkpoint size must be 1..19 digits");
    TC_ENSURE_MSG(!(line[0] == '0' && n > 1), TC_ERR_FORMAT, "checkpoint size has a leading zero");
    uint64_t size = 0;
    for (size_t i = 0; i < n; i++) {
        TC_ENSURE_MSG(line[i] >= '0' && line[i] <= '9', TC_ERR_FORMAT,
                      "checkpoint size is not decimal");
        size = size * 10 + (uint64_t)(line[i] - '0');
    }
    cp->size = size;
    /* 3. root hash: base64 of exactly 32 bytes. */
    TC_GUARD(next_line(&c, &line, &n));
    size_t root_len = 0;
    TC_GUARD(tc_b64_decode((const char *)line, n, cp->root, sizeof cp->root, &root_len));
    TC_ENSURE_MSG(root_len == TC_AUDIT_HASH_LEN, TC_ERR_FORMAT, "checkpoint root is not 32 bytes");
    /* 4. extension lines, if any, MUST be non-empty. */
    while (tc_cursor_remaining(&c) > 0) {
        TC_GUARD(next_line(&c, &line, &n));
        TC_ENSURE_MSG(n > 0, TC_ERR_FORMAT, "empty checkpoint extension line");
        cp->extensions++;
    }
    return TC_OK;
}
