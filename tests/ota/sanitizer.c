/*
 * Sanitizer settings for the OTA tests that use SoftHSM2 (only called in
 * -fsanitize=address builds). SoftHSM2 2.6.1 leaks inside the module; the
 * suppression names the module, so only its own allocations are excused.
 * The full unwinder is needed because OpenSSL has no frame pointers.
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
