/*
 * libFuzzer target for the SE vendor's transport key file parser: arbitrary
 * bytes never crash it, and on success the three keys have the length it
 * reports and are not all zero-length; on failure the outputs are wiped.
 */
#include <stdlib.h>
#include <string.h>

#include <trustchain/hsm.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t enc[TC_AES_MAX_KEY], mac[TC_AES_MAX_KEY], dek[TC_AES_MAX_KEY];
    static const uint8_t zero[TC_AES_MAX_KEY];
    size_t key_len = 0;
    memset(enc, 0xA5, sizeof enc);
    memset(mac, 0xA5, sizeof mac);
    memset(dek, 0xA5, sizeof dek);
    tc_err rc = tc_hsm_transport_keyfile_parse(data, size, enc, mac, dek, &key_len);
    if (rc == TC_OK) {
        if (key_len != 16 && key_len != 32)
            abort();
    } else if (memcmp(enc, zero, sizeof enc) != 0 || memcmp(mac, zero, sizeof mac) != 0 ||
               memcmp(dek, zero, sizeof dek) != 0) {
        abort(); /* a failed parse must not leave key material behind */
    }
    tc_memzero(enc, sizeof enc);
    tc_memzero(mac, sizeof mac);
    tc_memzero(dek, sizeof dek);
    return 0;
}
