/*
 * codec.c - task messages in Celery protocol v2 (JSON), as Celery 5.2 writes and reads them
 * (shared/celery-protocol.md section 3). Decoding refuses every malformed shape with its own
 * reason; it never asserts on input.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "codec.h"
#include "task_limits.h"

#define DEFAULT_MAX_BODY TASK__MAX_MESSAGE_BYTES
#define DEFAULT_MAX_DEPTH TASK__JSON_MAX_DEPTH
#define REPR_MAX 1024

static const char *const bad_slugs[] = {
#define TASK_X_SLUG(sym, slug) slug,
    TASK_BAD_MAP(TASK_X_SLUG)
#undef TASK_X_SLUG
};

const char *task__bad_slug(enum task__bad b)
{
    return (unsigned)b < TASK_BAD__COUNT ? bad_slugs[b] : "unknown";
}

void task__msg_clear(struct task__msg *m)
{
    char **strs[] = {&m->lang, &m->task, &m->id, &m->shadow, &m->group, &m->root_id,
                     &m->parent_id, &m->argsrepr, &m->kwargsrepr, &m->origin,
                     &m->correlation_id, &m->reply_to};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    json_object *objs[] = {m->args, m->kwargs, m->callbacks, m->errbacks, m->chain, m->chord};
    for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++)
        json_object_put(objs[i]);
    m->args = m->kwargs = m->callbacks = m->errbacks = m->chain = m->chord = NULL;
}

/* ---------------------------------------------------------------- encoding */

static amqp_field_value_t fv_str(const char *s)
{
    amqp_field_value_t v;
    memset(&v, 0, sizeof(v));
    if (s == NULL) {
        v.kind = AMQP_FIELD_KIND_VOID;
    } else {
        v.kind = AMQP_FIELD_KIND_UTF8;
        v.value.bytes = amqp_cstring_bytes(s);
    }
    return v;
}

static amqp_field_value_t fv_num(double s)
{
    amqp_field_value_t v;
    memset(&v, 0, sizeof(v));
    if (s <= 0) {
        v.kind = AMQP_FIELD_KIND_VOID;
    } else if (s <= INT32_MAX && s == (double)(int32_t)s) { /* the cast of 1e300 is UB */
        v.kind = AMQP_FIELD_KIND_I32;
        v.value.i32 = (int32_t)s;
    } else {
        v.kind = AMQP_FIELD_KIND_F64;
        v.value.f64 = s;
    }
    return v;
}

/* A display string of `o` as Celery's argsrepr is: for people, at most 1024 characters. */
static char *repr_of(json_object *o, const char *empty)
{
    const char *s = o ? task__json_str(o, NULL) : empty;
    size_t n = strlen(s);
    if (n > REPR_MAX)
        n = REPR_MAX;
    /* Never cut a UTF-8 sequence in half: the header must stay valid UTF-8. */
    while (n > 0 && n < strlen(s) && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return strndup(s, n);
}

static json_object *body_of(const struct task__msg *m)
{
    json_object *body = json_object_new_array_ext(3);
    json_object *embed = json_object_new_object();
    if (body == NULL || embed == NULL) {
        json_object_put(body);
        json_object_put(embed);
        return NULL;
    }
    json_object_array_add(body, m->args ? json_object_get(m->args) : json_object_new_array());
    json_object_array_add(body,
                          m->kwargs ? json_object_get(m->kwargs) : json_object_new_object());
    json_object_object_add(embed, "callbacks", json_object_get(m->callbacks));
    json_object_object_add(embed, "errbacks", json_object_get(m->errbacks));
    json_object_object_add(embed, "chain", json_object_get(m->chain));
    json_object_object_add(embed, "chord", json_object_get(m->chord));
    json_object_array_add(body, embed);
    return body;
}

int task__msg_encode(const struct task__msg *m, struct task__wire *w, task_error *err)
{
    memset(w, 0, sizeof(*w));
    if (m->id == NULL || m->id[0] == '\0' || m->task == NULL || m->task[0] == '\0')
        return task__fail(err, TASK_EINVAL, "task message needs an id and a task name");
    w->id = strdup(m->id);
    w->correlation_id = strdup(m->correlation_id ? m->correlation_id : m->id);
    w->argsrepr = m->argsrepr ? NULL : repr_of(m->args, "[]");
    w->kwargsrepr = m->kwargsrepr ? NULL : repr_of(m->kwargs, "{}");
    json_object *body = body_of(m);
    if (body != NULL) {
        size_t len;
        const char *text = task__json_str(body, &len);
        w->body = malloc(len + 1);
        if (w->body != NULL) {
            memcpy(w->body, text, len + 1);
            w->body_len = len;
        }
        json_object_put(body);
    }
    if (w->body == NULL || w->id == NULL || w->correlation_id == NULL ||
        (!m->argsrepr && !w->argsrepr) || (!m->kwargsrepr && !w->kwargsrepr)) {
        task__wire_free(w);
        return task__fail(err, TASK_ENOMEM, "encode task message");
    }
    if (m->origin == NULL) {
        char host[256] = "localhost";
        gethostname(host, sizeof(host) - 1);
        snprintf(w->origin_buf, sizeof(w->origin_buf), "gen%d@%s", (int)getpid(), host);
    }
    if (m->eta > 0)
        task__iso8601_format(m->eta, w->eta_buf, sizeof(w->eta_buf));
    if (m->expires > 0)
        task__iso8601_format(m->expires, w->expires_buf, sizeof(w->expires_buf));

    static const char *const keys[] = {"lang", "task", "id", "shadow", "eta", "expires", "group",
                                       "group_index", "retries", "timelimit", "root_id",
                                       "parent_id", "argsrepr", "kwargsrepr", "origin",
                                       "ignore_result"};
    amqp_field_value_t vals[16];
    vals[0] = fv_str(m->lang ? m->lang : "c");
    vals[1] = fv_str(m->task);
    vals[2] = fv_str(w->id);
    vals[3] = fv_str(m->shadow);
    vals[4] = fv_str(m->eta > 0 ? w->eta_buf : NULL);
    vals[5] = fv_str(m->expires > 0 ? w->expires_buf : NULL);
    vals[6] = fv_str(m->group);
    vals[7].kind = m->group_index >= 0 ? AMQP_FIELD_KIND_I32 : AMQP_FIELD_KIND_VOID;
    vals[7].value.i32 = m->group_index;
    vals[8].kind = AMQP_FIELD_KIND_I32;
    vals[8].value.i32 = m->retries;
    w->timelimit[0] = fv_num(m->timelimit_hard);
    w->timelimit[1] = fv_num(m->timelimit_soft);
    vals[9].kind = AMQP_FIELD_KIND_ARRAY;
    vals[9].value.array.num_entries = 2;
    vals[9].value.array.entries = w->timelimit;
    vals[10] = fv_str(m->root_id ? m->root_id : w->id);
    vals[11] = fv_str(m->parent_id);
    vals[12] = fv_str(m->argsrepr ? m->argsrepr : w->argsrepr);
    vals[13] = fv_str(m->kwargsrepr ? m->kwargsrepr : w->kwargsrepr);
    vals[14] = fv_str(m->origin ? m->origin : w->origin_buf);
    vals[15].kind = AMQP_FIELD_KIND_BOOLEAN;
    vals[15].value.boolean = m->ignore_result;
    for (int i = 0; i < 16; i++) {
        w->hdr[i].key = amqp_cstring_bytes(keys[i]);
        w->hdr[i].value = vals[i];
    }

    amqp_basic_properties_t *p = &w->props;
    *p = task__json_props((amqp_table_t){.num_entries = 16, .entries = w->hdr},
                          (uint8_t)(m->delivery_mode ? m->delivery_mode : 2));
    p->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    p->priority = (uint8_t)m->priority;
    p->correlation_id = amqp_cstring_bytes(w->correlation_id);
    if (m->reply_to != NULL && m->reply_to[0] != '\0') {
        p->_flags |= AMQP_BASIC_REPLY_TO_FLAG;
        p->reply_to = amqp_cstring_bytes(m->reply_to);
    }
    if (m->expires > 0) {
        /* Celery also sets the per-message TTL, so the broker drops it unconsumed. */
        double ms = (m->expires - task__now_wall()) * 1000.0;
        snprintf(w->expiration_buf, sizeof(w->expiration_buf), "%lld",
                 ms > 0 ? (long long)ms : 0LL);
        p->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
        p->expiration = amqp_cstring_bytes(w->expiration_buf);
    }
    return 0;
}

void task__wire_free(struct task__wire *w)
{
    free(w->body);
    free(w->argsrepr);
    free(w->kwargsrepr);
    free(w->id);
    free(w->correlation_id);
    w->body = w->argsrepr = w->kwargsrepr = w->id = w->correlation_id = NULL;
}

amqp_basic_properties_t task__json_props(amqp_table_t headers, uint8_t delivery_mode)
{
    return (amqp_basic_properties_t){
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
                  AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                  AMQP_BASIC_PRIORITY_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .content_encoding = amqp_cstring_bytes("utf-8"),
        .headers = headers,
        .delivery_mode = delivery_mode,
    };
}

/* ---------------------------------------------------------------- decoding */

/*
 * json-c, even with JSON_TOKENER_STRICT, takes 'single-quoted' strings, raw control characters
 * inside strings and "1." for a number. Python's json.loads (so a Celery worker) refuses them,
 * and a message taskd runs must be one Celery would run: returns the offset of the first such
 * byte, or len.
 */
static size_t lax_json_at(const char *s, size_t len)
{
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (in_str) {
            if (c == '\\')
                i++; /* the escaped byte cannot end the string */
            else if (c == '"')
                in_str = false;
            else if (c < 0x20)
                return i;
            continue;
        }
        if (c == '"')
            in_str = true;
        else if (c == '\'')
            return i;
        else if (c == '.' && (i + 1 == len || s[i + 1] < '0' || s[i + 1] > '9'))
            return i;
    }
    return len;
}

json_object *task__json_parse(const void *text, size_t len, int max_depth, enum task__bad *reason,
                              task_error *err)
{
    if (len > (size_t)INT32_MAX) {
        *reason = TASK_BAD_TOO_BIG;
        task__fail(err, TASK_EPROTO, "body of %zu bytes is too large to parse", len);
        return NULL;
    }
    *reason = TASK_BAD_NONE;
    /* json-c lets UTF-8-encoded surrogates through; Python's decoder (and so a Celery worker)
     * does not, so check strictly first. NULs are left for the parser to refuse. */
    if (!task__utf8_check(text, len, true)) {
        *reason = TASK_BAD_BAD_UTF8;
        task__fail(err, TASK_EPROTO, "body: invalid UTF-8");
        return NULL;
    }
    size_t lax = lax_json_at(text, len);
    if (lax < len) {
        *reason = TASK_BAD_NOT_JSON;
        task__fail(err, TASK_EPROTO, "body: not strict JSON at byte %zu", lax);
        return NULL;
    }
    json_tokener *tok = json_tokener_new_ex(max_depth > 0 ? max_depth : DEFAULT_MAX_DEPTH);
    if (tok == NULL) {
        *reason = TASK_BAD__COUNT;
        task__fail(err, TASK_ENOMEM, "json tokener");
        return NULL;
    }
    /* Strict: no trailing commas, comments, leading zeros or TRUE; trailing bytes are
     * checked below, where the message can say so. */
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
                                    JSON_TOKENER_VALIDATE_UTF8);
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    bool at_end = jerr == json_tokener_continue && used == len;
    if (at_end) {
        /* A bare top-level literal ("null", "12") is complete only at the end of input; a NUL
         * tells the tokener that the input ended. */
        o = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
    }
    if (jerr == json_tokener_success) {
        /* Only white space may follow the value. */
        const char *s = text;
        while (used < len && strchr(" \t\r\n", s[used]) != NULL && s[used] != '\0')
            used++;
        if (used != len) {
            json_object_put(o);
            o = NULL;
            *reason = TASK_BAD_NOT_JSON;
            task__fail(err, TASK_EPROTO, "body: trailing data after the JSON value at byte %zu",
                       used);
        }
    } else {
        *reason = jerr == json_tokener_error_depth               ? TASK_BAD_TOO_DEEP
                  : jerr == json_tokener_error_parse_utf8_string ? TASK_BAD_BAD_UTF8
                                                                 : TASK_BAD_NOT_JSON;
        if (at_end && jerr != json_tokener_error_depth &&
            jerr != json_tokener_error_parse_utf8_string)
            task__fail(err, TASK_EPROTO, "body: truncated JSON (%zu bytes)", len);
        else
            task__fail(err, TASK_EPROTO, "body: %s at byte %zu", json_tokener_error_desc(jerr),
                       used);
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static const amqp_field_value_t *header(const amqp_basic_properties_t *p, const char *key)
{
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return NULL;
    size_t klen = strlen(key);
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        if (e->key.len == klen && memcmp(e->key.bytes, key, klen) == 0)
            return &e->value;
    }
    return NULL;
}

static char *bytes_str(amqp_bytes_t b)
{
    char *s = malloc(b.len + 1);
    if (s != NULL) {
        memcpy(s, b.bytes, b.len);
        s[b.len] = '\0';
    }
    return s;
}

static bool get_int(const amqp_field_value_t *v, long long *out)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8: *out = v->value.i8; return true;
    case AMQP_FIELD_KIND_U8: *out = v->value.u8; return true;
    case AMQP_FIELD_KIND_I16: *out = v->value.i16; return true;
    case AMQP_FIELD_KIND_U16: *out = v->value.u16; return true;
    case AMQP_FIELD_KIND_I32: *out = v->value.i32; return true;
    case AMQP_FIELD_KIND_U32: *out = v->value.u32; return true;
    case AMQP_FIELD_KIND_I64: *out = v->value.i64; return true;
    case AMQP_FIELD_KIND_U64:
        if (v->value.u64 > (uint64_t)INT64_MAX)
            return false;
        *out = (long long)v->value.u64;
        return true;
    default: return false;
    }
}

static bool get_number(const amqp_field_value_t *v, double *out)
{
    long long i;
    if (get_int(v, &i)) {
        *out = (double)i;
        return true;
    }
    if (v->kind == AMQP_FIELD_KIND_F32) {
        *out = v->value.f32;
        return true;
    }
    if (v->kind == AMQP_FIELD_KIND_F64) {
        *out = v->value.f64;
        return true;
    }
    return false;
}

struct dec {
    const amqp_basic_properties_t *p;
    struct task__msg *m;
    enum task__bad *reason;
    task_error *err;
};

static int refuse(struct dec *d, enum task__bad why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct dec *d, enum task__bad why, const char *fmt, ...)
{
    *d->reason = why;
    va_list ap;
    va_start(ap, fmt);
    task__vfail(d->err, TASK_EPROTO, fmt, ap);
    va_end(ap);
    return TASK_EPROTO;
}

/*
 * A string header: absent or void leave *out NULL; anything but a UTF-8 string (AMQP 'S') is
 * refused, as is invalid UTF-8. A Python worker receiving bytes ('x') here crashes.
 */
static int str_header(struct dec *d, const char *key, char **out, enum task__bad missing)
{
    const amqp_field_value_t *v = header(d->p, key);
    if (v == NULL || v->kind == AMQP_FIELD_KIND_VOID) {
        if (missing != TASK_BAD_NONE)
            return refuse(d, missing, "header '%s' is missing", key);
        return 0;
    }
    if (v->kind != AMQP_FIELD_KIND_UTF8)
        return refuse(d, TASK_BAD_BAD_HEADER, "header '%s': expected a UTF-8 string (S), got "
                      "AMQP kind '%c'", key, (char)v->kind);
    /* Celery's argsrepr/kwargsrepr keep raw NULs from the arguments (display only: we keep
     * the text up to the first NUL); names and ids must be clean C strings. */
    bool display = strcmp(key, "argsrepr") == 0 || strcmp(key, "kwargsrepr") == 0;
    if (!task__utf8_check(v->value.bytes.bytes, v->value.bytes.len, display))
        return refuse(d, TASK_BAD_BAD_HEADER, "header '%s': invalid UTF-8 or a NUL byte", key);
    if (missing != TASK_BAD_NONE && v->value.bytes.len == 0)
        return refuse(d, missing, "header '%s' is empty", key);
    free(*out);
    *out = bytes_str(v->value.bytes);
    if (*out == NULL)
        return task__fail(d->err, TASK_ENOMEM, "header '%s'", key);
    return 0;
}

static int time_header(struct dec *d, const char *key, double *out, enum task__bad why)
{
    char *text = NULL;
    int rc = str_header(d, key, &text, TASK_BAD_NONE);
    if (rc != 0 || text == NULL)
        return rc;
    if (task__iso8601_parse(text, out) != 0) {
        rc = refuse(d, why, "header '%s': '%.60s' is not an ISO 8601 time", key, text);
    } else if (*out <= 0) {
        *out = 1e-9; /* before 1970: long past (0 would read as "no time at all") */
    }
    free(text);
    return rc;
}

static int int_header(struct dec *d, const char *key, int *out, int if_void)
{
    const amqp_field_value_t *v = header(d->p, key);
    long long i;
    if (v == NULL || v->kind == AMQP_FIELD_KIND_VOID) {
        *out = if_void;
        return 0;
    }
    if (!get_int(v, &i))
        return refuse(d, TASK_BAD_BAD_HEADER, "header '%s': expected an integer, got AMQP kind "
                      "'%c'", key, (char)v->kind);
    if (i < 0 || i > INT32_MAX)
        return refuse(d, TASK_BAD_BAD_HEADER, "header '%s': %lld is out of range", key, i);
    *out = (int)i;
    return 0;
}

static int timelimit_header(struct dec *d)
{
    const amqp_field_value_t *v = header(d->p, "timelimit");
    if (v == NULL || v->kind == AMQP_FIELD_KIND_VOID)
        return 0;
    if (v->kind != AMQP_FIELD_KIND_ARRAY || v->value.array.num_entries != 2)
        return refuse(d, TASK_BAD_BAD_HEADER, "header 'timelimit': expected [hard, soft]");
    double *dst[2] = {&d->m->timelimit_hard, &d->m->timelimit_soft};
    for (int i = 0; i < 2; i++) {
        const amqp_field_value_t *e = &v->value.array.entries[i];
        if (e->kind == AMQP_FIELD_KIND_VOID)
            continue;
        /* NaN and infinity are no number of seconds either; large finite values are kept */
        if (!get_number(e, dst[i]) || !isfinite(*dst[i]) || *dst[i] < 0)
            return refuse(d, TASK_BAD_BAD_HEADER, "header 'timelimit': element %d is not a "
                          "number of seconds", i);
    }
    return 0;
}

static int bool_header(struct dec *d, const char *key, bool *out)
{
    const amqp_field_value_t *v = header(d->p, key);
    if (v == NULL || v->kind == AMQP_FIELD_KIND_VOID)
        return 0;
    if (v->kind != AMQP_FIELD_KIND_BOOLEAN)
        return refuse(d, TASK_BAD_BAD_HEADER, "header '%s': expected a boolean", key);
    *out = v->value.boolean != 0;
    return 0;
}

/* Reads id, task, reply_to and correlation_id leniently, before any check can fail, so a
 * refused message can still be answered. */
static void read_address(struct dec *d)
{
    const amqp_basic_properties_t *p = d->p;
    struct task__msg *m = d->m;
    const char *keys[] = {"id", "task"};
    char **dst[] = {&m->id, &m->task};
    for (int i = 0; i < 2; i++) {
        const amqp_field_value_t *v = header(p, keys[i]);
        if (v != NULL && v->kind == AMQP_FIELD_KIND_UTF8 && v->value.bytes.len > 0 &&
            task__utf8_valid(v->value.bytes.bytes, v->value.bytes.len))
            *dst[i] = bytes_str(v->value.bytes);
    }
    if ((p->_flags & AMQP_BASIC_REPLY_TO_FLAG) && p->reply_to.len > 0 &&
        task__utf8_valid(p->reply_to.bytes, p->reply_to.len))
        m->reply_to = bytes_str(p->reply_to);
    if ((p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) && p->correlation_id.len > 0 &&
        task__utf8_valid(p->correlation_id.bytes, p->correlation_id.len))
        m->correlation_id = bytes_str(p->correlation_id);
    if (p->_flags & AMQP_BASIC_PRIORITY_FLAG)
        m->priority = p->priority;
    if (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG)
        m->delivery_mode = p->delivery_mode;
}

static int check_content(struct dec *d)
{
    const amqp_basic_properties_t *p = d->p;
    if (!(p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG))
        return refuse(d, TASK_BAD_CONTENT_TYPE, "no content_type (expected application/json)");
    if (p->content_type.len != 16 || strncasecmp(p->content_type.bytes, "application/json", 16))
        return refuse(d, TASK_BAD_CONTENT_TYPE, "content_type '%.*s' is not application/json",
                      (int)(p->content_type.len > 80 ? 80 : p->content_type.len),
                      (const char *)p->content_type.bytes);
    if (p->_flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) {
        const char *e = p->content_encoding.bytes;
        size_t n = p->content_encoding.len;
        if (!((n == 5 && strncasecmp(e, "utf-8", 5) == 0) ||
              (n == 4 && strncasecmp(e, "utf8", 4) == 0)))
            return refuse(d, TASK_BAD_CONTENT_ENCODING, "content_encoding '%.*s' is not utf-8",
                          (int)(n > 80 ? 80 : n), e);
    }
    return 0;
}

static int read_headers(struct dec *d)
{
    struct task__msg *m = d->m;
    if (!(d->p->_flags & AMQP_BASIC_HEADERS_FLAG) || d->p->headers.num_entries == 0)
        return refuse(d, TASK_BAD_NO_HEADERS, "no headers: not a protocol v2 task message");
    int rc = str_header(d, "task", &m->task, TASK_BAD_NO_TASK);
    if (rc == 0)
        rc = str_header(d, "id", &m->id, TASK_BAD_NO_ID);
    /* The id is also the result's correlation_id, an AMQP short string: past 255 bytes no
     * result could ever be sent for it, nor a revoke name it. */
    if (rc == 0 && strlen(m->id) > 255)
        rc = refuse(d, TASK_BAD_BAD_HEADER, "header 'id': longer than 255 bytes");
    const char *keys[] = {"lang", "shadow", "group", "root_id", "parent_id", "argsrepr",
                          "kwargsrepr", "origin"};
    char **dst[] = {&m->lang, &m->shadow, &m->group, &m->root_id, &m->parent_id, &m->argsrepr,
                    &m->kwargsrepr, &m->origin};
    for (size_t i = 0; rc == 0 && i < sizeof(keys) / sizeof(keys[0]); i++)
        rc = str_header(d, keys[i], dst[i], TASK_BAD_NONE);
    if (rc == 0)
        rc = int_header(d, "retries", &m->retries, 0);
    if (rc == 0)
        rc = int_header(d, "group_index", &m->group_index, -1);
    if (rc == 0)
        rc = timelimit_header(d);
    if (rc == 0)
        rc = bool_header(d, "ignore_result", &m->ignore_result);
    if (rc == 0)
        rc = time_header(d, "eta", &m->eta, TASK_BAD_ETA);
    if (rc == 0)
        rc = time_header(d, "expires", &m->expires, TASK_BAD_EXPIRES);
    return rc;
}

static bool array_or_null(json_object *o)
{
    return o == NULL || json_object_is_type(o, json_type_array);
}

static int read_body(struct dec *d, json_object *body)
{
    struct task__msg *m = d->m;
    if (!json_object_is_type(body, json_type_array))
        return refuse(d, TASK_BAD_BODY_SHAPE, "body: expected [args, kwargs, embed], got %s",
                      body ? json_type_to_name(json_object_get_type(body)) : "null");
    if (json_object_array_length(body) != 3)
        return refuse(d, TASK_BAD_BODY_SHAPE, "body: expected 3 elements, got %zu",
                      json_object_array_length(body));
    json_object *args = json_object_array_get_idx(body, 0);
    json_object *kwargs = json_object_array_get_idx(body, 1);
    json_object *embed = json_object_array_get_idx(body, 2);
    if (!json_object_is_type(args, json_type_array))
        return refuse(d, TASK_BAD_ARGS, "body: args must be a list");
    if (!json_object_is_type(kwargs, json_type_object))
        return refuse(d, TASK_BAD_KWARGS, "body: kwargs must be an object");
    if (embed != NULL && !json_object_is_type(embed, json_type_object))
        return refuse(d, TASK_BAD_EMBED, "body: embed must be an object or null");
    m->args = json_object_get(args);
    m->kwargs = json_object_get(kwargs);
    if (embed == NULL)
        return 0;
    const char *lists[] = {"callbacks", "errbacks", "chain"};
    json_object **dst[] = {&m->callbacks, &m->errbacks, &m->chain};
    for (int i = 0; i < 3; i++) {
        json_object *v = json_object_object_get(embed, lists[i]);
        if (!array_or_null(v))
            return refuse(d, TASK_BAD_EMBED, "body: embed.%s must be a list or null", lists[i]);
        *dst[i] = json_object_get(v);
    }
    json_object *chord = json_object_object_get(embed, "chord");
    if (chord != NULL && !json_object_is_type(chord, json_type_object))
        return refuse(d, TASK_BAD_EMBED, "body: embed.chord must be an object or null");
    m->chord = json_object_get(chord);
    return 0;
}

int task__msg_decode(const amqp_basic_properties_t *props, const void *body, size_t len,
                     const struct task__limits *lim, struct task__msg *out,
                     enum task__bad *reason, task_error *err)
{
    static const amqp_basic_properties_t none;
    struct dec d = {.p = props ? props : &none, .m = out, .reason = reason, .err = err};
    size_t max_body = lim && lim->max_body_bytes ? lim->max_body_bytes : DEFAULT_MAX_BODY;
    int depth = lim && lim->max_depth ? lim->max_depth : DEFAULT_MAX_DEPTH;
    memset(out, 0, sizeof(*out));
    out->group_index = -1;
    *reason = TASK_BAD_NONE;
    read_address(&d);
    if (len > max_body)
        return refuse(&d, TASK_BAD_TOO_BIG, "body of %zu bytes exceeds the limit of %zu", len,
                      max_body);
    int rc = check_content(&d);
    if (rc == 0)
        rc = read_headers(&d);
    if (rc != 0)
        return rc;
    json_object *root = task__json_parse(body ? body : "", len, depth, reason, err);
    if (root == NULL && *reason == TASK_BAD__COUNT) {
        *reason = TASK_BAD_NONE;
        return TASK_ENOMEM;
    }
    if (root == NULL && *reason != TASK_BAD_NONE)
        return TASK_EPROTO;
    rc = read_body(&d, root);
    json_object_put(root);
    return rc;
}
