/*
 * Shared pieces of the `trustchain` program: the subcommand table type, the
 * one-line error convention (stderr, exit status 2 for bad input, 1 for an
 * operation that failed), and a small streaming JSON writer for --json.
 */
#ifndef TC_CLI_H
#define TC_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <trustchain/core.h>

enum { TC_EXIT_OK = 0, TC_EXIT_FAIL = 1, TC_EXIT_USAGE = 2 };

struct tc_cli_cmd {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command's name */
};

/* Looks up argv[0] in the table and runs it; handles --help/-h and listing. */
int tc_cli_dispatch(const char *prefix, const struct tc_cli_cmd *table, size_t n, int argc,
                    char **argv);
void tc_cli_list(FILE *f, const char *prefix, const struct tc_cli_cmd *table, size_t n);

/* A command group's entry: argv[0] is the group's name. No command is a
 * one-line usage error; help (as the command, or anywhere when `usage` is
 * given) prints `usage` (or the table); otherwise dispatches. */
int tc_cli_group(const char *group, const char *usage, const struct tc_cli_cmd *table, size_t n,
                 int argc, char **argv);

/* The workspace when --workspace is not given: $TRUSTCHAIN_WORKSPACE if set
 * and non-empty, else ./trustchain-work. */
const char *tc_cli_default_workspace(void);

/* Join the HEX arguments (argv entries flagged in `hex`) and decode them with
 * separators allowed (TC_HEX_ALLOW_SEP); at most `max` bytes. *out is heap
 * memory the caller frees. Returns an exit status, having printed the error. */
int tc_cli_read_hex_args(const char *what, int argc, char **argv, const bool *hex, size_t max,
                         uint8_t **out, size_t *out_len);

/* A command's options as a table: each --name either takes a value (a
 * `const char *` member of the command's options struct, at `off`), is a
 * flag (a `bool` member set true), is refused with `why` (PINs on the
 * command line) or is a repeatable value kept in a bounded list. */
enum tc_cli_opt_kind { TC_CLI_OPT_VALUE, TC_CLI_OPT_FLAG, TC_CLI_OPT_REFUSED, TC_CLI_OPT_LIST };
struct tc_cli_opt {
    const char *name;
    enum tc_cli_opt_kind kind;
    size_t off;
    /* TC_CLI_OPT_REFUSED: printed after "<group> <cmd>: ". TC_CLI_OPT_LIST:
     * what the list holds, plural ("readers"), for the bound's message. */
    const char *why;
    /* TC_CLI_OPT_LIST (a repeatable value): `off` is a `const char *[max]`
     * member, `count_off` its `size_t` count. */
    size_t count_off;
    size_t max;
};
#define TC_CLI_OPT_VALUE_AT(name, type, member)                                                    \
    {                                                                                              \
        (name), TC_CLI_OPT_VALUE, offsetof(type, member), NULL, 0, 0                               \
    }
#define TC_CLI_OPT_FLAG_AT(name, type, member)                                                     \
    {                                                                                              \
        (name), TC_CLI_OPT_FLAG, offsetof(type, member), NULL, 0, 0                                \
    }
#define TC_CLI_OPT_REFUSE(name, why)                                                               \
    {                                                                                              \
        (name), TC_CLI_OPT_REFUSED, 0, (why), 0, 0                                                 \
    }
/* Each --name appends its value to the array `member` (bounded by its
 * length), counted in `count`. One time too many:
 * "<group> <cmd>: at most N <what>" ("at most N values of --name" when
 * `what` is NULL). */
#define TC_CLI_OPT_LIST_AT(name, type, member, count, what)                                        \
    {                                                                                              \
        (name), TC_CLI_OPT_LIST, offsetof(type, member), (what), offsetof(type, count),            \
            TC_ARRAY_LEN(((type *)NULL)->member)                                                   \
    }
/* Positional arguments: at most `max` go to pos[0..max), counted in `n`. */
struct tc_cli_args {
    const char **pos;
    size_t max;
    size_t n;
};
/* Parse argv[1..argc) (argv[0] is the command) into `opts` by the table.
 * Anything else that starts with '-' (except "-" alone) is an unknown
 * option; other words are positional arguments when `args` takes them.
 * Returns TC_EXIT_OK, or TC_EXIT_USAGE after one line on stderr
 * (cmd NULL for a group without commands: "<group>: ..."):
 * "<group> <cmd>: unknown option 'X' (see 'trustchain <group> --help')",
 * "... --x needs a value", "... too many arguments", "... <why>" or, for
 * a list already full, "... at most N <what>". */
int tc_cli_parse_opts(const char *group, const char *cmd, const struct tc_cli_opt *table, size_t n,
                      int argc, char **argv, void *opts, struct tc_cli_args *args);

/* The same, with two settings a command may need (NULL/false: as above):
 * `help` names the command in the unknown-option hint ("line run": "(see
 * 'trustchain line run --help')"; NULL: the group), and `empty_values`
 * takes "" as a value (the command checks it) instead of "--x needs a
 * value". tc_cli_parse_opts is this with both unset. */
struct tc_cli_parser {
    const char *group, *cmd, *help;
    const struct tc_cli_opt *table;
    size_t n;
    bool empty_values;
};
int tc_cli_parse_opts_with(const struct tc_cli_parser *p, int argc, char **argv, void *opts,
                           struct tc_cli_args *args);

/* Appends the whole file at path to b (its cap bounds the size).
 * TC_ERR_NOT_FOUND when it cannot be opened, TC_ERR_IO on a read error,
 * the buffer's sticky error when it does not fit. */
TC_MUST_CHECK tc_err tc_cli_read_file(const char *path, struct tc_buf *b);
/* "trustchain: <message>" on stderr; returns TC_EXIT_USAGE. */
int tc_cli_usage_error(const char *fmt, ...) TC_PRINTF(1, 2);
/* "trustchain: <what>: <recorded cause>" on stderr; returns TC_EXIT_USAGE
 * for input errors (format, truncated, range, arg) else TC_EXIT_FAIL. */
int tc_cli_error(tc_err rc, const char *what);
/* True if argv has -h/--help at any position. */
bool tc_cli_wants_help(int argc, char **argv);

/* Streaming JSON. Commas and nesting are tracked; strings are escaped. */
struct tc_json {
    FILE *f;
    int depth;
    bool need_comma[32];
    bool after_key;
};
void tc_json_init(struct tc_json *j, FILE *f);
void tc_json_begin_object(struct tc_json *j);
void tc_json_end_object(struct tc_json *j);
void tc_json_begin_array(struct tc_json *j);
void tc_json_end_array(struct tc_json *j);
void tc_json_key(struct tc_json *j, const char *key);
void tc_json_string(struct tc_json *j, const char *s);
void tc_json_uint(struct tc_json *j, uint64_t v);
void tc_json_bool(struct tc_json *j, bool v);
void tc_json_null(struct tc_json *j);
void tc_json_hex(struct tc_json *j, const uint8_t *p, size_t n);
/* Finish with a newline. */
void tc_json_finish(struct tc_json *j);

/* Command groups, one file each. */
int tc_cli_apdu(int argc, char **argv);
int tc_cli_tlv(int argc, char **argv);
int tc_cli_gp(int argc, char **argv);
int tc_cli_se(int argc, char **argv);
/* `se serve` (src/cli/se_serve.c), run from the se group's table. */
int tc_cli_se_serve(int argc, char **argv);
int tc_cli_hsm(int argc, char **argv);
int tc_cli_pki(int argc, char **argv);
int tc_cli_audit(int argc, char **argv);
int tc_cli_device(int argc, char **argv);
int tc_cli_init(int argc, char **argv);
int tc_cli_line(int argc, char **argv);
int tc_cli_demo(int argc, char **argv);
int tc_cli_ota(int argc, char **argv);
/* `ota agent` (src/cli/ota_agent.c), run from the ota group's table. */
int tc_cli_ota_agent(int argc, char **argv);
/* The workspace registry and checkpoint key, shared by audit.c (which
 * implements them) and device.c. */
struct tc_cli_audit_ws;
struct tc_registry;
struct tc_cli_audit_ws *tc_cli_audit_ws_open(const char *cmd, const char *workspace,
                                             const char *pin_file, const char *vkey, bool reader,
                                             int *exit_code);
struct tc_registry *tc_cli_audit_ws_registry(struct tc_cli_audit_ws *w);
/* The latest checkpoint covering need_size events, signed now if needed
 * (and sign), its signature verified; root is 32 bytes. */
TC_MUST_CHECK tc_err tc_cli_audit_ws_checkpoint(struct tc_cli_audit_ws *w, uint64_t need_size,
                                                bool sign, uint8_t *note, size_t note_size,
                                                size_t *note_len, uint64_t *size, uint8_t *root);
void tc_cli_audit_ws_close(struct tc_cli_audit_ws *w);

#endif
