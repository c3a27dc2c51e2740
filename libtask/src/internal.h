/*
 * internal.h - libtask internals shared by the library, taskd, taskctl and the unit tests.
 * Never installed. Non-static internal names start with task__.
 */
#ifndef TASK_INTERNAL_H
#define TASK_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>
#include <task/error.h>

/* Records code + message in `err` unless an error is already there (the first error wins).
 * `err` may be NULL. Returns `code`, for `return task__fail(err, TASK_EINVAL, "...")`. */
int task__fail(task_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int task__vfail(task_error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void task__error_clear(task_error *err);

/* ---- small helpers (jsonutil.c) ---- */

/* strdup that accepts NULL (returns NULL). */
char *task__strdup(const char *s);
/* Monotonic and wall clocks, seconds. */
double task__now_mono(void);
double task__now_wall(void);
/* Serialise compactly as UTF-8 (no slash escaping). Borrowed result valid until `o` changes. */
const char *task__json_str(json_object *o, size_t *len);
/* True if `s` (len bytes) is valid UTF-8 with no NUL bytes. */
bool task__utf8_valid(const char *s, size_t len);
/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF); NUL bytes allowed if asked. */
bool task__utf8_check(const char *s, size_t len, bool allow_nul);

/* ISO 8601 as Celery writes it: "2026-11-24T08:55:48.558101+00:00" (buf >= 40 bytes). */
void task__iso8601_format(double unix_s, char *buf, size_t size);
/* Reads "YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|+HH:MM|-HH:MM]"; no offset means UTC.
 * Returns 0 or TASK_EINVAL. */
int task__iso8601_parse(const char *s, double *unix_s);

/* ---- ids (uuid.c) ---- */

/* A new UUIDv7 (time-ordered) as 36 characters + NUL into out[37]. Uses getrandom(). */
void task__uuid7(char out[37]);
/* A new UUIDv4. */
void task__uuid4(char out[37]);
/* The Unix time (ms) in a UUIDv7's first 48 bits; returns 0 and sets *ms, or TASK_EINVAL if `s`
 * is not a version-7 UUID. */
int task__uuid7_time_ms(const char *s, uint64_t *ms);

/* ---- broker URLs (url.c) ---- */

struct task__url {
    bool tls;
    char host[256];
    int port;
    char user[128];
    char password[128];
    char vhost[128];
};
/* Parses amqp[s]://[user[:password]@]host[:port][/vhost] as Celery/kombu read it: no path, "/"
 * and "//" all mean vhost "/"; "/%2F" too; "/name" is vhost "name". Percent-escapes decoded.
 * Defaults: guest/guest, port 5672 (5671 for amqps). Returns 0 or TASK_EINVAL (message in err,
 * never containing the password). */
int task__url_parse(const char *text, struct task__url *out, task_error *err);
/* Writes `text` with any password replaced by "***" into buf. */
void task__url_redact(const char *text, char *buf, size_t size);

#endif
