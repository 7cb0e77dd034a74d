/* Leveled logging to stderr. Callers never pass secret material. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <trustchain/core.h>

static int tc_log_level = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void tc_log_set_level(enum tc_log_level level)
{
    tc_log_level = (int)level;
}

enum tc_log_level tc_log_get_level(void)
{
    if (tc_log_level < 0) {
        tc_log_level = TC_LOG_WARN;
        const char *env = getenv("TRUSTCHAIN_LOG");
        for (size_t i = 0; env != NULL && i < TC_ARRAY_LEN(level_names); i++) {
            if (strcmp(env, level_names[i]) == 0)
                tc_log_level = (int)i;
        }
    }
    return (enum tc_log_level)tc_log_level;
}

bool tc_log_enabled(enum tc_log_level level)
{
    return level <= tc_log_get_level();
}

void tc_log(enum tc_log_level level, const char *fmt, ...)
{
    if (!tc_log_enabled(level))
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    struct timespec ts;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    (void)gmtime_r(&ts.tv_sec, &tm);
    (void)fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                  level_names[level < TC_ARRAY_LEN(level_names) ? level : 0], line);
}

const char *tc_version(void)
{
    return TC_VERSION;
}
