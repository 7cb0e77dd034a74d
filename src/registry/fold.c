/*
 * The projection rule for one device: how an event changes its state.
 * Both the stored projection and state-at-time queries use this one
 * function, so the two cannot disagree (docs/registry.md).
 */
#include <stdio.h>
#include <string.h>

#include "registry/internal.h"

/* GP Card Specification 2.3 §11.1.1, Table 11-3: card life cycle coding. */
#define GP_LC_SECURED     0x0Fu
#define GP_LC_CARD_LOCKED 0x7Fu
#define GP_LC_TERMINATED  0xFFu

static const char *const state_names[] = {
    NULL,      "received",       "keys-derived", "keys-injected", "confirmed",
    "keypair", "cert-issued",    "cert-stored",  "provisioned",   "rejected",
    "locked",  "decommissioned", "revoked",
};

const char *tc_registry_state_name(enum tc_registry_state s)
{
    if ((unsigned)s == 0 || (unsigned)s > TC_REG_STATE_MAX_)
        return NULL;
    return state_names[s];
}

tc_err tc_registry_state_parse(const char *name, enum tc_registry_state *s)
{
    TC_ENSURE(name != NULL && s != NULL, TC_ERR_ARG);
    for (unsigned i = 1; i <= TC_REG_STATE_MAX_; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *s = (enum tc_registry_state)i;
            return TC_OK;
        }
    }
    return TC_FAIL(TC_ERR_ARG, "unknown device state '%s'", name);
}

static bool terminal(enum tc_registry_state s)
{
    return s == TC_REG_REJECTED || s == TC_REG_REVOKED || s == TC_REG_DECOMMISSIONED;
}

static void set_keys(struct tc_registry_device *d, const struct tc_audit_event *ev)
{
    d->kvn = ev->kvn;
    memcpy(d->kcv, ev->kcv, sizeof d->kcv);
    d->has_kcv = true;
}

/* ------------------------------------------------------------ certificates */

static bool is_current(const struct tc_registry_device *d, const struct tc_audit_event *ev)
{
    return d->has_cert && d->cert_serial_len == ev->cert_serial_len &&
           memcmp(d->cert_serial, ev->cert_serial, ev->cert_serial_len) == 0;
}

/* Forgets the remembered certificate with the event's serial; false if
 * there is none. The entries stay packed, unused ones zero. */
static bool prev_remove(struct tc_registry_device *d, const struct tc_audit_event *ev)
{
    for (size_t i = 0; i < d->n_prev; i++) {
        const struct tc_registry_cert_ref *c = &d->prev[i];
        if (c->serial_len != ev->cert_serial_len ||
            memcmp(c->serial, ev->cert_serial, ev->cert_serial_len) != 0)
            continue;
        memmove(&d->prev[i], &d->prev[i + 1], (d->n_prev - i - 1) * sizeof d->prev[0]);
        d->n_prev--;
        memset(&d->prev[d->n_prev], 0, sizeof d->prev[0]);
        return true;
    }
    return false;
}

/* A new certificate is issued: the current one, if not revoked, joins the
 * remembered ones (the oldest is forgotten when they are full). */
static void prev_push_current(struct tc_registry_device *d)
{
    if (d->n_prev == TC_REGISTRY_PREV_CERTS) {
        memmove(&d->prev[0], &d->prev[1], (TC_REGISTRY_PREV_CERTS - 1) * sizeof d->prev[0]);
        d->n_prev--;
    }
    struct tc_registry_cert_ref *c = &d->prev[d->n_prev++];
    memset(c, 0, sizeof *c);
    memcpy(c->serial, d->cert_serial, d->cert_serial_len);
    c->serial_len = d->cert_serial_len;
    memcpy(c->sha256, d->cert_sha256, TC_AUDIT_HASH_LEN);
    memcpy(c->pubkey_sha256, d->cert_pubkey_sha256, TC_AUDIT_HASH_LEN);
    c->stored = d->cert_stored;
}

/* The current certificate is revoked and another is not: the most
 * recently issued of those is current again, with its key and whether the
 * card returned it. */
static void prev_pop_current(struct tc_registry_device *d)
{
    struct tc_registry_cert_ref *c = &d->prev[--d->n_prev];
    memset(d->cert_serial, 0, sizeof d->cert_serial);
    memcpy(d->cert_serial, c->serial, c->serial_len);
    d->cert_serial_len = c->serial_len;
    memcpy(d->cert_sha256, c->sha256, TC_AUDIT_HASH_LEN);
    memcpy(d->cert_pubkey_sha256, c->pubkey_sha256, TC_AUDIT_HASH_LEN);
    memcpy(d->pubkey_sha256, c->pubkey_sha256, TC_AUDIT_HASH_LEN);
    d->has_pubkey = true;
    d->cert_stored = c->stored;
    memset(c, 0, sizeof *c);
}

tc_err tc_registry_fold(struct tc_registry_device *d, uint64_t index,
                        const struct tc_audit_event *ev)
{
    TC_ENSURE(d != NULL && ev != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG((ev->fields & TC_AUDIT_HAS_EID) != 0 && ev->eid_len > 0 &&
                      ev->eid_len <= TC_AUDIT_EID_MAX,
                  TC_ERR_ARG, "a %s event names no device", tc_audit_event_type_name(ev->type));
    if (d->events == 0) {
        memset(d, 0, sizeof *d);
        memcpy(d->eid, ev->eid, ev->eid_len);
        d->eid_len = ev->eid_len;
        d->first_index = index;
    } else {
        TC_ENSURE_MSG(d->eid_len == ev->eid_len && memcmp(d->eid, ev->eid, ev->eid_len) == 0,
                      TC_ERR_ARG, "event %llu is about another device", (unsigned long long)index);
        TC_ENSURE_MSG(index > d->last_index, TC_ERR_ARG, "event %llu folded out of log order",
                      (unsigned long long)index);
    }
    if (ev->fields & TC_AUDIT_HAS_BATCH)
        (void)snprintf(d->batch, sizeof d->batch, "%s", ev->batch);
    if (ev->fields & TC_AUDIT_HAS_STATION)
        (void)snprintf(d->station, sizeof d->station, "%s", ev->station);

    /* An OTA operation (certificate renewal) in the field: the events it
     * logs (op-id set) change the key pair and certificate of a device
     * that stays provisioned or locked, rather than moving it back along
     * the line's states. */
    bool in_field = (ev->fields & TC_AUDIT_HAS_OP_ID) &&
                    (d->state == TC_REG_PROVISIONED || d->state == TC_REG_LOCKED);
    enum tc_registry_state kept = d->state;

    switch (ev->type) {
    case TC_AUDIT_CARD_RECEIVED:
        d->state = TC_REG_RECEIVED;
        d->lifecycle = ev->lifecycle;
        if (ev->fields & TC_AUDIT_HAS_KVN) {
            /* The transport keyset: its KVN is known, its KCVs are not logged. */
            d->kvn = ev->kvn;
            d->has_kcv = false;
            memset(d->kcv, 0, sizeof d->kcv);
        }
        break;
    case TC_AUDIT_KEYS_DERIVED:
        /* Derived in the HSM, not yet on the card: the card's keys are unchanged. */
        d->state = TC_REG_KEYS_DERIVED;
        break;
    case TC_AUDIT_KEYS_INJECTED:
        d->state = TC_REG_KEYS_INJECTED;
        set_keys(d, ev);
        break;
    case TC_AUDIT_INJECTION_CONFIRMED:
        d->state = TC_REG_CONFIRMED;
        set_keys(d, ev);
        break;
    case TC_AUDIT_KEYPAIR_GENERATED:
        d->state = TC_REG_KEYPAIR;
        memcpy(d->pubkey_sha256, ev->pubkey_sha256, TC_AUDIT_HASH_LEN);
        d->has_pubkey = true;
        break;
    case TC_AUDIT_CERT_ISSUED:
        /* The current certificate, if still valid, is not forgotten: should
         * the new one be revoked, it is current again. */
        if (d->has_cert && !d->cert_revoked && !is_current(d, ev))
            prev_push_current(d);
        (void)prev_remove(d, ev);
        d->state = TC_REG_CERT_ISSUED;
        memcpy(d->pubkey_sha256, ev->pubkey_sha256, TC_AUDIT_HASH_LEN);
        d->has_pubkey = true;
        memset(d->cert_serial, 0, sizeof d->cert_serial);
        memcpy(d->cert_serial, ev->cert_serial, ev->cert_serial_len);
        d->cert_serial_len = ev->cert_serial_len;
        memcpy(d->cert_sha256, ev->cert_sha256, TC_AUDIT_HASH_LEN);
        memcpy(d->cert_pubkey_sha256, ev->pubkey_sha256, TC_AUDIT_HASH_LEN);
        d->has_cert = true;
        d->cert_stored = false;
        d->cert_revoked = false;
        break;
    case TC_AUDIT_CERT_STORED:
        /* What the card returned; it is the current certificate only if it
         * is the one issued. */
        d->state = TC_REG_CERT_STORED;
        d->cert_stored = d->has_cert && d->cert_serial_len == ev->cert_serial_len &&
                         memcmp(d->cert_serial, ev->cert_serial, ev->cert_serial_len) == 0 &&
                         memcmp(d->cert_sha256, ev->cert_sha256, TC_AUDIT_HASH_LEN) == 0;
        break;
    case TC_AUDIT_LIFECYCLE_CHANGED:
        d->lifecycle = ev->lifecycle;
        if (ev->lifecycle == GP_LC_TERMINATED)
            d->state = TC_REG_DECOMMISSIONED;
        else if (terminal(d->state))
            break;
        else if (ev->lifecycle == GP_LC_CARD_LOCKED)
            d->state = TC_REG_LOCKED;
        else if (ev->lifecycle == GP_LC_SECURED && d->cert_stored &&
                 (d->state == TC_REG_CERT_STORED || d->state == TC_REG_LOCKED ||
                  d->state == TC_REG_PROVISIONED))
            d->state = TC_REG_PROVISIONED;
        break;
    case TC_AUDIT_DEVICE_REJECTED:
        d->state = TC_REG_REJECTED;
        d->reason = ev->reason;
        d->step = ev->step;
        break;
    case TC_AUDIT_KEYS_ROTATED:
        set_keys(d, ev);
        break;
    case TC_AUDIT_CERT_REVOKED:
        /* One of the other valid certificates (a renewal that stored its
         * new certificate, or whose new key is the card's, revokes the old
         * one): the current certificate and the state are unchanged. */
        if (prev_remove(d, ev) || !is_current(d, ev))
            break;
        /* The current one, while another is still valid (an abandoned
         * renewal revokes the certificate it issued, which the card never
         * took): that one is current again, the state unchanged. */
        if (!d->cert_revoked && d->n_prev > 0) {
            prev_pop_current(d);
            break;
        }
        /* The last valid one: the device is revoked. */
        d->cert_revoked = true;
        if (d->state != TC_REG_DECOMMISSIONED) {
            d->state = TC_REG_REVOKED;
            d->reason = ev->reason;
        }
        break;
    case TC_AUDIT_OP_QUEUED:
    case TC_AUDIT_OP_STEP:
    case TC_AUDIT_OP_DONE:
    case TC_AUDIT_OP_FAILED:
    case TC_AUDIT_OP_CANCELLED:
    case TC_AUDIT_CONFIG_STORED:
        /* OTA operation records: the queue (docs/ota.md) is their own fold
         * (tc_ota_queue_fold); the device's credential state is changed
         * only by the events the operations produce (keys-rotated,
         * lifecycle-changed, cert-revoked, ...). */
        break;
    case TC_AUDIT_BATCH_REVOKED:
    default:
        return TC_FAIL(TC_ERR_ARG, "a %s event is not a device event",
                       tc_audit_event_type_name(ev->type));
    }
    if (in_field && (ev->type == TC_AUDIT_KEYPAIR_GENERATED || ev->type == TC_AUDIT_CERT_ISSUED ||
                     ev->type == TC_AUDIT_CERT_STORED))
        d->state = kept;
    d->last_index = index;
    d->last_time_ms = ev->time_ms;
    d->events++;
    return TC_OK;
}

/* ------------------------------------------------------------ time */

static bool leap(uint64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned mdays(uint64_t y, unsigned m)
{
    static const unsigned d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : d[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (y >= 1970). */
static uint64_t days_from_civil(uint64_t y, unsigned m, unsigned d)
{
    uint64_t days = 0;
    for (uint64_t k = 1970; k < y; k++)
        days += leap(k) ? 366 : 365;
    for (unsigned k = 1; k < m; k++)
        days += mdays(y, k);
    return days + d - 1;
}

static bool digits(const char *s, size_t n, uint64_t *v)
{
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (uint64_t)(s[i] - '0');
    }
    return true;
}

tc_err tc_registry_time_parse(const char *s, uint64_t *time_ms)
{
    TC_ENSURE(s != NULL && time_ms != NULL, TC_ERR_ARG);
    size_t n = strlen(s);
    uint64_t v = 0;
    if (n > 0 && n <= 19 && digits(s, n, &v) && (n == 1 || s[0] != '0')) {
        *time_ms = v;
        return TC_OK;
    }
    /* RFC 3339 §5.6 date-time, UTC ("Z") only: YYYY-MM-DDTHH:MM:SS[.f{1,3}]Z */
    uint64_t y, mo, d, h, mi, se, ms = 0;
    bool ok = n >= 20 && s[4] == '-' && s[7] == '-' && (s[10] == 'T' || s[10] == 't') &&
              s[13] == ':' && s[16] == ':' && digits(s, 4, &y) && digits(s + 5, 2, &mo) &&
              digits(s + 8, 2, &d) && digits(s + 11, 2, &h) && digits(s + 14, 2, &mi) &&
              digits(s + 17, 2, &se);
    size_t pos = 19;
    if (ok && s[pos] == '.') {
        size_t f = 0;
        pos++;
        while (pos + f < n && s[pos + f] >= '0' && s[pos + f] <= '9')
            f++;
        ok = f >= 1 && f <= 3 && digits(s + pos, f, &ms);
        for (size_t k = f; k < 3; k++)
            ms *= 10;
        pos += f;
    }
    ok = ok && pos + 1 == n && (s[pos] == 'Z' || s[pos] == 'z');
    ok = ok && y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 && d <= mdays(y, (unsigned)mo) &&
         h < 24 && mi < 60 && se < 60;
    TC_ENSURE_MSG(ok, TC_ERR_FORMAT,
                  "'%s' is not a time (RFC 3339 UTC such as 2026-11-27T01:02:03Z, or "
                  "milliseconds since 1970)",
                  s);
    uint64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *time_ms = ((days * 24 + h) * 60 + mi) * 60000 + se * 1000 + ms;
    return TC_OK;
}

tc_err tc_registry_time_format(uint64_t time_ms, char *out, size_t out_size)
{
    TC_ENSURE(out != NULL && out_size >= 25, TC_ERR_SPACE);
    /* 10000-01-01T00:00:00Z: four-digit years only (RFC 3339 §5.6). */
    TC_ENSURE_MSG(time_ms < 253402300800000ull, TC_ERR_RANGE, "time %llu ms is past year 9999",
                  (unsigned long long)time_ms);
    uint64_t secs = time_ms / 1000, days = secs / 86400, rem = secs % 86400;
    uint64_t y = 1970;
    while (days >= (leap(y) ? 366u : 365u)) {
        days -= leap(y) ? 366 : 365;
        y++;
    }
    unsigned m = 1;
    while (days >= mdays(y, m)) {
        days -= mdays(y, m);
        m++;
    }
    int w = snprintf(out, out_size, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)y, m,
                     (unsigned)days + 1, (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60),
                     (unsigned)(rem % 60), (unsigned)(time_ms % 1000));
    TC_ENSURE(w > 0 && (size_t)w < out_size, TC_ERR_SPACE);
    return TC_OK;
}
