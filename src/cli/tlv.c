/*
 * trustchain tlv: decode BER-TLV (ISO/IEC 7816-4 §5.2.2, X.690 §8.1) from
 * hex into an indented tree. The whole input is validated first, so a
 * malformed input prints nothing but the error.
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/codec.h>

#include "cli.h"

/* The largest input accepted: a 4-byte length field reaches far beyond
 * anything a card sends; this cap keeps the program's memory bounded. */
#define TLV_CLI_MAX_BYTES (1024u * 1024u)

static const char tlv_decode_usage[] =
    "usage: trustchain tlv decode [--json] HEX...\n"
    "\n"
    "Decode BER-TLV data objects as ISO/IEC 7816-4 and GlobalPlatform use them:\n"
    "tags of 1 to 4 bytes, definite lengths with up to 4 length bytes, nesting to\n"
    "16 levels. Each object prints as one line, indented by its level:\n"
    "  TAG constructed|primitive, N byte(s)[: VALUE-HEX [\"ASCII\"]]\n"
    "The ASCII form is shown when every value byte is printable.\n"
    "\n"
    "HEX may contain spaces, tabs, colons or newlines between bytes and may be\n"
    "split over several arguments, as traces are pasted.\n"
    "\n"
    "options:\n"
    "  --json      print a JSON array with one object per data object, in order\n"
    "              (depth, offset, path, tag, constructed, length, value, ascii)\n"
    "  -h, --help  print this help\n";

static bool all_printable(const uint8_t *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7E)
            return false;
    return true;
}

static void tag_text(const struct tc_tlv *t, char *out, size_t out_size)
{
    (void)snprintf(out, out_size, "%0*lX", 2 * (t->tag_len <= 4 ? t->tag_len : 4),
                   (unsigned long)t->tag);
}

struct walk {
    bool json;
    struct tc_json j;
    const uint8_t *input;
    char path[(2 * TC_TLV_MAX_TAG_BYTES + 1) * TC_TLV_MAX_DEPTH + 1];
};

static void print_node(struct walk *w, const struct tc_tlv *t, unsigned depth, size_t offset)
{
    char tag[12];
    tag_text(t, tag, sizeof tag);
    bool ascii = !t->constructed && all_printable(t->value, t->len);
    if (w->json) {
        tc_json_begin_object(&w->j);
        tc_json_key(&w->j, "depth");
        tc_json_uint(&w->j, depth);
        tc_json_key(&w->j, "offset");
        tc_json_uint(&w->j, offset);
        tc_json_key(&w->j, "path");
        tc_json_string(&w->j, w->path);
        tc_json_key(&w->j, "tag");
        tc_json_string(&w->j, tag);
        tc_json_key(&w->j, "constructed");
        tc_json_bool(&w->j, t->constructed);
        tc_json_key(&w->j, "length");
        tc_json_uint(&w->j, t->len);
        if (!t->constructed) {
            tc_json_key(&w->j, "value");
            tc_json_hex(&w->j, t->value, t->len);
            if (ascii) {
                char *s = malloc(t->len + 1);
                if (s != NULL) {
                    memcpy(s, t->value, t->len);
                    s[t->len] = '\0';
                    tc_json_key(&w->j, "ascii");
                    tc_json_string(&w->j, s);
                    free(s);
                }
            }
        }
        tc_json_end_object(&w->j);
        return;
    }
    (void)printf("%*s%s %s, %zu byte%s", (int)(2 * depth), "", tag,
                 t->constructed ? "constructed" : "primitive", t->len, t->len == 1 ? "" : "s");
    if (!t->constructed && t->len > 0) {
        (void)fputs(": ", stdout);
        for (size_t i = 0; i < t->len; i++)
            (void)printf("%02X", t->value[i]);
        if (ascii)
            (void)printf(" \"%.*s\"", (int)t->len, (const char *)t->value);
    }
    (void)putchar('\n');
}

/* The input was validated as a whole, so every read here succeeds and the
 * depth is bounded by TC_TLV_MAX_DEPTH. */
static tc_err walk_level(struct walk *w, const uint8_t *p, size_t len, unsigned depth)
{
    struct tc_cursor c;
    tc_cursor_init(&c, p, len);
    size_t plen = strlen(w->path);
    while (tc_cursor_remaining(&c) > 0) {
        struct tc_tlv t;
        size_t offset = (size_t)(p - w->input) + c.pos;
        TC_GUARD(tc_tlv_next(&c, &t));
        char tag[12];
        tag_text(&t, tag, sizeof tag);
        (void)snprintf(w->path + plen, sizeof w->path - plen, "%s%s", plen ? "/" : "", tag);
        print_node(w, &t, depth, offset);
        if (t.constructed)
            TC_GUARD(walk_level(w, t.value, t.len, depth + 1));
        w->path[plen] = '\0';
    }
    return TC_OK;
}

static int tlv_decode(int argc, char **argv)
{
    bool json = false, opts = true;
    bool *hex = calloc((size_t)argc, sizeof *hex);
    if (hex == NULL)
        return tc_cli_usage_error("tlv decode: out of memory");
    for (int i = 1; i < argc; i++) {
        if (opts && (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)) {
            free(hex);
            (void)fputs(tlv_decode_usage, stdout);
            return TC_EXIT_OK;
        }
        if (opts && strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (opts && strcmp(argv[i], "--") == 0) {
            opts = false;
        } else if (opts && argv[i][0] == '-') {
            free(hex);
            return tc_cli_usage_error("tlv decode: unknown option '%s' (see --help)", argv[i]);
        } else {
            hex[i] = true;
        }
    }
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = tc_cli_read_hex_args("tlv decode", argc, argv, hex, TLV_CLI_MAX_BYTES, &bytes, &len);
    free(hex);
    if (rc != TC_EXIT_OK)
        return rc;
    tc_err e = tc_tlv_validate(bytes, len);
    if (e != TC_OK) {
        free(bytes);
        return tc_cli_error(e, "tlv decode");
    }
    struct walk w = {.json = json, .input = bytes};
    if (json) {
        tc_json_init(&w.j, stdout);
        tc_json_begin_array(&w.j);
    }
    e = walk_level(&w, bytes, len, 0);
    if (json) {
        tc_json_end_array(&w.j);
        tc_json_finish(&w.j);
    }
    free(bytes);
    return e == TC_OK ? TC_EXIT_OK : tc_cli_error(e, "tlv decode");
}

static const struct tc_cli_cmd tlv_cmds[] = {
    {"decode", "decode BER-TLV data objects from hex into a tree", tlv_decode},
};

int tc_cli_tlv(int argc, char **argv)
{
    return tc_cli_group("tlv", NULL, tlv_cmds, TC_ARRAY_LEN(tlv_cmds), argc, argv);
}
