/*
 * Sanitizer settings for the HSM test programs (used only when they are
 * built with -fsanitize=address; otherwise these functions are never
 * called). SoftHSM2 2.6.1 leaks the ASN.1 string it decodes from
 * CKA_EC_PARAMS in C_Sign (see valgrind.supp); the suppression names the
 * module, so only allocations made inside SoftHSM2 are excused. The full
 * unwinder is needed because OpenSSL is built without frame pointers.
 */
const char *__asan_default_options(void);
const char *__lsan_default_suppressions(void);

const char *__asan_default_options(void)
{
    return "fast_unwind_on_malloc=0";
}

const char *__lsan_default_suppressions(void)
{
    return "leak:libsofthsm2.so\n";
}
