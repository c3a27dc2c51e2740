/* uuid.c - task ids. UUIDv7 (RFC 9562): 48-bit Unix ms, version, 74 random bits. Time-ordered
 * ids let a lookup start reading the results stream at the task's send time. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include "internal.h"

static void fill_random(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* getrandom() only fails before the pool is seeded on ancient kernels; the clock
             * still makes ids unique enough to be usable. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            for (; got < n; got++)
                buf[got] = (unsigned char)(ts.tv_nsec >> (got % 4 * 8)) ^ (unsigned char)got;
            return;
        }
        got += (size_t)r;
    }
}

static void format_uuid(const unsigned char b[16], char out[37])
{
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

void task__uuid7(char out[37])
{
    unsigned char b[16];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    fill_random(b + 6, 10);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    format_uuid(b, out);
}

void task__uuid4(char out[37])
{
    unsigned char b[16];
    fill_random(b, 16);
    b[6] = (unsigned char)(0x40 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    format_uuid(b, out);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int task__uuid7_time_ms(const char *s, uint64_t *ms)
{
    static const int dash[] = {8, 13, 18, 23};
    if (s == NULL || strlen(s) != 36)
        return TASK_EINVAL;
    for (int i = 0, d = 0; i < 36; i++) {
        if (d < 4 && i == dash[d]) {
            if (s[i] != '-')
                return TASK_EINVAL;
            d++;
        } else if (hexval(s[i]) < 0) {
            return TASK_EINVAL;
        }
    }
    if (s[14] != '7')
        return TASK_EINVAL;
    uint64_t v = 0;
    for (int i = 0; i < 13; i++) {
        if (i == 8)
            continue;
        v = (v << 4) | (uint64_t)hexval(s[i]);
    }
    *ms = v;
    return 0;
}
