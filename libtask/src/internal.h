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

/* Fields of JSON read from outside (a message, a stream record, an HTTP answer). Each returns
 * the field only when `obj` is an object and the field is there with that type (JSON null, a
 * number where a string belongs, ...: NULL), so no caller meets json-c's coercions or a NULL
 * from a null. A string with a NUL byte inside is no string (a C reader would cut it short).
 * Results are borrowed from `obj`. */
json_object *task__json_get(json_object *obj, const char *key, json_type type);
const char *task__json_get_str(json_object *obj, const char *key);
json_object *task__json_get_obj(json_object *obj, const char *key);
json_object *task__json_get_arr(json_object *obj, const char *key);
/* 0 and *out, or TASK_EPROTO when the field is missing or not an integer (out untouched). */
int task__json_get_int(json_object *obj, const char *key, int64_t *out);
/* True only for a JSON true. */
bool task__json_get_bool(json_object *obj, const char *key);
/* Element i of an array when it is a string, else NULL. */
const char *task__json_idx_str(json_object *arr, size_t i);

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

/* The longest password task__url_parse() keeps (with its NUL). */
#define TASK__URL_PASSWORD_MAX 128

struct task__url {
    bool tls;
    char host[256];
    int port;
    char user[128];
    char password[TASK__URL_PASSWORD_MAX];
    char vhost[128];
    /* From the query string, kombu's names; unset: "" or -1 (the config's value applies). */
    char ssl_ca_certs[512];    /* ssl_ca_certs=PATH */
    char ssl_certfile[512];    /* ssl_certfile=PATH: client certificate (mutual TLS) */
    char ssl_keyfile[512];     /* ssl_keyfile=PATH */
    int ssl_verify;            /* ssl_cert_reqs=required|optional (1), none (0) */
    int ssl_check_hostname;    /* ssl_check_hostname=true|false (taskd's; kombu passes it on) */
    int login_external;        /* login_method=EXTERNAL (1), PLAIN or AMQPLAIN (0) */
    int heartbeat;             /* heartbeat=SECONDS */
};
/* Parses amqp[s]://[user[:password]@]host[:port][/vhost][?query] as Celery/kombu read it: no
 * path, "/" and "//" all mean vhost "/"; "/%2F" too; "/name" is vhost "name". Percent-escapes
 * decoded. Defaults: guest/guest, port 5672 (5671 for amqps). The query takes kombu's names
 * (ssl_ca_certs, ssl_certfile, ssl_keyfile, ssl_cert_reqs, login_method, heartbeat; also
 * ssl_check_hostname); as in kombu, any ssl_* parameter turns TLS on. Any other name is an
 * error rather than silently dropped. Returns 0 or TASK_EINVAL (message in err, never
 * containing the password). */
int task__url_parse(const char *text, struct task__url *out, task_error *err);
/* Writes `text` with any password replaced by "***" into buf. */
void task__url_redact(const char *text, char *buf, size_t size);
/* Writes `text` with its password set to `password` (percent-encoded) into buf: the URL's user
 * stays (none: "guest"). 0, or -1 when `text` has no scheme or buf is too small. */
int task__url_with_password(const char *text, const char *password, char *buf, size_t size);
/* Overwrites the password of URL `text` in place with "***" (shorter passwords: as many '*'),
 * moving the rest left and padding with NULs: for argv, so that ps shows no password. Returns
 * 1 when there was a password, else 0. */
int task__url_scrub(char *text);

/* ---- records read back from streams (stream_reader.c, stream.c, lookup.c) ---- */

/* The longest task id kept from a record or a control request: an AMQP short string. */
#define TASK__ID_MAX 255

struct task__conn;
struct task__replies;

/* One stream message body (JSON text, len bytes): a record or an array of records. fn(rec, ud)
 * runs for each record object that is not a marker; *marker_seen is set on a marker record equal
 * to `marker` (NULL: none). Records that are not objects, markers that are not strings and a body
 * that is not JSON are skipped and added to *rejected. 0, or TASK_EPROTO for a body that is not
 * JSON. */
int task__stream_body(const void *body, size_t len, const char *marker,
                      void (*fn)(json_object *rec, void *ud), void *ud, bool *marker_seen,
                      unsigned *rejected);
/* The task id of a taskd.revoked record (borrowed), or NULL when the record has no string
 * task_id of 1..TASK__ID_MAX bytes. */
const char *task__revoked_record_id(json_object *rec);
/* Read stream `name` on channel `ch` (opened and closed here) from `since_s` (Unix seconds; 0:
 * from the first record) up to a marker of its own, calling fn for every record
 * (task__stream_body()); *rejected counts the records skipped as malformed. 0, TASK_ETIMEDOUT
 * (the marker did not come back within timeout_ms; records read so far were delivered) or a
 * connection error. Frames for other channels are dropped, so call it before anything else
 * consumes on the connection. The stream reader's (stream_reader.h). */
int task__stream_replay_counted(struct task__conn *c, uint16_t ch, const char *name,
                                double since_s, int timeout_ms,
                                void (*fn)(json_object *rec, void *ud), void *ud,
                                unsigned *rejected);

/* One results-stream message body read for task `id` (lookup.c): the state records of `id` go into
 * `replies` (task__replies_put()), *final_seen is set at its first final state, *marker_seen
 * at the marker record `marker` ("" or NULL: none). Records of other ids are skipped; malformed
 * ones (not an object, task_id or status not a string, a marker that is not a string) are
 * skipped and added to *rejected. 0, or TASK_EPROTO when the body is not JSON. */
int task__results_body(const void *body, size_t len, const char *id, const char *marker,
                       struct task__replies *replies, bool *marker_seen, bool *final_seen,
                       unsigned *rejected);

#endif
