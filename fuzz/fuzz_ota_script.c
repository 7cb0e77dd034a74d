/*
 * libFuzzer target for the GP Amendment B script bodies: the input is
 * decoded as a command script and as a response script; whatever decodes
 * must re-encode to a script that decodes to the same APDUs (a command
 * script byte for byte).
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/ota.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t scratch[TC_OTA_SCRIPT_BYTES_MAX + 64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tc_ota_bytes a[TC_OTA_SCRIPT_MAX], b[TC_OTA_SCRIPT_MAX];
    size_t n = 0, m = 0, executed = 0, e2 = 0;
    struct tc_buf out;
    if (tc_ota_script_decode(data, size, a, &n) == TC_OK) {
        tc_buf_init_fixed(&out, scratch, sizeof scratch);
        if (tc_ota_script_encode(a, n, &out) != TC_OK || out.len != size ||
            memcmp(out.data, data, size) != 0)
            abort();
    }
    if (tc_ota_response_decode(data, size, a, &n, &executed) == TC_OK) {
        if (executed != n)
            abort();
        tc_buf_init_fixed(&out, scratch, sizeof scratch);
        if (tc_ota_response_encode(a, n, &out) != TC_OK ||
            tc_ota_response_decode(out.data, out.len, b, &m, &e2) != TC_OK || m != n || e2 != n)
            abort();
        for (size_t i = 0; i < n; i++)
            if (a[i].len != b[i].len || memcmp(a[i].p, b[i].p, a[i].len) != 0)
                abort();
    }
    return 0;
}
