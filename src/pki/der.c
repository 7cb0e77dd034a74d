/*
 * DER for the extensions the profile defines (X.690 §10: definite, minimal
 * lengths), their parsers over the cursor, and small shared helpers.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "pki_int.h"

/* TC_PKI_OID_ARC, 1.3.6.1.4.1.32473 (see pki.h). */
#define ARC_BYTES 0x2B, 0x06, 0x01, 0x04, 0x01, 0x81, 0xFD, 0x59
const uint8_t tc_pki_oid_policy[10] = {ARC_BYTES, 0x01, 0x01};
const uint8_t tc_pki_oid_ext_mfg[10] = {ARC_BYTES, 0x02, 0x01};
const uint8_t tc_pki_oid_ext_batch[10] = {ARC_BYTES, 0x02, 0x02};
const uint8_t tc_pki_oid_hw_type[10] = {ARC_BYTES, 0x03, 0x01};
/* id-on-hardwareModuleName, RFC 4108 §5: 1.3.6.1.5.5.7.8.4 */
const uint8_t tc_pki_oid_hmn[8] = {0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x04};

/* Digests fetched once per process: an implicit fetch per use takes the
 * provider store's lock, which two issuing threads then contend for. */
static EVP_MD *md_sha1, *md_sha256;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_fetch(void)
{
    md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *tc_pki_md(bool sha256)
{
    (void)pthread_once(&md_once, md_fetch);
    return sha256 ? md_sha256 : md_sha1;
}

void tc_pki_der_header(struct tc_buf *b, uint8_t tag, size_t n)
{
    tc_buf_put_u8(b, tag);
    if (n < 0x80) {
        tc_buf_put_u8(b, (uint8_t)n);
    } else if (n <= 0xFF) {
        tc_buf_put_u8(b, 0x81);
        tc_buf_put_u8(b, (uint8_t)n);
    } else if (n <= 0xFFFF) {
        tc_buf_put_u8(b, 0x82);
        tc_buf_put_u16be(b, (uint16_t)n);
    } else if (n <= 0xFFFFFF) {
        tc_buf_put_u8(b, 0x83);
        tc_buf_put_u8(b, (uint8_t)(n >> 16));
        tc_buf_put_u16be(b, (uint16_t)n);
    } else {
        /* Larger than anything the profile makes: poison the buffer. */
        (void)tc_buf_reserve(b, SIZE_MAX);
    }
}

void tc_pki_der_put(struct tc_buf *b, uint8_t tag, const uint8_t *v, size_t n)
{
    tc_pki_der_header(b, tag, n);
    if (n > 0)
        tc_buf_put(b, v, n);
}

tc_err tc_pki_der_get(struct tc_cursor *c, uint8_t tag, struct tc_cursor *content)
{
    struct tc_cursor t = *c;
    uint8_t got, l0;
    TC_GUARD(tc_cursor_u8(&t, &got));
    TC_ENSURE_MSG(got == tag, TC_ERR_FORMAT, "DER: tag 0x%02X at offset %zu, expected 0x%02X", got,
                  c->pos, tag);
    TC_GUARD(tc_cursor_u8(&t, &l0));
    size_t len;
    if (l0 < 0x80) {
        len = l0;
    } else {
        /* X.690 §10.1: definite form, minimum number of length octets. */
        size_t nb = l0 & 0x7Fu;
        TC_ENSURE_MSG(nb >= 1 && nb <= 3, TC_ERR_FORMAT, "DER: unsupported length form 0x%02X", l0);
        len = 0;
        for (size_t i = 0; i < nb; i++) {
            uint8_t v;
            TC_GUARD(tc_cursor_u8(&t, &v));
            TC_ENSURE_MSG(!(i == 0 && v == 0), TC_ERR_FORMAT, "DER: non-minimal length");
            len = (len << 8) | v;
        }
        TC_ENSURE_MSG(len >= 0x80, TC_ERR_FORMAT, "DER: non-minimal length");
    }
    TC_GUARD(tc_cursor_sub(&t, len, content));
    *c = t;
    return TC_OK;
}

bool tc_pki_id_ok(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, TC_PKI_ID_MAX + 1);
    if (n == 0 || n > TC_PKI_ID_MAX || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7E)
            return false;
    }
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153u * (m + (m > 2 ? (unsigned)-3 : 9u)) + 2u) / 5u + d - 1u;
    unsigned doe = yoe * 365u + yoe / 4u - yoe / 100u + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

tc_err tc_pki_gentime_format(int64_t t, char out[static 16])
{
    TC_ENSURE(t >= 0 && t <= 253402300799, TC_ERR_RANGE); /* up to 9999-12-31T23:59:59Z */
    time_t tt = (time_t)t;
    struct tm tm;
    TC_ENSURE(gmtime_r(&tt, &tm) != NULL, TC_ERR_RANGE);
    int n = snprintf(out, 16, "%04d%02d%02d%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    TC_ENSURE(n == 15, TC_ERR_INTERNAL);
    return TC_OK;
}

static unsigned dig(const uint8_t *s, size_t n)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10u + (unsigned)(s[i] - '0');
    return v;
}

tc_err tc_pki_gentime_parse(const uint8_t *s, size_t n, int64_t *t)
{
    /* RFC 5280 §4.1.2.5.2: YYYYMMDDHHMMSSZ, no fractional seconds. */
    TC_ENSURE_MSG(n == 15 && s[14] == 'Z', TC_ERR_FORMAT, "GeneralizedTime is not YYYYMMDDHHMMSSZ");
    for (size_t i = 0; i < 14; i++)
        TC_ENSURE_MSG(s[i] >= '0' && s[i] <= '9', TC_ERR_FORMAT, "GeneralizedTime: not a digit");
    unsigned y = dig(s, 4), mo = dig(s + 4, 2), d = dig(s + 6, 2);
    unsigned h = dig(s + 8, 2), mi = dig(s + 10, 2), se = dig(s + 12, 2);
    static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    TC_ENSURE_MSG(mo >= 1 && mo <= 12 && d >= 1 && d <= mdays[mo - 1] && h < 24 && mi < 60 &&
                      se < 60,
                  TC_ERR_FORMAT, "GeneralizedTime out of range");
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    TC_ENSURE_MSG(!(mo == 2 && d == 29 && !leap), TC_ERR_FORMAT, "GeneralizedTime out of range");
    *t = days_from_civil(y, mo, d) * 86400 + (int64_t)(h * 3600u + mi * 60u + se);
    return TC_OK;
}

/* ----------------------------------------------------------- encoders */

tc_err tc_pki_ext_hmn(const uint8_t eid_bcd[static TC_PKI_EID_BCD_LEN], struct tc_buf *out)
{
    /* RFC 4108 §5: HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER,
     * hwSerialNum OCTET STRING } carried as otherName in subjectAltName:
     * GeneralNames ::= SEQUENCE OF GeneralName; otherName [0] IMPLICIT
     * AnotherName { type-id OID, value [0] EXPLICIT ANY } (RFC 5280 §4.2.1.6). */
    uint8_t m1[64], m2[64], m3[96], m4[112];
    struct tc_buf hmn, val, on, gn;
    tc_buf_init_fixed(&hmn, m1, sizeof m1);
    tc_pki_der_put(&hmn, DER_OID, tc_pki_oid_hw_type, sizeof tc_pki_oid_hw_type);
    tc_pki_der_put(&hmn, DER_OCTET_STRING, eid_bcd, TC_PKI_EID_BCD_LEN);
    TC_GUARD(tc_buf_status(&hmn));
    tc_buf_init_fixed(&val, m2, sizeof m2);
    tc_pki_der_put(&val, DER_SEQUENCE, hmn.data, hmn.len);
    TC_GUARD(tc_buf_status(&val));
    tc_buf_init_fixed(&on, m3, sizeof m3);
    tc_pki_der_put(&on, DER_OID, tc_pki_oid_hmn, sizeof tc_pki_oid_hmn);
    tc_pki_der_put(&on, DER_CTX0_C, val.data, val.len);
    TC_GUARD(tc_buf_status(&on));
    tc_buf_init_fixed(&gn, m4, sizeof m4);
    tc_pki_der_put(&gn, DER_CTX0_C, on.data, on.len);
    TC_GUARD(tc_buf_status(&gn));
    tc_pki_der_put(out, DER_SEQUENCE, gn.data, gn.len);
    return tc_buf_status(out);
}

tc_err tc_pki_ext_mfg(const char *batch_id, const char *station_id, int64_t production_time,
                      struct tc_buf *out)
{
    /* TrustchainManufacturingInfo ::= SEQUENCE { batchId UTF8String (SIZE(1..64)),
     *   stationId UTF8String (SIZE(1..64)), productionTime GeneralizedTime }
     * (docs/cert-profile.md) */
    TC_ENSURE_MSG(tc_pki_id_ok(batch_id), TC_ERR_ARG, "batch ID must be 1-64 printable characters");
    TC_ENSURE_MSG(tc_pki_id_ok(station_id), TC_ERR_ARG,
                  "station ID must be 1-64 printable characters");
    char gt[16];
    TC_GUARD(tc_pki_gentime_format(production_time, gt));
    uint8_t m[200];
    struct tc_buf in;
    tc_buf_init_fixed(&in, m, sizeof m);
    tc_pki_der_put(&in, DER_UTF8STRING, (const uint8_t *)batch_id, strlen(batch_id));
    tc_pki_der_put(&in, DER_UTF8STRING, (const uint8_t *)station_id, strlen(station_id));
    tc_pki_der_put(&in, DER_GENTIME, (const uint8_t *)gt, 15);
    TC_GUARD(tc_buf_status(&in));
    tc_pki_der_put(out, DER_SEQUENCE, in.data, in.len);
    return tc_buf_status(out);
}

tc_err tc_pki_ext_batch(const char *batch_id, const char *eid_prefix, struct tc_buf *out)
{
    /* TrustchainBatchInfo ::= SEQUENCE { batchId UTF8String (SIZE(1..64)),
     *   eidPrefix NumericString (SIZE(1..30)) } (docs/cert-profile.md) */
    TC_ENSURE_MSG(tc_pki_id_ok(batch_id), TC_ERR_ARG, "batch ID must be 1-64 printable characters");
    TC_GUARD(tc_pki_eid_prefix_check(eid_prefix));
    uint8_t m[128];
    struct tc_buf in;
    tc_buf_init_fixed(&in, m, sizeof m);
    tc_pki_der_put(&in, DER_UTF8STRING, (const uint8_t *)batch_id, strlen(batch_id));
    tc_pki_der_put(&in, DER_NUMERIC, (const uint8_t *)eid_prefix, strlen(eid_prefix));
    TC_GUARD(tc_buf_status(&in));
    tc_pki_der_put(out, DER_SEQUENCE, in.data, in.len);
    return tc_buf_status(out);
}

tc_err tc_pki_ext_policy(struct tc_buf *out)
{
    /* RFC 5280 §4.2.1.4: certificatePolicies ::= SEQUENCE SIZE (1..MAX) OF
     * PolicyInformation { policyIdentifier } (no qualifiers). */
    uint8_t m1[32], m2[40];
    struct tc_buf oid, pi;
    tc_buf_init_fixed(&oid, m1, sizeof m1);
    tc_pki_der_put(&oid, DER_OID, tc_pki_oid_policy, sizeof tc_pki_oid_policy);
    tc_buf_init_fixed(&pi, m2, sizeof m2);
    tc_pki_der_put(&pi, DER_SEQUENCE, oid.data, oid.len);
    TC_GUARD(tc_buf_status(&pi));
    tc_pki_der_put(out, DER_SEQUENCE, pi.data, pi.len);
    return tc_buf_status(out);
}

tc_err tc_pki_ext_cdp(const char *url, struct tc_buf *out)
{
    /* RFC 5280 §4.2.1.13: CRLDistributionPoints ::= SEQUENCE OF
     * DistributionPoint { distributionPoint [0] DistributionPointName
     * { fullName [0] GeneralNames { uniformResourceIdentifier [6] } } } */
    size_t n = strnlen(url, TC_PKI_URL_MAX + 1);
    TC_ENSURE_MSG(n > 0 && n <= TC_PKI_URL_MAX, TC_ERR_ARG, "CRL URL must be 1-256 characters");
    for (size_t i = 0; i < n; i++)
        TC_ENSURE_MSG(url[i] > 0x20 && url[i] < 0x7F, TC_ERR_ARG, "CRL URL must be IA5 printable");
    uint8_t m1[TC_PKI_URL_MAX + 8], m2[TC_PKI_URL_MAX + 16], m3[TC_PKI_URL_MAX + 24];
    struct tc_buf a, b, c;
    tc_buf_init_fixed(&a, m1, sizeof m1);
    tc_pki_der_put(&a, DER_CTX6_P, (const uint8_t *)url, n);
    tc_buf_init_fixed(&b, m2, sizeof m2);
    tc_pki_der_put(&b, DER_CTX0_C, a.data, a.len); /* fullName */
    TC_GUARD(tc_buf_status(&b));
    tc_buf_init_fixed(&c, m3, sizeof m3);
    tc_pki_der_put(&c, DER_CTX0_C, b.data, b.len); /* distributionPoint */
    TC_GUARD(tc_buf_status(&c));
    tc_buf_init_fixed(&b, m2, sizeof m2);
    tc_pki_der_put(&b, DER_SEQUENCE, c.data, c.len); /* DistributionPoint */
    TC_GUARD(tc_buf_status(&b));
    tc_pki_der_put(out, DER_SEQUENCE, b.data, b.len);
    return tc_buf_status(out);
}

/* ----------------------------------------------------------- parsers */

static tc_err get_string(struct tc_cursor *c, uint8_t tag, size_t max, char *out)
{
    struct tc_cursor s;
    TC_GUARD(tc_pki_der_get(c, tag, &s));
    size_t n = tc_cursor_remaining(&s);
    TC_ENSURE_MSG(n >= 1 && n <= max, TC_ERR_FORMAT, "string of %zu bytes, expected 1..%zu", n,
                  max);
    TC_GUARD(tc_cursor_copy(&s, out, n));
    out[n] = '\0';
    TC_ENSURE_MSG(strlen(out) == n, TC_ERR_FORMAT, "string contains NUL");
    return TC_OK;
}

static tc_err expect_oid(struct tc_cursor *c, const uint8_t *oid, size_t n, const char *what)
{
    struct tc_cursor o;
    const uint8_t *p;
    TC_GUARD(tc_pki_der_get(c, DER_OID, &o));
    size_t got = tc_cursor_remaining(&o);
    TC_ENSURE_MSG(got == n, TC_ERR_VERIFY, "%s: unexpected OID", what);
    TC_GUARD(tc_cursor_view(&o, n, &p));
    TC_ENSURE_MSG(memcmp(p, oid, n) == 0, TC_ERR_VERIFY, "%s: unexpected OID", what);
    return TC_OK;
}

tc_err tc_pki_parse_hmn(const uint8_t *v, size_t n, uint8_t eid_bcd[static TC_PKI_EID_BCD_LEN])
{
    struct tc_cursor c, gns, on, val, hmn, sn;
    tc_cursor_init(&c, v, n);
    TC_GUARD(tc_pki_der_get(&c, DER_SEQUENCE, &gns));
    TC_GUARD(tc_cursor_expect_end(&c));
    /* The profile's SAN holds exactly one GeneralName: the otherName. */
    TC_GUARD(tc_pki_der_get(&gns, DER_CTX0_C, &on));
    TC_ENSURE_MSG(tc_cursor_remaining(&gns) == 0, TC_ERR_VERIFY,
                  "subjectAltName has more than the HardwareModuleName");
    TC_GUARD(expect_oid(&on, tc_pki_oid_hmn, sizeof tc_pki_oid_hmn, "subjectAltName otherName"));
    TC_GUARD(tc_pki_der_get(&on, DER_CTX0_C, &val));
    TC_GUARD(tc_cursor_expect_end(&on));
    TC_GUARD(tc_pki_der_get(&val, DER_SEQUENCE, &hmn));
    TC_GUARD(tc_cursor_expect_end(&val));
    TC_GUARD(expect_oid(&hmn, tc_pki_oid_hw_type, sizeof tc_pki_oid_hw_type,
                        "HardwareModuleName hwType"));
    TC_GUARD(tc_pki_der_get(&hmn, DER_OCTET_STRING, &sn));
    TC_GUARD(tc_cursor_expect_end(&hmn));
    TC_ENSURE_MSG(tc_cursor_remaining(&sn) == TC_PKI_EID_BCD_LEN, TC_ERR_VERIFY,
                  "hwSerialNum is not a 16-byte EID");
    return tc_cursor_copy(&sn, eid_bcd, TC_PKI_EID_BCD_LEN);
}

tc_err tc_pki_parse_mfg(const uint8_t *v, size_t n, char *batch_id, char *station_id,
                        int64_t *production_time)
{
    struct tc_cursor c, seq, gt;
    const uint8_t *p;
    tc_cursor_init(&c, v, n);
    TC_GUARD(tc_pki_der_get(&c, DER_SEQUENCE, &seq));
    TC_GUARD(tc_cursor_expect_end(&c));
    TC_GUARD(get_string(&seq, DER_UTF8STRING, TC_PKI_ID_MAX, batch_id));
    TC_GUARD(get_string(&seq, DER_UTF8STRING, TC_PKI_ID_MAX, station_id));
    TC_GUARD(tc_pki_der_get(&seq, DER_GENTIME, &gt));
    TC_GUARD(tc_cursor_expect_end(&seq));
    size_t gl = tc_cursor_remaining(&gt);
    TC_GUARD(tc_cursor_view(&gt, gl, &p));
    TC_GUARD(tc_pki_gentime_parse(p, gl, production_time));
    TC_ENSURE_MSG(tc_pki_id_ok(batch_id) && tc_pki_id_ok(station_id), TC_ERR_VERIFY,
                  "manufacturing info: batch or station ID not printable");
    return TC_OK;
}

tc_err tc_pki_parse_batch(const uint8_t *v, size_t n, char *batch_id, char *eid_prefix)
{
    struct tc_cursor c, seq;
    tc_cursor_init(&c, v, n);
    TC_GUARD(tc_pki_der_get(&c, DER_SEQUENCE, &seq));
    TC_GUARD(tc_cursor_expect_end(&c));
    TC_GUARD(get_string(&seq, DER_UTF8STRING, TC_PKI_ID_MAX, batch_id));
    TC_GUARD(get_string(&seq, DER_NUMERIC, 30, eid_prefix));
    TC_GUARD(tc_cursor_expect_end(&seq));
    TC_ENSURE_MSG(tc_pki_id_ok(batch_id), TC_ERR_VERIFY, "batch info: batch ID not printable");
    TC_ENSURE_MSG(tc_pki_eid_prefix_check(eid_prefix) == TC_OK, TC_ERR_VERIFY,
                  "batch info: EID prefix is not 1-30 digits");
    return TC_OK;
}
