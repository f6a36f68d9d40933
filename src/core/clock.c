/* clock.c: real clock and thread-safe UTC formatting (gmtime_r, never gmtime). */
#include "core/clock.h"

#include <string.h>
#include <time.h>

static int64_t
real_now_ms(const struct sp_clock *c)
{
    struct timespec ts;
    (void)c;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const struct sp_clock sp_clock_real = {real_now_ms};

int64_t
sp_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
sp_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
mono_now_ms(const struct sp_clock *c)
{
    (void)c;
    return sp_mono_ms();
}

const struct sp_clock sp_clock_mono = {mono_now_ms};

/* Year, month, day of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's
 * civil_from_days). Avoids gmtime_r and its locking on the hot path of every JSON answer. */
static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void
put_digits(char *out, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void
sp_time_iso(int64_t ms, char *out)
{
    int64_t secs = ms / 1000, days, year;
    int64_t millis = ms % 1000, sod;
    unsigned month, day;

    if (millis < 0) {
        millis += 1000;
        secs -= 1;
    }
    days = secs / 86400;
    sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    civil_from_days(days, &year, &month, &day);
    if (year < 0 || year > 9999)
        year = year < 0 ? 0 : 9999; /* outside ISO-8601's four digits: clamp, never overflow */
    put_digits(out, (unsigned)year, 4);
    out[4] = '-';
    put_digits(out + 5, month, 2);
    out[7] = '-';
    put_digits(out + 8, day, 2);
    out[10] = 'T';
    put_digits(out + 11, (unsigned)(sod / 3600), 2);
    out[13] = ':';
    put_digits(out + 14, (unsigned)(sod / 60 % 60), 2);
    out[16] = ':';
    put_digits(out + 17, (unsigned)(sod % 60), 2);
    out[19] = '.';
    put_digits(out + 20, (unsigned)millis, 3);
    out[23] = 'Z';
    out[24] = '\0';
}

/* Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Reads exactly n digits. */
static int
digits(const char **p, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (unsigned)(c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int
sp_time_parse(const char *s, int64_t *ms)
{
    unsigned y, mo, d, h, mi, se, frac = 0;
    int fdigits = 0;
    const char *p = s;

    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != ' '))
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (fdigits < 3) {
                frac = frac * 10 + (unsigned)(*p - '0');
                fdigits++;
            }
            p++;
        }
        while (fdigits > 0 && fdigits < 3) {
            frac *= 10;
            fdigits++;
        }
    }
    if (!(strcmp(p, "Z") == 0 || strcmp(p, "+00") == 0 || strcmp(p, "+00:00") == 0))
        return -1;
    *ms = (days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + se) * 1000 +
          frac;
    return 0;
}
