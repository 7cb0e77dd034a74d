/*
 * trustchain line run: the manufacturing line over a batch of cards
 * (docs/station.md): emulated card images or PC/SC readers, several cards
 * at once, a progress bar with rate and ETA on a terminal, a summary, and
 * the batch CRL republished when the run revoked certificates.
 *
 * Must never: print a PIN or key, or stop the batch for one bad card (only
 * a registry that cannot record stops it).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <trustchain/hsm.h>
#include <trustchain/pki.h>
#include <trustchain/registry.h>
#include <trustchain/station.h>
#include <trustchain/transport.h>

#include <winscard.h>

#include "cli.h"

#define LINE_PATH_MAX   4096
#define LINE_READERS    16
#define LINE_MAX_REJECT 1000u /* rejections listed individually */
#define LINE_CRL_DAYS   30
#define LINE_MAX_CARDS  10000000u
#define LINE_CARD_WAIT  300u   /* seconds a reader waits for the next card */
#define LINE_WAIT_MAX   86400u /* --card-wait cap */

static const char usage[] =
    "usage: trustchain line run --batch ID --count N [options]\n"
    "\n"
    "Provision N cards of batch ID: identify each card, open SCP03 with the\n"
    "batch's transport keyset, inject the device keyset derived in the HSM,\n"
    "prove it (injection confirmation gate), generate the identity key on the\n"
    "card, issue and store its certificate, read it back, and lock the card\n"
    "(SECURED). Every step is an audit event; a card failing a gate is rejected\n"
    "with the step and reason and the batch goes on. Running it again resumes:\n"
    "provisioned and rejected cards are skipped, interrupted ones are finished.\n"
    "\n"
    "cards (one of):\n"
    "  --emulate DIR        emulated cards DIR/card-000000.img ... (the default,\n"
    "                       with DIR = <workspace>/cards)\n"
    "  --vendor-keys FILE   with --emulate: create missing images as the SE vendor\n"
    "                       ships them, with the transport keys in FILE\n"
    "  --reader NAME        a PC/SC reader (repeat for several; one card each at\n"
    "                       a time). After a card, the reader waits for it to be\n"
    "                       taken out and the next one put in\n"
    "  --card-wait SECONDS  with --reader: how long a reader waits for the next\n"
    "                       card before it stops taking cards (default 300)\n"
    "\n"
    "options:\n"
    "  --jobs J             cards in flight at once (default 32; 1 per reader)\n"
    "  --workspace DIR      the workspace (default $TRUSTCHAIN_WORKSPACE or ./trustchain-work)\n"
    "  --pin-file FILE      token user PIN (default $" TC_HSM_ENV_PIN ", else the workspace's\n"
    "                       secrets/user.pin)\n"
    "  --station ID         station identifier (default: trustchain.conf)\n"
    "  --json               summary as JSON\n"
    "  --quiet              no progress bar\n";

struct line_opts {
    const char *workspace, *batch, *emulate, *vendor_keys, *pin_file, *station;
    const char *count_arg, *jobs_arg, *wait_arg;
    const char *readers[LINE_READERS];
    size_t nreaders;
    uint64_t count;
    uint64_t jobs;
    uint64_t card_wait; /* seconds */
    bool json, quiet;
};

struct line_conf {
    char station[65];
    char actor[65];
    char master[65];
    uint8_t transport_kvn, device_kvn;
};

/* ------------------------------------------------------------ config */

static tc_err conf_read(const char *ws, struct line_conf *c)
{
    char path[LINE_PATH_MAX + 32];
    (void)snprintf(path, sizeof path, "%s/trustchain.conf", ws);
    (void)snprintf(c->station, sizeof c->station, "ST-01");
    (void)snprintf(c->actor, sizeof c->actor, "station:ST-01");
    (void)snprintf(c->master, sizeof c->master, "line");
    c->transport_kvn = TC_STATION_TRANSPORT_KVN;
    c->device_kvn = TC_STATION_DEVICE_KVN;
    FILE *f = fopen(path, "r");
    TC_ENSURE_MSG(f != NULL, TC_ERR_NOT_FOUND,
                  "%s: %s (run 'trustchain init --workspace %s' first)", path, strerror(errno), ws);
    char line[256];
    unsigned n = 0;
    tc_err rc = TC_OK;
    while (rc == TC_OK && fgets(line, sizeof line, f) != NULL) {
        n++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char key[32], val[60];
        if (sscanf(line, "%31s = %59s", key, val) != 2) {
            rc = TC_FAIL(TC_ERR_FORMAT, "%s line %u: expected 'key = value'", path, n);
            break;
        }
        uint64_t v = 0;
        if (strcmp(key, "station") == 0)
            (void)snprintf(c->station, sizeof c->station, "%s", val);
        else if (strcmp(key, "actor") == 0)
            (void)snprintf(c->actor, sizeof c->actor, "%s", val);
        else if (strcmp(key, "master") == 0)
            (void)snprintf(c->master, sizeof c->master, "%s", val);
        else if (strcmp(key, "transport_kvn") == 0 || strcmp(key, "device_kvn") == 0) {
            char hex[80];
            (void)snprintf(hex, sizeof hex, "0x%s", val);
            if (tc_parse_uint(hex, 0x7F, &v) != TC_OK || v == 0) {
                rc = TC_FAIL(TC_ERR_FORMAT, "%s line %u: a KVN is 01..7F in hex", path, n);
                break;
            }
            if (key[0] == 't')
                c->transport_kvn = (uint8_t)v;
            else
                c->device_kvn = (uint8_t)v;
        } else {
            rc = TC_FAIL(TC_ERR_FORMAT, "%s line %u: unknown key '%s'", path, n, key);
        }
    }
    (void)fclose(f);
    return rc;
}

/* ------------------------------------------------------------ options */

static int number(const char *opt, const char *v, uint64_t max, uint64_t *out)
{
    if (tc_parse_uint(v, max, out) != TC_OK || *out == 0)
        return tc_cli_usage_error("line run: %s must be a number from 1 to %llu", opt,
                                  (unsigned long long)max);
    return TC_EXIT_OK;
}

#define LINE_OPT(name, member) TC_CLI_OPT_VALUE_AT(name, struct line_opts, member)
static const struct tc_cli_opt line_options[] = {
    TC_CLI_OPT_FLAG_AT("--json", struct line_opts, json),
    TC_CLI_OPT_FLAG_AT("--quiet", struct line_opts, quiet),
    TC_CLI_OPT_REFUSE("--pin", "PINs are not accepted on the command line; use $" TC_HSM_ENV_PIN
                               " or --pin-file"),
    LINE_OPT("--workspace", workspace),
    LINE_OPT("--batch", batch),
    LINE_OPT("--count", count_arg),
    LINE_OPT("--jobs", jobs_arg),
    LINE_OPT("--card-wait", wait_arg),
    LINE_OPT("--emulate", emulate),
    LINE_OPT("--vendor-keys", vendor_keys),
    LINE_OPT("--pin-file", pin_file),
    LINE_OPT("--station", station),
    TC_CLI_OPT_LIST_AT("--reader", struct line_opts, readers, nreaders, "readers"),
};
#undef LINE_OPT

static int parse(int argc, char **argv, struct line_opts *o)
{
    memset(o, 0, sizeof *o);
    o->workspace = tc_cli_default_workspace();
    /* Empty values reach the checks below ("batch ID must be ..."). */
    const struct tc_cli_parser parser = {.group = "line",
                                         .cmd = "run",
                                         .help = "line run",
                                         .table = line_options,
                                         .n = TC_ARRAY_LEN(line_options),
                                         .empty_values = true};
    int prc = tc_cli_parse_opts_with(&parser, argc, argv, o, NULL);
    if (prc != TC_EXIT_OK)
        return prc;
    const char *count = o->count_arg, *jobs = o->jobs_arg, *wait = o->wait_arg;
    if (o->batch == NULL)
        return tc_cli_usage_error("line run: --batch is required");
    if (count == NULL)
        return tc_cli_usage_error("line run: --count is required");
    int rc = number("--count", count, LINE_MAX_CARDS, &o->count);
    if (rc == TC_EXIT_OK && jobs != NULL)
        rc = number("--jobs", jobs, TC_STATION_MAX_JOBS, &o->jobs);
    o->card_wait = LINE_CARD_WAIT;
    if (rc == TC_EXIT_OK && wait != NULL)
        rc = number("--card-wait", wait, LINE_WAIT_MAX, &o->card_wait);
    if (rc != TC_EXIT_OK)
        return rc;
    if (wait != NULL && o->nreaders == 0)
        return tc_cli_usage_error("line run: --card-wait is for --reader");
    if (o->emulate != NULL && o->nreaders > 0)
        return tc_cli_usage_error("line run: --emulate and --reader exclude each other");
    if (o->vendor_keys != NULL && o->nreaders > 0)
        return tc_cli_usage_error("line run: --vendor-keys is for emulated cards");
    for (const char *p = o->batch; *p != '\0'; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              *p == '.' || *p == '_' || *p == '-'))
            return tc_cli_usage_error("line run: batch ID must be letters, digits, '.', '_' or "
                                      "'-'");
    if (o->batch[0] == '\0' || o->batch[0] == '.' || strlen(o->batch) > 64)
        return tc_cli_usage_error("line run: batch ID must be 1-64 characters, not starting "
                                  "with '.'");
    if (o->jobs == 0)
        o->jobs = o->nreaders > 0 ? o->nreaders : 32;
    if (o->nreaders > 0 && o->jobs > o->nreaders)
        o->jobs = o->nreaders;
    return TC_EXIT_OK;
}

/* ------------------------------------------------------------ PC/SC readers */

struct readers {
    pthread_mutex_t lock;
    const char *names[LINE_READERS];
    bool busy[LINE_READERS];
    /* A card was taken from this reader: the next one must be another card
     * (the reader saw it removed, or a later insertion). */
    bool swap[LINE_READERS];
    /* No card came within the wait: the reader takes no more. */
    bool idle[LINE_READERS];
    unsigned wait_s;
    size_t n;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The reader's exact PC/SC name for the --reader argument (exact, or the
 * one reader whose name contains it, as tc_transport_pcsc_open matches). */
static tc_err reader_name(const char *want, char out[static 128])
{
    struct tc_pcsc_reader list[LINE_READERS * 2];
    size_t n = 0, hits = 0, pick = 0;
    TC_GUARD(tc_transport_pcsc_list(list, TC_ARRAY_LEN(list), &n));
    n = n < TC_ARRAY_LEN(list) ? n : TC_ARRAY_LEN(list);
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].name, want) == 0) {
            hits = 1;
            pick = i;
            break;
        } else if (strstr(list[i].name, want) != NULL && hits++ == 0) {
            pick = i;
        }
    TC_ENSURE_MSG(hits == 1, TC_ERR_NOT_FOUND, "%s reader matches '%s'",
                  hits == 0 ? "no" : "more than one", want);
    _Static_assert(sizeof list[0].name == 128, "reader name size");
    memcpy(out, list[pick].name, sizeof list[pick].name);
    out[127] = '\0';
    return TC_OK;
}

/*
 * PC/SC part 5 SCardGetStatusChange on the reader until a card is there to
 * work on: any card for the reader's first, else another card than the one
 * done (the reader reported it gone, or pcsc-lite's event counter, the
 * upper 16 bits of dwEventState, moved on: removed and inserted between two
 * looks). TC_ERR_IO "no card" after the wait.
 */
static tc_err reader_wait(const char *want, bool swap, unsigned wait_s, bool *timed_out)
{
    tc_err ret = TC_ERR_INTERNAL;
    char name[128];
    SCARDCONTEXT ctx = 0;
    bool have_ctx = false;
    *timed_out = false;
    TC_TRY(reader_name(want, name));
    LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
    TC_CHECK_MSG(rv == SCARD_S_SUCCESS, TC_ERR_IO, "PC/SC: %s", pcsc_stringify_error(rv));
    have_ctx = true;
    SCARD_READERSTATE st;
    memset(&st, 0, sizeof st);
    st.szReader = name;
    st.dwCurrentState = SCARD_STATE_UNAWARE;
    uint64_t deadline = mono_ms() + (uint64_t)wait_s * 1000u;
    bool first = true, gone = !swap;
    DWORD counter0 = 0;
    for (;;) {
        uint64_t now = mono_ms();
        DWORD left = now >= deadline ? 0 : (DWORD)(deadline - now);
        /* A first look returns at once; later ones block until a change. */
        rv = SCardGetStatusChange(ctx, first ? 0 : left, &st, 1);
        if (rv == SCARD_E_TIMEOUT || (rv == SCARD_S_SUCCESS && !first && now >= deadline)) {
            *timed_out = true;
            ret = TC_FAIL(TC_ERR_IO, "no %scard in %s within %u s", swap ? "next " : "", name,
                          wait_s);
            goto out;
        }
        TC_CHECK_MSG(rv == SCARD_S_SUCCESS, TC_ERR_IO, "PC/SC %s: %s", name,
                     pcsc_stringify_error(rv));
        DWORD ev = st.dwEventState;
        DWORD counter = ev >> 16;
        if (first)
            counter0 = counter;
        first = false;
        st.dwCurrentState = ev & ~(DWORD)SCARD_STATE_CHANGED;
        TC_CHECK_MSG((ev & (SCARD_STATE_UNKNOWN | SCARD_STATE_IGNORE)) == 0, TC_ERR_IO,
                     "PC/SC reader %s is gone", name);
        if ((ev & SCARD_STATE_PRESENT) == 0)
            gone = true;
        else if ((gone || counter != counter0) && (ev & SCARD_STATE_MUTE) == 0)
            break;
    }
    ret = TC_OK;
out:
    if (have_ctx)
        (void)SCardReleaseContext(ctx);
    return ret;
}

struct reader_link {
    struct readers *rs;
    size_t slot;
    struct tc_transport inner;
};

static tc_err rl_transmit(void *ctx, const uint8_t *cmd, size_t len, uint8_t *resp, size_t size,
                          size_t *rlen)
{
    struct reader_link *l = ctx;
    return l->inner.transmit(l->inner.ctx, cmd, len, resp, size, rlen);
}

static void rl_close(void *ctx)
{
    struct reader_link *l = ctx;
    tc_transport_close(&l->inner);
    (void)pthread_mutex_lock(&l->rs->lock);
    l->rs->busy[l->slot] = false;
    (void)pthread_mutex_unlock(&l->rs->lock);
    free(l);
}

/* The card in a free reader (there are as many jobs as readers). */
static tc_err readers_open(void *arg, size_t index, struct tc_transport *t)
{
    (void)index;
    struct readers *rs = arg;
    size_t slot = rs->n;
    (void)pthread_mutex_lock(&rs->lock);
    for (size_t i = 0; i < rs->n && slot == rs->n; i++)
        if (!rs->busy[i])
            slot = i;
    if (slot < rs->n)
        rs->busy[slot] = true;
    (void)pthread_mutex_unlock(&rs->lock);
    TC_ENSURE_MSG(slot < rs->n, TC_ERR_STATE, "no free reader");
    tc_err rc = TC_OK;
    bool timed_out = false;
    if (rs->idle[slot])
        rc = TC_FAIL(TC_ERR_IO, "reader %s had no card within %u s: it takes no more",
                     rs->names[slot], rs->wait_s);
    else
        rc = reader_wait(rs->names[slot], rs->swap[slot], rs->wait_s, &timed_out);
    /* Whatever happens to this card, the next one must be another. The
     * slot is this thread's until it is given back. */
    rs->swap[slot] = true;
    if (timed_out)
        rs->idle[slot] = true;
    struct reader_link *l = NULL;
    if (rc == TC_OK) {
        l = calloc(1, sizeof *l);
        rc = l != NULL ? tc_transport_pcsc_open(&l->inner, rs->names[slot])
                       : TC_FAIL(TC_ERR_NOMEM, "out of memory");
    }
    if (rc != TC_OK) {
        free(l);
        (void)pthread_mutex_lock(&rs->lock);
        rs->busy[slot] = false;
        (void)pthread_mutex_unlock(&rs->lock);
        return rc;
    }
    l->rs = rs;
    l->slot = slot;
    *t = (struct tc_transport){
        .ctx = l, .name = l->inner.name, .transmit = rl_transmit, .reset = NULL, .close = rl_close};
    return TC_OK;
}

/* ------------------------------------------------------------ revocations and CRL */

struct line_ctx {
    char rev_path[LINE_PATH_MAX + 64];
    pthread_mutex_t lock;
    unsigned revoked;
    bool rev_failed;
    /* progress */
    bool tty;
    struct timespec last;
    struct tc_station_result *rejects;
    size_t nrejects;
    struct kill_at *kill;
};

/* pki's revoked.txt: "<serial hex> <unix time> <reason> <EID>" per line,
 * fsynced (docs/pki.md). */
static void on_revoked(void *arg, const char *eid, const uint8_t *serial, size_t len, int reason)
{
    struct line_ctx *c = arg;
    char hex[2 * 20 + 1];
    if (tc_hex_encode(serial, len, hex, sizeof hex) != TC_OK)
        return;
    char line[160];
    int n = snprintf(line, sizeof line, "%s %lld %d %s\n", hex, (long long)time(NULL), reason, eid);
    (void)pthread_mutex_lock(&c->lock);
    int fd = open(c->rev_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && n > 0 && write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    if (fd >= 0)
        ok = close(fd) == 0 && ok;
    c->revoked++;
    c->rev_failed = c->rev_failed || !ok;
    (void)pthread_mutex_unlock(&c->lock);
}

/* The log is the record of revocations; revoked.txt (and so the CRL) is
 * written after it. Any revocation of this batch's devices the file lacks
 * (a run killed between the two) is added here, before the run. */
struct reconcile {
    struct line_ctx *c;
    struct tc_registry *reg;
    char *known; /* revoked.txt contents */
    unsigned added;
    uint8_t (*eids)[TC_AUDIT_EID_MAX];
    size_t *eid_lens;
    size_t n, cap;
};

static tc_err reconcile_event(void *arg, uint64_t index, const struct tc_audit_event *ev,
                              const uint8_t *event, size_t len)
{
    (void)index;
    (void)event;
    (void)len;
    struct reconcile *r = arg;
    if (ev->type != TC_AUDIT_CERT_REVOKED)
        return TC_OK;
    char hex[2 * TC_AUDIT_SERIAL_MAX + 2];
    TC_GUARD(tc_hex_encode(ev->cert_serial, ev->cert_serial_len, hex, sizeof hex - 1));
    size_t hl = strlen(hex);
    for (const char *p = r->known; p != NULL && *p != '\0';) {
        if (strncmp(p, hex, hl) == 0 && p[hl] == ' ')
            return TC_OK;
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    char eid[TC_PKI_EID_DIGITS + 1] = "-";
    if (ev->eid_len == TC_PKI_EID_BCD_LEN && tc_pki_eid_from_bcd(ev->eid, eid) != TC_OK)
        (void)snprintf(eid, sizeof eid, "-");
    char line[160];
    int n = snprintf(line, sizeof line, "%s %llu %u %s\n", hex,
                     (unsigned long long)(ev->time_ms / 1000), (unsigned)ev->reason, eid);
    int fd = open(r->c->rev_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && n > 0 && write(fd, line, (size_t)n) == n && fsync(fd) == 0;
    if (fd >= 0)
        ok = close(fd) == 0 && ok;
    TC_ENSURE_MSG(ok, TC_ERR_IO, "cannot write %s", r->c->rev_path);
    r->added++;
    return TC_OK;
}

static tc_err reconcile_device(void *arg, const struct tc_registry_device *d)
{
    /* Collected first: the registry serialises its queries, so no query
     * runs inside another's callback. */
    struct reconcile *r = arg;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        void *a = realloc(r->eids, cap * sizeof *r->eids);
        TC_ENSURE(a != NULL, TC_ERR_NOMEM);
        r->eids = a;
        void *b = realloc(r->eid_lens, cap * sizeof *r->eid_lens);
        TC_ENSURE(b != NULL, TC_ERR_NOMEM);
        r->eid_lens = b;
        r->cap = cap;
    }
    memcpy(r->eids[r->n], d->eid, d->eid_len);
    r->eid_lens[r->n++] = d->eid_len;
    return TC_OK;
}

static tc_err reconcile_revoked(struct line_ctx *c, struct tc_registry *reg, const char *batch,
                                unsigned *added)
{
    struct tc_buf known;
    tc_buf_init_heap(&known, 64u * 1024u * 1024u);
    tc_err rc = tc_cli_read_file(c->rev_path, &known);
    if (rc == TC_ERR_NOT_FOUND) {
        tc_error_clear();
        rc = TC_OK;
    }
    tc_buf_put_u8(&known, 0);
    if (rc == TC_OK)
        rc = tc_buf_status(&known);
    struct reconcile r = {.c = c, .reg = reg, .known = (char *)known.data};
    if (rc == TC_OK)
        rc = tc_registry_device_list(reg, batch, (enum tc_registry_state)0, reconcile_device, &r);
    for (size_t i = 0; rc == TC_OK && i < r.n; i++)
        rc = tc_registry_device_history(reg, r.eids[i], r.eid_lens[i], reconcile_event, &r);
    free(r.eids);
    free(r.eid_lens);
    *added = r.added;
    tc_buf_free(&known);
    return rc;
}

static tc_err write_replace(const char *path, const void *p, size_t n)
{
    char tmp[LINE_PATH_MAX + 80];
    (void)snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    TC_ENSURE_MSG(f != NULL, TC_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    bool ok = fwrite(p, 1, n, f) == n;
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    TC_ENSURE_MSG(ok && rename(tmp, path) == 0, TC_ERR_IO, "cannot write %s", path);
    return TC_OK;
}

/* RFC 5280 §5: the next batch CRL from revoked.txt (as `pki crl --batch`). */
static tc_err publish_crl(const char *bdir, const struct tc_signer *signer, const uint8_t *ca,
                          size_t ca_len, uint64_t *number)
{
    tc_err ret = TC_ERR_INTERNAL;
    char num_path[LINE_PATH_MAX + 32], rev_path[LINE_PATH_MAX + 32], crl_path[LINE_PATH_MAX + 32];
    (void)snprintf(num_path, sizeof num_path, "%s/crl.number", bdir);
    (void)snprintf(rev_path, sizeof rev_path, "%s/revoked.txt", bdir);
    (void)snprintf(crl_path, sizeof crl_path, "%s/crl.pem", bdir);
    struct tc_pki_issuer *iss = NULL;
    struct tc_pki_revoked *list = NULL;
    size_t n = 0, cap = 0;
    struct tc_buf der, pem;
    tc_buf_init_heap(&der, TC_PKI_CRL_MAX);
    tc_buf_init_heap(&pem, 2 * TC_PKI_CRL_MAX);
    uint64_t last = 0;
    FILE *f = fopen(num_path, "r");
    if (f != NULL) {
        char s[32] = "";
        bool ok = fgets(s, sizeof s, f) != NULL;
        (void)fclose(f);
        s[strcspn(s, "\n")] = '\0';
        TC_CHECK_MSG(ok && tc_parse_uint(s, UINT64_MAX / 2, &last) == TC_OK, TC_ERR_FORMAT,
                     "%s does not hold a CRL number", num_path);
    }
    f = fopen(rev_path, "r");
    char line[512];
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        char hex[48];
        long long t;
        int reason;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            struct tc_pki_revoked *p = realloc(list, cap * sizeof *list);
            if (p == NULL) {
                (void)fclose(f);
                TC_CHECK(false, TC_ERR_NOMEM);
            }
            list = p;
        }
        struct tc_pki_revoked *r = &list[n];
        if (sscanf(line, "%41s %lld %d", hex, &t, &reason) != 3 ||
            tc_hex_decode(hex, strlen(hex), 0, r->serial, sizeof r->serial, &r->serial_len) !=
                TC_OK) {
            (void)fclose(f);
            TC_CHECK_MSG(false, TC_ERR_FORMAT, "%s: malformed line", rev_path);
        }
        r->revoked_at = t;
        r->reason = reason;
        n++;
    }
    if (f != NULL)
        (void)fclose(f);
    TC_TRY(tc_pki_issuer_new(signer, ca, ca_len, &iss));
    int64_t now = (int64_t)time(NULL);
    TC_TRY(tc_pki_crl_create(iss, last + 1, now, now + LINE_CRL_DAYS * 86400, list, n, &der));
    TC_TRY(tc_pki_pem_encode("X509 CRL", der.data, der.len, &pem));
    TC_TRY(write_replace(crl_path, pem.data, pem.len));
    char s[32];
    int w = snprintf(s, sizeof s, "%llu\n", (unsigned long long)(last + 1));
    TC_TRY(write_replace(num_path, s, (size_t)w));
    *number = last + 1;
    ret = TC_OK;
out:
    tc_pki_issuer_free(iss);
    free(list);
    tc_buf_free(&der);
    tc_buf_free(&pem);
    return ret;
}

/* ------------------------------------------------------------ progress */

static void fmt_dur(double s, char *out, size_t size)
{
    if (s < 0 || s > 359999)
        s = 0;
    unsigned t = (unsigned)s;
    (void)snprintf(out, size, "%u:%02u:%02u", t / 3600, t / 60 % 60, t % 60);
}

static void progress(void *arg, const struct tc_station_stats *s, const struct tc_station_result *r,
                     size_t index)
{
    (void)index;
    struct line_ctx *c = arg;
    if (r->outcome == TC_STATION_REJECTED && c->nrejects < LINE_MAX_REJECT && c->rejects != NULL)
        c->rejects[c->nrejects++] = *r;
    if (!c->tty)
        return;
    struct timespec now;
    (void)clock_gettime(CLOCK_MONOTONIC, &now);
    double since =
        (double)(now.tv_sec - c->last.tv_sec) + (double)(now.tv_nsec - c->last.tv_nsec) / 1e9;
    if (since < 0.1 && s->done != s->total)
        return;
    c->last = now;
    double rate = s->seconds > 0 ? (double)s->done / s->seconds : 0;
    char eta[16];
    fmt_dur(rate > 0 ? (double)(s->total - s->done) / rate : 0, eta, sizeof eta);
    const unsigned width = 30;
    unsigned fill = s->total ? (unsigned)(s->done * width / s->total) : width;
    char bar[64];
    for (unsigned i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    (void)fprintf(stderr, "\r[%s] %zu/%zu  provisioned %zu  rejected %zu  %.0f/s  ETA %s ", bar,
                  s->done, s->total, s->provisioned + s->already_done, s->rejected, rate, eta);
    if (s->done == s->total)
        (void)fputc('\n', stderr);
    (void)fflush(stderr);
}

/* ------------------------------------------------------------ fault injection */

/* Crash tests: TRUSTCHAIN_FAULT_KILL_AT=<point>[:<n>] kills the process
 * (SIGKILL) the n-th time (default 1st) any card reaches that station point
 * (docs/station.md lists them). Unset, nothing happens. */
struct kill_at {
    unsigned point;
    unsigned long n;
    unsigned long seen;
    pthread_mutex_t lock;
};

static void kill_hook(void *arg, enum tc_station_point p)
{
    struct line_ctx *c = arg;
    struct kill_at *k = c->kill;
    if (k == NULL || (unsigned)p != k->point)
        return;
    (void)pthread_mutex_lock(&k->lock);
    bool now = ++k->seen == k->n;
    (void)pthread_mutex_unlock(&k->lock);
    if (now)
        (void)raise(SIGKILL);
}

static int kill_parse(const char *v, struct kill_at *k)
{
    char name[32];
    unsigned long n = 1;
    if (sscanf(v, "%31[a-z-]:%lu", name, &n) < 1 || n == 0)
        return tc_cli_usage_error("line run: TRUSTCHAIN_FAULT_KILL_AT must be POINT[:N]");
    for (unsigned p = 1; p <= TC_STATION_PT_MAX_; p++) {
        if (strcmp(tc_station_point_name(p), name) == 0) {
            k->point = p;
            k->n = n;
            return TC_EXIT_OK;
        }
    }
    return tc_cli_usage_error("line run: TRUSTCHAIN_FAULT_KILL_AT: unknown point '%s'", name);
}

/* ------------------------------------------------------------ run */

static void summary(const struct line_opts *o, const struct tc_station_stats *s,
                    const struct line_ctx *c, uint64_t crl_no)
{
    double rate = s->seconds > 0 ? (double)(s->provisioned + s->rejected) / s->seconds : 0;
    if (o->json) {
        struct tc_json j;
        tc_json_init(&j, stdout);
        tc_json_begin_object(&j);
        tc_json_key(&j, "batch");
        tc_json_string(&j, o->batch);
        tc_json_key(&j, "cards");
        tc_json_uint(&j, s->total);
        tc_json_key(&j, "provisioned");
        tc_json_uint(&j, s->provisioned);
        tc_json_key(&j, "rejected");
        tc_json_uint(&j, s->rejected);
        tc_json_key(&j, "already_provisioned");
        tc_json_uint(&j, s->already_done);
        tc_json_key(&j, "already_rejected");
        tc_json_uint(&j, s->already_rejected);
        tc_json_key(&j, "no_card");
        tc_json_uint(&j, s->no_card);
        tc_json_key(&j, "certificates_revoked");
        tc_json_uint(&j, s->revoked);
        tc_json_key(&j, "rejected_by_reason");
        tc_json_begin_object(&j);
        for (unsigned r = 1; r <= TC_STATION_R_MAX_; r++) {
            if (s->by_reason[r] == 0)
                continue;
            tc_json_key(&j, tc_station_reason_name(r));
            tc_json_uint(&j, s->by_reason[r]);
        }
        tc_json_end_object(&j);
        tc_json_key(&j, "rejections");
        tc_json_begin_array(&j);
        for (size_t i = 0; i < c->nrejects; i++) {
            const struct tc_station_result *r = &c->rejects[i];
            tc_json_begin_object(&j);
            tc_json_key(&j, "eid");
            tc_json_string(&j, r->eid);
            tc_json_key(&j, "step");
            tc_json_string(&j, tc_station_step_name(r->step));
            tc_json_key(&j, "reason");
            tc_json_string(&j, tc_station_reason_name(r->reason));
            tc_json_key(&j, "detail");
            tc_json_string(&j, r->detail);
            tc_json_key(&j, "certificate_revoked");
            tc_json_bool(&j, r->cert_revoked);
            tc_json_end_object(&j);
        }
        tc_json_end_array(&j);
        tc_json_key(&j, "events");
        tc_json_uint(&j, s->events);
        tc_json_key(&j, "seconds_x1000");
        tc_json_uint(&j, (uint64_t)(s->seconds * 1000));
        tc_json_key(&j, "per_second");
        tc_json_uint(&j, (uint64_t)rate);
        if (crl_no != 0) {
            tc_json_key(&j, "crl_number");
            tc_json_uint(&j, crl_no);
        }
        tc_json_end_object(&j);
        tc_json_finish(&j);
        return;
    }
    for (size_t i = 0; i < c->nrejects; i++) {
        const struct tc_station_result *r = &c->rejects[i];
        (void)printf("rejected %s at step %u (%s), %s: %s%s\n", r->eid[0] ? r->eid : "(no EID)",
                     r->step, tc_station_step_name(r->step), tc_station_reason_name(r->reason),
                     r->detail, r->cert_revoked ? " [certificate revoked]" : "");
    }
    (void)printf("batch %s: %zu cards in %.1f s (%.0f cards/s), %llu audit events\n", o->batch,
                 s->total, s->seconds, rate, (unsigned long long)s->events);
    (void)printf("  provisioned          %zu\n", s->provisioned);
    (void)printf("  rejected             %zu\n", s->rejected);
    for (unsigned r = 1; r <= TC_STATION_R_MAX_; r++)
        if (s->by_reason[r] != 0)
            (void)printf("    %-18s %zu\n", tc_station_reason_name(r), s->by_reason[r]);
    if (s->already_done || s->already_rejected)
        (void)printf("  done earlier         %zu provisioned, %zu rejected\n", s->already_done,
                     s->already_rejected);
    if (s->no_card)
        (void)printf("  no card              %zu\n", s->no_card);
    if (s->revoked)
        (void)printf("  certificates revoked %zu (batch CRL number %llu)\n", s->revoked,
                     (unsigned long long)crl_no);
}

static int cmd_run(int argc, char **argv)
{
    struct line_opts o;
    int rc = parse(argc, argv, &o);
    if (rc != TC_EXIT_OK)
        return rc;
    struct line_conf lc;
    tc_err e = conf_read(o.workspace, &lc);
    if (e != TC_OK)
        return tc_cli_error(e, "line run");
    if (o.station != NULL)
        (void)snprintf(lc.station, sizeof lc.station, "%s", o.station);

    char bdir[LINE_PATH_MAX], ca_path[LINE_PATH_MAX + 16], pinf[LINE_PATH_MAX + 32];
    char cards_dir[LINE_PATH_MAX];
    int n = snprintf(bdir, sizeof bdir, "%s/pki/batches/%s", o.workspace, o.batch);
    if (n <= 0 || (size_t)n >= sizeof bdir - 64)
        return tc_cli_usage_error("line run: workspace path too long");
    (void)snprintf(ca_path, sizeof ca_path, "%s/ca.pem", bdir);
    (void)snprintf(pinf, sizeof pinf, "%s/secrets/user.pin", o.workspace);
    if (o.emulate != NULL)
        (void)snprintf(cards_dir, sizeof cards_dir, "%s", o.emulate);
    else
        (void)snprintf(cards_dir, sizeof cards_dir, "%s/cards", o.workspace);

    struct tc_hsm_workspace hw;
    struct tc_hsm *h = NULL;
    struct tc_signer signer = {0};
    bool have_signer = false;
    struct tc_registry *reg = NULL;
    struct tc_station *st = NULL;
    struct tc_station_cards cards = {0};
    bool emu = false;
    struct readers rs = {.n = 0};
    bool rs_lock = false;
    struct line_ctx ctx = {.tty = !o.quiet && isatty(STDERR_FILENO) == 1};
    bool ctx_lock = pthread_mutex_init(&ctx.lock, NULL) == 0;
    ctx.rejects = calloc(LINE_MAX_REJECT, sizeof *ctx.rejects);
    (void)snprintf(ctx.rev_path, sizeof ctx.rev_path, "%s/revoked.txt", bdir);
    struct tc_buf raw, ca;
    tc_buf_init_heap(&raw, 2 * TC_PKI_CERT_MAX);
    tc_buf_init_heap(&ca, TC_PKI_CERT_MAX);
    char hsm_error[TC_STATION_DETAIL_MAX] = "";
    rc = TC_EXIT_FAIL;

    e = tc_cli_read_file(ca_path, &raw);
    if (e == TC_ERR_NOT_FOUND)
        e = TC_FAIL(TC_ERR_NOT_FOUND,
                    "batch %s has no CA in this workspace (run 'trustchain pki "
                    "batch-ca --batch %s ...')",
                    o.batch, o.batch);
    if (e == TC_OK)
        e = tc_pki_der_from_pem(raw.data, raw.len, &ca);
    if (e == TC_OK)
        e = tc_registry_open_workspace(o.workspace, &reg);
    if (e != TC_OK) {
        rc = tc_cli_error(e, "line run");
        goto out;
    }
    /* The HSM: a failure here is not fatal. Each card is then rejected at
     * step 2 with this reason (the batch goes on, and the record says why). */
    {
        char pin[TC_HSM_PIN_MAX + 1];
        size_t pin_len = 0;
        struct stat sb;
        const char *pf = o.pin_file;
        if (pf == NULL && getenv(TC_HSM_ENV_PIN) == NULL && stat(pinf, &sb) == 0)
            pf = pinf;
        e = tc_hsm_workspace_load(o.workspace, &hw);
        if (e == TC_OK)
            e = tc_hsm_pin_read(TC_HSM_ENV_PIN, pf, pin, sizeof pin, &pin_len);
        struct tc_hsm_config hc = {.module_path = hw.module_path,
                                   .softhsm_conf = hw.softhsm_conf,
                                   .token_label = hw.token_label,
                                   .pin = pin,
                                   .pin_len = pin_len,
                                   .pool_size = (unsigned)(o.jobs + 1)};
        if (e == TC_OK)
            e = tc_hsm_open(&hc, &h);
        tc_memzero(pin, sizeof pin);
        char label[TC_HSM_LABEL_MAX + 1];
        (void)snprintf(label, sizeof label, "%s%s", TC_HSM_LABEL_BATCH_CA, o.batch);
        if (e == TC_OK) {
            e = tc_hsm_signer(h, label, &signer);
            have_signer = e == TC_OK;
        }
        if (e != TC_OK) {
            (void)snprintf(hsm_error, sizeof hsm_error, "%s", tc_error_last()->msg);
            (void)fprintf(stderr,
                          "trustchain: line run: HSM unavailable: %s; every card will be "
                          "rejected at step 2\n",
                          hsm_error);
            if (have_signer)
                tc_hsm_signer_free(&signer);
            have_signer = false;
            tc_hsm_close(h);
            h = NULL;
            tc_error_clear();
        }
    }
    struct tc_station_config cfg = {.batch_id = o.batch,
                                    .station_id = lc.station,
                                    .actor = lc.actor,
                                    .hsm = h,
                                    .hsm_error = hsm_error,
                                    .master_name = lc.master,
                                    .transport_kvn = lc.transport_kvn,
                                    .device_kvn = lc.device_kvn,
                                    .batch_signer = have_signer ? &signer : NULL,
                                    .batch_ca = ca.data,
                                    .batch_ca_len = ca.len,
                                    .registry = reg,
                                    .hooks = {.revoked = on_revoked, .arg = &ctx}};
    struct kill_at kill = {0};
    const char *kenv = getenv("TRUSTCHAIN_FAULT_KILL_AT");
    if (kenv != NULL && kenv[0] != '\0') {
        if ((rc = kill_parse(kenv, &kill)) != TC_EXIT_OK)
            goto out;
        rc = TC_EXIT_FAIL;
        (void)pthread_mutex_init(&kill.lock, NULL);
        ctx.kill = &kill;
        cfg.hooks.point = kill_hook;
    }
    unsigned reconciled = 0;
    e = reconcile_revoked(&ctx, reg, o.batch, &reconciled);
    if (e == TC_OK)
        e = tc_station_new(&cfg, &st);
    if (e == TC_OK && o.nreaders > 0) {
        rs_lock = pthread_mutex_init(&rs.lock, NULL) == 0;
        for (size_t i = 0; i < o.nreaders; i++)
            rs.names[i] = o.readers[i];
        rs.n = o.nreaders;
        rs.wait_s = (unsigned)o.card_wait;
        cards = (struct tc_station_cards){.open = readers_open, .arg = &rs, .count = o.count};
    } else if (e == TC_OK) {
        if (o.vendor_keys != NULL) {
            uint8_t k[3][TC_AES_MAX_KEY];
            size_t kl = 0;
            struct tc_pki_batch_info bi;
            e = tc_pki_check_batch(ca.data, ca.len, &bi);
            if (e == TC_OK)
                e = tc_hsm_transport_keyfile_read(o.vendor_keys, k[0], k[1], k[2], &kl);
            if (e == TC_OK)
                e = tc_station_emulate_prepare(cards_dir, o.count, bi.eid_prefix, lc.transport_kvn,
                                               k[0], k[1], k[2], kl);
            tc_memzero(k, sizeof k);
        }
        if (e == TC_OK) {
            e = tc_station_emulate_cards(cards_dir, o.count, &cards);
            emu = e == TC_OK;
        }
    }
    if (e != TC_OK) {
        rc = tc_cli_error(e, "line run");
        goto out;
    }
    (void)clock_gettime(CLOCK_MONOTONIC, &ctx.last);
    struct tc_station_run_opts ro = {.jobs = (unsigned)o.jobs, .progress = progress, .arg = &ctx};
    struct tc_station_stats s;
    e = tc_station_run(st, &cards, &ro, &s);
    if (e != TC_OK) {
        rc = tc_cli_error(e, "line run");
        goto out;
    }
    uint64_t crl_no = 0;
    if ((ctx.revoked > 0 || reconciled > 0) && have_signer) {
        e = publish_crl(bdir, &signer, ca.data, ca.len, &crl_no);
        if (e != TC_OK)
            (void)fprintf(stderr, "trustchain: line run: the batch CRL was not republished: %s\n",
                          tc_error_last()->msg);
    }
    if (ctx.rev_failed)
        (void)fprintf(stderr,
                      "trustchain: line run: %s could not be written; the audit log holds "
                      "the revocations\n",
                      ctx.rev_path);
    summary(&o, &s, &ctx, crl_no);
    rc = s.no_card > 0 ? TC_EXIT_FAIL : TC_EXIT_OK;
out:
    if (emu)
        tc_station_emulate_cards_free(&cards);
    tc_station_free(st);
    tc_registry_close(reg);
    if (have_signer)
        tc_hsm_signer_free(&signer);
    tc_hsm_close(h);
    tc_buf_free(&raw);
    tc_buf_free(&ca);
    free(ctx.rejects);
    if (ctx_lock)
        (void)pthread_mutex_destroy(&ctx.lock);
    if (rs_lock)
        (void)pthread_mutex_destroy(&rs.lock);
    return rc;
}

static const struct tc_cli_cmd cmds[] = {
    {"run", "provision a batch of cards (emulated or in PC/SC readers)", cmd_run},
};

int tc_cli_line(int argc, char **argv)
{
    if (argc < 2 || (tc_cli_wants_help(argc, argv) && argc == 2)) {
        (void)fputs(usage, stdout);
        return argc < 2 ? TC_EXIT_USAGE : TC_EXIT_OK;
    }
    if (tc_cli_wants_help(argc, argv)) {
        (void)fputs(usage, stdout);
        return TC_EXIT_OK;
    }
    return tc_cli_dispatch("trustchain line", cmds, TC_ARRAY_LEN(cmds), argc - 1, argv + 1);
}
