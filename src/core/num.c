/* Numbers from the command line and config: decimal or 0x hex, whole string. */
#include <trustchain/core.h>

tc_err tc_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    TC_ENSURE(s != NULL && out != NULL, TC_ERR_ARG);
    unsigned base = 10;
    const char *p = s;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    TC_ENSURE_MSG(*p != '\0', TC_ERR_FORMAT, "'%s' is not a number", s);
    uint64_t v = 0;
    for (; *p != '\0'; p++) {
        unsigned d;
        if (*p >= '0' && *p <= '9')
            d = (unsigned)(*p - '0');
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = (unsigned)(*p - 'a' + 10);
        else if (base == 16 && *p >= 'A' && *p <= 'F')
            d = (unsigned)(*p - 'A' + 10);
        else
            return TC_FAIL(TC_ERR_FORMAT, "'%s' is not a %s number", s,
                           base == 16 ? "hex" : "decimal (or 0x hex)");
        TC_ENSURE_MSG(v <= (UINT64_MAX - d) / base, TC_ERR_RANGE, "'%s' is too large", s);
        v = v * base + d;
    }
    TC_ENSURE_MSG(v <= max, TC_ERR_RANGE, "'%s' is larger than %llu", s, (unsigned long long)max);
    *out = v;
    return TC_OK;
}
