/*
 * Sanitizer settings for the station tests (used only under
 * -fsanitize=address). SoftHSM2 2.6.1 leaks the ASN.1 string it decodes from
 * CKA_EC_PARAMS in C_Sign (tests/hsm/valgrind.supp says which); only
 * allocations inside libsofthsm2 are excused. The full unwinder is needed
 * because OpenSSL is built without frame pointers.
 *
 * The se module keeps one SHA-256 digest context per thread (src/se/ec.c,
 * se_sha256) and frees none when a thread ends; the batch runner's worker
 * threads each leave one. It is excused by name here until the se module
 * frees it at thread exit (reported to its owner); nothing else is.
 */
const char *__asan_default_options(void);
const char *__lsan_default_suppressions(void);

const char *__asan_default_options(void)
{
    return "fast_unwind_on_malloc=0";
}

const char *__lsan_default_suppressions(void)
{
    return "leak:libsofthsm2.so\nleak:se_sha256\n";
}
