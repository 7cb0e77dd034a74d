/*
 * The canonical event encoding (docs/audit-format.md). One encoding per
 * event: fixed header, then fields as tag-length-value in strictly
 * ascending tag order, each at most once, exactly the fields the type
 * requires plus the optional ones it allows. Decoding refuses everything
 * else, so decode(encode(e)) == e and encode(decode(b)) == b.
 */
#include <string.h>

#include <trustchain/audit.h>

enum field_kind { K_BYTES, K_TEXT, K_KVN, K_U8, K_U16, K_SERIAL, K_U64, K_OPKIND };

struct field_def {
    uint8_t tag;
    uint32_t bit;
    enum field_kind kind;
    uint8_t min, max; /* value length bounds */
};

/* Ascending tag order is the canonical order. */
static const struct field_def fields[] = {
    {0x01, TC_AUDIT_HAS_EID, K_BYTES, 1, TC_AUDIT_EID_MAX},
    {0x02, TC_AUDIT_HAS_BATCH, K_TEXT, 1, TC_AUDIT_ID_MAX},
    {0x03, TC_AUDIT_HAS_STATION, K_TEXT, 1, TC_AUDIT_ID_MAX},
    {0x04, TC_AUDIT_HAS_ACTOR, K_TEXT, 1, TC_AUDIT_ID_MAX},
    {0x10, TC_AUDIT_HAS_KVN, K_KVN, 1, 1},
    {0x11, TC_AUDIT_HAS_KCV, K_BYTES, TC_AUDIT_KEYS *TC_KCV_LEN, TC_AUDIT_KEYS *TC_KCV_LEN},
    {0x12, TC_AUDIT_HAS_PREV_KVN, K_KVN, 1, 1},
    {0x20, TC_AUDIT_HAS_PUBKEY_SHA256, K_BYTES, TC_AUDIT_HASH_LEN, TC_AUDIT_HASH_LEN},
    {0x21, TC_AUDIT_HAS_CERT_SERIAL, K_SERIAL, 1, TC_AUDIT_SERIAL_MAX},
    {0x22, TC_AUDIT_HAS_CERT_SHA256, K_BYTES, TC_AUDIT_HASH_LEN, TC_AUDIT_HASH_LEN},
    {0x30, TC_AUDIT_HAS_LIFECYCLE, K_U8, 1, 1},
    {0x31, TC_AUDIT_HAS_PREV_LIFECYCLE, K_U8, 1, 1},
    {0x40, TC_AUDIT_HAS_REASON, K_U16, 2, 2},
    {0x41, TC_AUDIT_HAS_STEP, K_U8, 1, 1},
    {0x50, TC_AUDIT_HAS_OP_ID, K_U64, 8, 8},
    {0x51, TC_AUDIT_HAS_OP_KIND, K_OPKIND, 1, 1},
    {0x52, TC_AUDIT_HAS_MASTER, K_TEXT, 1, TC_AUDIT_ID_MAX},
    {0x53, TC_AUDIT_HAS_DATA_SHA256, K_BYTES, TC_AUDIT_HASH_LEN, TC_AUDIT_HASH_LEN},
};

#define LINE (TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_ACTOR)
#define KEYS (TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_KCV)
#define DEV  (TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR)
#define OPID TC_AUDIT_HAS_OP_ID

struct type_def {
    const char *name;
    uint32_t required;
    uint32_t optional;
};

static const struct type_def types[TC_AUDIT_OTA_TYPE_LAST_ + 1] = {
    [TC_AUDIT_CARD_RECEIVED] = {"card-received", LINE | TC_AUDIT_HAS_LIFECYCLE, TC_AUDIT_HAS_KVN},
    [TC_AUDIT_KEYS_DERIVED] = {"keys-derived", LINE | KEYS, 0},
    [TC_AUDIT_KEYS_INJECTED] = {"keys-injected", LINE | KEYS, TC_AUDIT_HAS_PREV_KVN},
    [TC_AUDIT_INJECTION_CONFIRMED] = {"injection-confirmed", LINE | KEYS, 0},
    [TC_AUDIT_KEYPAIR_GENERATED] = {"keypair-generated", LINE | TC_AUDIT_HAS_PUBKEY_SHA256, OPID},
    [TC_AUDIT_CERT_ISSUED] = {"cert-issued",
                              LINE | TC_AUDIT_HAS_PUBKEY_SHA256 | TC_AUDIT_HAS_CERT_SERIAL |
                                  TC_AUDIT_HAS_CERT_SHA256,
                              OPID},
    [TC_AUDIT_CERT_STORED] = {"cert-stored",
                              LINE | TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_CERT_SHA256, OPID},
    [TC_AUDIT_LIFECYCLE_CHANGED] = {"lifecycle-changed",
                                    LINE | TC_AUDIT_HAS_LIFECYCLE | TC_AUDIT_HAS_PREV_LIFECYCLE,
                                    OPID},
    [TC_AUDIT_DEVICE_REJECTED] = {"device-rejected", LINE | TC_AUDIT_HAS_REASON | TC_AUDIT_HAS_STEP,
                                  0},
    [TC_AUDIT_KEYS_ROTATED] = {"keys-rotated",
                               TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR | KEYS |
                                   TC_AUDIT_HAS_PREV_KVN,
                               TC_AUDIT_HAS_STATION | OPID},
    [TC_AUDIT_CERT_REVOKED] = {"cert-revoked",
                               TC_AUDIT_HAS_EID | TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR |
                                   TC_AUDIT_HAS_CERT_SERIAL | TC_AUDIT_HAS_REASON,
                               TC_AUDIT_HAS_STATION | TC_AUDIT_HAS_CERT_SHA256 | OPID},
    [TC_AUDIT_BATCH_REVOKED] = {"batch-revoked",
                                TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_REASON,
                                TC_AUDIT_HAS_STATION},
    [TC_AUDIT_OP_QUEUED] = {"op-queued",
                            TC_AUDIT_HAS_EID | TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_OP_KIND,
                            TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_KVN | TC_AUDIT_HAS_MASTER |
                                TC_AUDIT_HAS_DATA_SHA256},
    [TC_AUDIT_OP_STEP] = {"op-step", TC_AUDIT_HAS_EID | OPID | TC_AUDIT_HAS_STEP,
                          TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_KVN |
                              TC_AUDIT_HAS_PREV_KVN | TC_AUDIT_HAS_MASTER},
    [TC_AUDIT_OP_DONE] = {"op-done", TC_AUDIT_HAS_EID | OPID,
                          TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR},
    [TC_AUDIT_OP_FAILED] = {"op-failed", TC_AUDIT_HAS_EID | OPID | TC_AUDIT_HAS_REASON,
                            TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR | TC_AUDIT_HAS_STEP},
    [TC_AUDIT_OP_CANCELLED] = {"op-cancelled", TC_AUDIT_HAS_EID | OPID | TC_AUDIT_HAS_ACTOR,
                               TC_AUDIT_HAS_BATCH},
    [TC_AUDIT_CONFIG_STORED] = {"config-stored", TC_AUDIT_HAS_EID | OPID | TC_AUDIT_HAS_DATA_SHA256,
                                TC_AUDIT_HAS_BATCH | TC_AUDIT_HAS_ACTOR},
};

#define HEADER_LEN 10u /* version, type, time */

static bool type_known(unsigned t)
{
    return t >= 1 && t <= TC_AUDIT_OTA_TYPE_LAST_ && types[t].name != NULL;
}

tc_err tc_audit_event_schema(enum tc_audit_event_type type, uint32_t *required, uint32_t *allowed)
{
    TC_ENSURE_MSG(type_known((unsigned)type), TC_ERR_ARG, "unknown event type %d", (int)type);
    *required = types[type].required;
    *allowed = types[type].required | types[type].optional;
    return TC_OK;
}

const char *tc_audit_event_type_name(enum tc_audit_event_type type)
{
    return type_known((unsigned)type) ? types[type].name : "unknown";
}

static bool text_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7E)
            return false;
    return true;
}

/* RFC 5280 §4.1.2.2: a positive INTEGER of at most 20 octets; X.690 §8.3.2:
 * minimal two's complement (no redundant leading 0x00). */
static bool serial_ok(const uint8_t *p, size_t n)
{
    if (n == 0 || n > TC_AUDIT_SERIAL_MAX)
        return false;
    if (p[0] & 0x80)
        return false; /* negative */
    if (n == 1)
        return p[0] != 0; /* zero is not positive */
    return !(p[0] == 0x00 && (p[1] & 0x80) == 0);
}

/* GP Card Specification 2.3 §11.1.8: key version numbers '01' to '7F'. */
static bool kvn_ok(uint8_t v)
{
    return v >= 0x01 && v <= 0x7F;
}

/* OTA operation codes 1..15 (include/trustchain/ota_ops.h). */
static bool op_kind_ok(uint8_t v)
{
    return v >= 1 && v <= 15;
}

static char *text_field(struct tc_audit_event *ev, uint32_t bit)
{
    switch (bit) {
    case TC_AUDIT_HAS_BATCH:
        return ev->batch;
    case TC_AUDIT_HAS_STATION:
        return ev->station;
    case TC_AUDIT_HAS_ACTOR:
        return ev->actor;
    case TC_AUDIT_HAS_MASTER:
        return ev->master;
    default:
        return NULL;
    }
}

/* The value of a field as bytes (for encoding) into v[]. */
static tc_err field_value(const struct tc_audit_event *ev, const struct field_def *f,
                          uint8_t v[static 64], size_t *n)
{
    switch (f->bit) {
    case TC_AUDIT_HAS_EID:
        *n = ev->eid_len;
        TC_ENSURE_MSG(*n >= f->min && *n <= f->max, TC_ERR_ARG, "EID length %zu", *n);
        memcpy(v, ev->eid, *n);
        return TC_OK;
    case TC_AUDIT_HAS_BATCH:
    case TC_AUDIT_HAS_STATION:
    case TC_AUDIT_HAS_ACTOR:
    case TC_AUDIT_HAS_MASTER: {
        const char *s = f->bit == TC_AUDIT_HAS_BATCH     ? ev->batch
                        : f->bit == TC_AUDIT_HAS_STATION ? ev->station
                        : f->bit == TC_AUDIT_HAS_ACTOR   ? ev->actor
                                                         : ev->master;
        *n = strnlen(s, TC_AUDIT_ID_MAX + 1);
        TC_ENSURE_MSG(*n >= 1 && *n <= TC_AUDIT_ID_MAX, TC_ERR_ARG,
                      "identifier of field 0x%02x must be 1..%u characters", f->tag,
                      TC_AUDIT_ID_MAX);
        memcpy(v, s, *n);
        TC_ENSURE_MSG(text_ok(v, *n), TC_ERR_ARG,
                      "identifier of field 0x%02x has a byte outside 0x21..0x7E", f->tag);
        return TC_OK;
    }
    case TC_AUDIT_HAS_KVN:
        TC_ENSURE_MSG(kvn_ok(ev->kvn), TC_ERR_ARG, "KVN 0x%02x outside 0x01..0x7F", ev->kvn);
        v[0] = ev->kvn;
        *n = 1;
        return TC_OK;
    case TC_AUDIT_HAS_PREV_KVN:
        TC_ENSURE_MSG(kvn_ok(ev->prev_kvn), TC_ERR_ARG, "KVN 0x%02x outside 0x01..0x7F",
                      ev->prev_kvn);
        v[0] = ev->prev_kvn;
        *n = 1;
        return TC_OK;
    case TC_AUDIT_HAS_KCV:
        memcpy(v, ev->kcv, sizeof ev->kcv);
        *n = sizeof ev->kcv;
        return TC_OK;
    case TC_AUDIT_HAS_PUBKEY_SHA256:
        memcpy(v, ev->pubkey_sha256, TC_AUDIT_HASH_LEN);
        *n = TC_AUDIT_HASH_LEN;
        return TC_OK;
    case TC_AUDIT_HAS_CERT_SERIAL:
        TC_ENSURE_MSG(serial_ok(ev->cert_serial, ev->cert_serial_len), TC_ERR_ARG,
                      "certificate serial is not a minimal positive integer of 1..20 bytes");
        memcpy(v, ev->cert_serial, ev->cert_serial_len);
        *n = ev->cert_serial_len;
        return TC_OK;
    case TC_AUDIT_HAS_CERT_SHA256:
        memcpy(v, ev->cert_sha256, TC_AUDIT_HASH_LEN);
        *n = TC_AUDIT_HASH_LEN;
        return TC_OK;
    case TC_AUDIT_HAS_LIFECYCLE:
        v[0] = ev->lifecycle;
        *n = 1;
        return TC_OK;
    case TC_AUDIT_HAS_PREV_LIFECYCLE:
        v[0] = ev->prev_lifecycle;
        *n = 1;
        return TC_OK;
    case TC_AUDIT_HAS_REASON:
        v[0] = (uint8_t)(ev->reason >> 8);
        v[1] = (uint8_t)ev->reason;
        *n = 2;
        return TC_OK;
    case TC_AUDIT_HAS_STEP:
        v[0] = ev->step;
        *n = 1;
        return TC_OK;
    case TC_AUDIT_HAS_OP_ID:
        for (size_t i = 0; i < 8; i++)
            v[i] = (uint8_t)(ev->op_id >> (56 - 8 * i));
        *n = 8;
        return TC_OK;
    case TC_AUDIT_HAS_OP_KIND:
        TC_ENSURE_MSG(op_kind_ok(ev->op_kind), TC_ERR_ARG, "operation kind %u outside 1..15",
                      ev->op_kind);
        v[0] = ev->op_kind;
        *n = 1;
        return TC_OK;
    case TC_AUDIT_HAS_DATA_SHA256:
        memcpy(v, ev->data_sha256, TC_AUDIT_HASH_LEN);
        *n = TC_AUDIT_HASH_LEN;
        return TC_OK;
    default:
        return TC_FAIL(TC_ERR_INTERNAL, "no encoder for field 0x%02x", f->tag);
    }
}

tc_err tc_audit_event_encode(const struct tc_audit_event *ev, uint8_t *out, size_t out_size,
                             size_t *out_len)
{
    TC_ENSURE(ev != NULL && out != NULL && out_len != NULL, TC_ERR_ARG);
    TC_ENSURE_MSG(type_known((unsigned)ev->type), TC_ERR_ARG, "unknown event type %d",
                  (int)ev->type);
    const struct type_def *t = &types[ev->type];
    uint32_t allowed = t->required | t->optional;
    TC_ENSURE_MSG((ev->fields & t->required) == t->required, TC_ERR_ARG,
                  "%s event lacks required fields (mask 0x%x)", t->name, t->required & ~ev->fields);
    TC_ENSURE_MSG((ev->fields & ~allowed) == 0, TC_ERR_ARG,
                  "%s event carries fields it does not allow (mask 0x%x)", t->name,
                  ev->fields & ~allowed);

    struct tc_buf b;
    tc_buf_init_fixed(&b, out, out_size < TC_AUDIT_EVENT_MAX ? out_size : TC_AUDIT_EVENT_MAX);
    tc_buf_put_u8(&b, TC_AUDIT_EVENT_VERSION);
    tc_buf_put_u8(&b, (uint8_t)ev->type);
    tc_buf_put_u32be(&b, (uint32_t)(ev->time_ms >> 32));
    tc_buf_put_u32be(&b, (uint32_t)ev->time_ms);
    for (size_t i = 0; i < TC_ARRAY_LEN(fields); i++) {
        if (!(ev->fields & fields[i].bit))
            continue;
        uint8_t v[64];
        size_t n = 0;
        TC_GUARD(field_value(ev, &fields[i], v, &n));
        tc_buf_put_u8(&b, fields[i].tag);
        tc_buf_put_u8(&b, (uint8_t)n);
        tc_buf_put(&b, v, n);
    }
    TC_GUARD(tc_buf_status(&b));
    *out_len = b.len;
    return TC_OK;
}

static tc_err decode_field(struct tc_audit_event *ev, const struct field_def *f, const uint8_t *v,
                           size_t n)
{
    switch (f->kind) {
    case K_TEXT: {
        TC_ENSURE_MSG(text_ok(v, n), TC_ERR_FORMAT,
                      "field 0x%02x: identifier byte outside 0x21..0x7E", f->tag);
        char *s = text_field(ev, f->bit);
        TC_ENSURE(s != NULL, TC_ERR_INTERNAL);
        memcpy(s, v, n);
        s[n] = '\0';
        return TC_OK;
    }
    case K_KVN:
        TC_ENSURE_MSG(kvn_ok(v[0]), TC_ERR_FORMAT, "KVN 0x%02x outside 0x01..0x7F", v[0]);
        if (f->bit == TC_AUDIT_HAS_KVN)
            ev->kvn = v[0];
        else
            ev->prev_kvn = v[0];
        return TC_OK;
    case K_SERIAL:
        TC_ENSURE_MSG(serial_ok(v, n), TC_ERR_FORMAT,
                      "certificate serial is not a minimal positive integer");
        memcpy(ev->cert_serial, v, n);
        ev->cert_serial_len = n;
        return TC_OK;
    case K_U8:
        if (f->bit == TC_AUDIT_HAS_LIFECYCLE)
            ev->lifecycle = v[0];
        else if (f->bit == TC_AUDIT_HAS_PREV_LIFECYCLE)
            ev->prev_lifecycle = v[0];
        else
            ev->step = v[0];
        return TC_OK;
    case K_U16:
        ev->reason = (uint16_t)((unsigned)v[0] << 8 | v[1]);
        return TC_OK;
    case K_U64:
        ev->op_id = 0;
        for (size_t i = 0; i < 8; i++)
            ev->op_id = ev->op_id << 8 | v[i];
        return TC_OK;
    case K_OPKIND:
        TC_ENSURE_MSG(op_kind_ok(v[0]), TC_ERR_FORMAT, "operation kind %u outside 1..15", v[0]);
        ev->op_kind = v[0];
        return TC_OK;
    case K_BYTES:
        if (f->bit == TC_AUDIT_HAS_EID) {
            memcpy(ev->eid, v, n);
            ev->eid_len = n;
        } else if (f->bit == TC_AUDIT_HAS_KCV) {
            memcpy(ev->kcv, v, n);
        } else if (f->bit == TC_AUDIT_HAS_PUBKEY_SHA256) {
            memcpy(ev->pubkey_sha256, v, n);
        } else if (f->bit == TC_AUDIT_HAS_DATA_SHA256) {
            memcpy(ev->data_sha256, v, n);
        } else {
            memcpy(ev->cert_sha256, v, n);
        }
        return TC_OK;
    default:
        return TC_FAIL(TC_ERR_INTERNAL, "no decoder for field 0x%02x", f->tag);
    }
}

tc_err tc_audit_event_decode(const uint8_t *in, size_t len, struct tc_audit_event *ev)
{
    TC_ENSURE(ev != NULL && (in != NULL || len == 0), TC_ERR_ARG);
    memset(ev, 0, sizeof *ev);
    TC_ENSURE_MSG(len <= TC_AUDIT_EVENT_MAX, TC_ERR_FORMAT, "event of %zu bytes exceeds %u", len,
                  TC_AUDIT_EVENT_MAX);
    struct tc_cursor c;
    tc_cursor_init(&c, in, len);
    uint8_t version = 0, type = 0;
    uint32_t hi = 0, lo = 0;
    TC_GUARD(tc_cursor_u8(&c, &version));
    TC_ENSURE_MSG(version == TC_AUDIT_EVENT_VERSION, TC_ERR_UNSUPPORTED,
                  "event encoding version %u is not supported", version);
    TC_GUARD(tc_cursor_u8(&c, &type));
    TC_ENSURE_MSG(type_known(type), TC_ERR_FORMAT, "unknown event type %u", type);
    TC_GUARD(tc_cursor_u32be(&c, &hi));
    TC_GUARD(tc_cursor_u32be(&c, &lo));
    ev->type = (enum tc_audit_event_type)type;
    ev->time_ms = (uint64_t)hi << 32 | lo;
    const struct type_def *t = &types[type];
    uint32_t allowed = t->required | t->optional;

    size_t next = 0; /* fields[] before this index are behind us */
    while (tc_cursor_remaining(&c) > 0) {
        uint8_t tag = 0, n = 0;
        const uint8_t *v = NULL;
        TC_GUARD(tc_cursor_u8(&c, &tag));
        size_t i = next;
        while (i < TC_ARRAY_LEN(fields) && fields[i].tag != tag)
            i++;
        if (i == TC_ARRAY_LEN(fields)) {
            for (size_t j = 0; j < next; j++)
                TC_ENSURE_MSG(fields[j].tag != tag, TC_ERR_FORMAT,
                              "field 0x%02x out of order or repeated", tag);
            return TC_FAIL(TC_ERR_FORMAT, "unknown field 0x%02x", tag);
        }
        const struct field_def *f = &fields[i];
        TC_ENSURE_MSG(allowed & f->bit, TC_ERR_FORMAT, "field 0x%02x not allowed in %s", tag,
                      t->name);
        TC_GUARD(tc_cursor_u8(&c, &n));
        TC_ENSURE_MSG(n >= f->min && n <= f->max, TC_ERR_FORMAT,
                      "field 0x%02x length %u outside %u..%u", tag, n, f->min, f->max);
        TC_GUARD(tc_cursor_view(&c, n, &v));
        TC_GUARD(decode_field(ev, f, v, n));
        ev->fields |= f->bit;
        next = i + 1;
    }
    TC_ENSURE_MSG((ev->fields & t->required) == t->required, TC_ERR_FORMAT,
                  "%s event lacks required fields (mask 0x%x)", t->name, t->required & ~ev->fields);
    return tc_cursor_expect_end(&c);
}
