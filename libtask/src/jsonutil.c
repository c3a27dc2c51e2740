/* jsonutil.c - small helpers: clocks, strings, UTF-8, JSON text, Celery's ISO 8601 times. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal.h"

char *task__strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

double task__now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double task__now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *task__json_str(json_object *o, size_t *len)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (len != NULL)
        *len = n;
    return s;
}

bool task__utf8_valid(const char *s, size_t len)
{
    return task__utf8_check(s, len, false);
}

bool task__utf8_check(const char *s, size_t len, bool allow_nul)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c == 0 && !allow_nul)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned min;
        if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (p[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

void task__iso8601_format(double unix_s, char *buf, size_t size)
{
    time_t secs = (time_t)unix_s;
    long usec = (long)((unix_s - (double)secs) * 1e6 + 0.5);
    if (usec >= 1000000) {
        secs++;
        usec -= 1000000;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06ld+00:00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
}

/* Reads exactly `n` digits; returns the value or -1. */
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    return v;
}

static int expect(const char **p, char c)
{
    if (**p != c)
        return -1;
    (*p)++;
    return 0;
}

int task__iso8601_parse(const char *s, double *unix_s)
{
    if (s == NULL)
        return TASK_EINVAL;
    const char *p = s;
    struct tm tm = {0};
    int y = digits(&p, 4);
    if (y < 0 || expect(&p, '-') != 0)
        return TASK_EINVAL;
    int mo = digits(&p, 2);
    if (mo < 1 || mo > 12 || expect(&p, '-') != 0)
        return TASK_EINVAL;
    int d = digits(&p, 2);
    if (d < 1 || d > 31 || (*p != 'T' && *p != ' ' && *p != 't'))
        return TASK_EINVAL;
    p++;
    int h = digits(&p, 2);
    if (h < 0 || h > 23 || expect(&p, ':') != 0)
        return TASK_EINVAL;
    int mi = digits(&p, 2);
    if (mi < 0 || mi > 59)
        return TASK_EINVAL;
    int sec = 0;
    double frac = 0;
    if (*p == ':') {
        p++;
        sec = digits(&p, 2);
        if (sec < 0 || sec > 60)
            return TASK_EINVAL;
        if (*p == '.' || *p == ',') {
            p++;
            double scale = 0.1;
            if (*p < '0' || *p > '9')
                return TASK_EINVAL;
            while (*p >= '0' && *p <= '9') {
                frac += (*p - '0') * scale;
                scale /= 10;
                p++;
            }
        }
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        p++;
        int oh = digits(&p, 2);
        if (oh < 0 || oh > 23)
            return TASK_EINVAL;
        if (*p == ':')
            p++;
        int om = digits(&p, 2);
        if (om < 0 || om > 59)
            return TASK_EINVAL;
        offset = sign * (oh * 3600L + om * 60L);
    }
    if (*p != '\0')
        return TASK_EINVAL;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    /* timegm normalises 31 Feb into March; a real date must come back unchanged. */
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mday != d && sec != 60)
        return TASK_EINVAL;
    *unix_s = (double)t - (double)offset + frac;
    return 0;
}

/* ---- fields of JSON read from outside ----
 * json_object_object_get_ex() succeeds with a NULL value for JSON null, and json-c's getters
 * coerce (a number reads as a string, an array as "[...]"), so every reader of outside JSON
 * goes through these: a field is either there with the expected type, or not there at all. */

json_object *task__json_get(json_object *obj, const char *key, json_type type)
{
    json_object *v = NULL;
    if (!json_object_is_type(obj, json_type_object) || key == NULL ||
        !json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, type))
        return NULL;
    return v;
}

/* The text of string `v` when it is a whole C string: "a\u0000b" would be read as "a" (a
 * revoke of one id turning into a revoke of another). NULL otherwise. */
static const char *whole_str(json_object *v)
{
    if (!json_object_is_type(v, json_type_string))
        return NULL;
    const char *s = json_object_get_string(v);
    return strlen(s) == (size_t)json_object_get_string_len(v) ? s : NULL;
}

const char *task__json_get_str(json_object *obj, const char *key)
{
    return whole_str(task__json_get(obj, key, json_type_string));
}

json_object *task__json_get_obj(json_object *obj, const char *key)
{
    return task__json_get(obj, key, json_type_object);
}

json_object *task__json_get_arr(json_object *obj, const char *key)
{
    return task__json_get(obj, key, json_type_array);
}

int task__json_get_int(json_object *obj, const char *key, int64_t *out)
{
    json_object *v = task__json_get(obj, key, json_type_int);
    if (v == NULL)
        return TASK_EPROTO;
    *out = json_object_get_int64(v);
    return 0;
}

bool task__json_get_bool(json_object *obj, const char *key)
{
    return json_object_get_boolean(task__json_get(obj, key, json_type_boolean)) != 0;
}

const char *task__json_idx_str(json_object *arr, size_t i)
{
    if (!json_object_is_type(arr, json_type_array) || i >= json_object_array_length(arr))
        return NULL;
    return whole_str(json_object_array_get_idx(arr, i));
}
