/*
 * fuzz_codec.c - libFuzzer harness for libtask's decoders: what a worker does with a delivery
 * (task__msg_decode over properties, headers and body) and what a client does with a state
 * message (task__result_decode). Built and run by tests/fuzz/run with clang, ASan and UBSan.
 *
 * Input: SEL HEADERS '\0' PROPS '\0' BODY
 *   SEL      one byte: bit i set = the i-th header value (mod 8) takes another AMQP kind of the
 *            same family (string as bytes 'x', int as i8/u16/u32/u64/i64, double as f32, bool
 *            as u8); with the top bit set the JSON depth limit is 2 + SEL % 32, else 64.
 *   HEADERS  a JSON object turned into the AMQP headers table (null = void, arrays and objects
 *            nest); absent or not an object: no headers property at all.
 *   PROPS    a JSON object with content_type, content_encoding, reply_to, correlation_id,
 *            priority, delivery_mode; absent: application/json, utf-8.
 *   BODY     the message body, also fed to the result decoder.
 * A decoded task is encoded again and decoded once more: both must succeed and agree, since
 * taskd re-publishes decoded messages (retries, chains). Any broken invariant aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_NEST 8

struct arena {
    void *blocks[4096];
    int n;
    uint8_t sel;
    unsigned counter;
};

static void *arena_alloc(struct arena *a, size_t size)
{
    if (a->n == (int)(sizeof(a->blocks) / sizeof(a->blocks[0])))
        return NULL;
    void *p = calloc(1, size ? size : 1);
    if (p != NULL)
        a->blocks[a->n++] = p;
    return p;
}

static void arena_free(struct arena *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->blocks[i]);
    a->n = 0;
}

static bool alt(struct arena *a)
{
    return (a->sel >> (a->counter++ % 8)) & 1;
}

static void to_table(struct arena *a, json_object *obj, amqp_table_t *t, int nest);

static void int_value(struct arena *a, int64_t i, amqp_field_value_t *v)
{
    v->kind = i == (int32_t)i ? AMQP_FIELD_KIND_I32 : AMQP_FIELD_KIND_I64;
    v->value.i64 = i;
    if (v->kind == AMQP_FIELD_KIND_I32)
        v->value.i32 = (int32_t)i;
    if (!alt(a))
        return;
    switch (a->counter % 5) {
    case 0: v->kind = AMQP_FIELD_KIND_I8, v->value.i8 = (int8_t)i; break;
    case 1: v->kind = AMQP_FIELD_KIND_U16, v->value.u16 = (uint16_t)i; break;
    case 2: v->kind = AMQP_FIELD_KIND_U32, v->value.u32 = (uint32_t)i; break;
    case 3: v->kind = AMQP_FIELD_KIND_U64, v->value.u64 = (uint64_t)i; break;
    default: v->kind = AMQP_FIELD_KIND_I64, v->value.i64 = i;
    }
}

static void to_value(struct arena *a, json_object *o, amqp_field_value_t *v, int nest)
{
    memset(v, 0, sizeof(*v));
    switch (json_object_get_type(o)) {
    case json_type_null: v->kind = AMQP_FIELD_KIND_VOID; break;
    case json_type_boolean:
        v->kind = alt(a) ? AMQP_FIELD_KIND_U8 : AMQP_FIELD_KIND_BOOLEAN;
        v->value.boolean = json_object_get_boolean(o);
        break;
    case json_type_int: int_value(a, json_object_get_int64(o), v); break;
    case json_type_double:
        if (alt(a)) {
            v->kind = AMQP_FIELD_KIND_F32;
            v->value.f32 = (float)json_object_get_double(o);
        } else {
            v->kind = AMQP_FIELD_KIND_F64;
            v->value.f64 = json_object_get_double(o);
        }
        break;
    case json_type_string:
        v->kind = alt(a) ? AMQP_FIELD_KIND_BYTES : AMQP_FIELD_KIND_UTF8;
        v->value.bytes.len = (size_t)json_object_get_string_len(o);
        v->value.bytes.bytes = (void *)json_object_get_string(o);
        break;
    case json_type_array: {
        size_t n = nest < MAX_NEST ? json_object_array_length(o) : 0;
        amqp_field_value_t *e = arena_alloc(a, n * sizeof(*e));
        v->kind = AMQP_FIELD_KIND_ARRAY;
        for (size_t i = 0; e != NULL && i < n; i++)
            to_value(a, json_object_array_get_idx(o, i), &e[i], nest + 1);
        v->value.array.entries = e;
        v->value.array.num_entries = e ? (int)n : 0;
        break;
    }
    case json_type_object:
        v->kind = AMQP_FIELD_KIND_TABLE;
        to_table(a, nest < MAX_NEST ? o : NULL, &v->value.table, nest + 1);
        break;
    }
}

static void to_table(struct arena *a, json_object *obj, amqp_table_t *t, int nest)
{
    t->num_entries = 0;
    t->entries = NULL;
    if (obj == NULL)
        return;
    int n = json_object_object_length(obj);
    amqp_table_entry_t *e = arena_alloc(a, (size_t)n * sizeof(*e));
    if (e == NULL)
        return;
    int i = 0;
    json_object_object_foreach(obj, key, val)
    {
        e[i].key = amqp_cstring_bytes(key);
        to_value(a, val, &e[i].value, nest);
        i++;
    }
    t->entries = e;
    t->num_entries = i;
}

static void prop_str(json_object *props, const char *key, amqp_bytes_t *dst, amqp_flags_t flag,
                     amqp_basic_properties_t *p)
{
    json_object *v;
    if (!json_object_object_get_ex(props, key, &v) || !json_object_is_type(v, json_type_string))
        return;
    dst->bytes = (void *)json_object_get_string(v);
    dst->len = (size_t)json_object_get_string_len(v);
    p->_flags |= flag;
}

static void to_props(json_object *props, amqp_basic_properties_t *p)
{
    if (!json_object_is_type(props, json_type_object)) {
        p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG;
        p->content_type = amqp_cstring_bytes("application/json");
        p->content_encoding = amqp_cstring_bytes("utf-8");
        return;
    }
    prop_str(props, "content_type", &p->content_type, AMQP_BASIC_CONTENT_TYPE_FLAG, p);
    prop_str(props, "content_encoding", &p->content_encoding, AMQP_BASIC_CONTENT_ENCODING_FLAG, p);
    prop_str(props, "reply_to", &p->reply_to, AMQP_BASIC_REPLY_TO_FLAG, p);
    prop_str(props, "correlation_id", &p->correlation_id, AMQP_BASIC_CORRELATION_ID_FLAG, p);
    json_object *v;
    if (json_object_object_get_ex(props, "priority", &v)) {
        p->_flags |= AMQP_BASIC_PRIORITY_FLAG;
        p->priority = (uint8_t)json_object_get_int(v);
    }
    if (json_object_object_get_ex(props, "delivery_mode", &v)) {
        p->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        p->delivery_mode = (uint8_t)json_object_get_int(v);
    }
}

/* Part `i` of the NUL-separated input; the last part takes the rest, NULs included. */
static const uint8_t *part(const uint8_t *p, size_t n, int i, int last, size_t *len)
{
    for (int k = 0; k < i; k++) {
        const uint8_t *z = memchr(p, 0, n);
        if (z == NULL) {
            *len = 0;
            return NULL;
        }
        n -= (size_t)(z + 1 - p);
        p = z + 1;
    }
    const uint8_t *z = i < last ? memchr(p, 0, n) : NULL;
    *len = z ? (size_t)(z - p) : n;
    return p;
}

static json_object *parse_part(const uint8_t *p, size_t n)
{
    if (p == NULL || n == 0)
        return NULL;
    json_tokener *tok = json_tokener_new_ex(MAX_NEST * 2);
    json_object *o = tok ? json_tokener_parse_ex(tok, (const char *)p, (int)n) : NULL;
    json_tokener_free(tok);
    return o;
}

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "fuzz_codec: invariant failed: %s (line %d)\n", #cond, \
                    __LINE__);                                                      \
            abort();                                                                \
        }                                                                           \
    } while (0)

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool same_json(json_object *a, json_object *b)
{
    char *ta = strdup(task__json_str(a, NULL));
    bool eq = ta != NULL && strcmp(ta, task__json_str(b, NULL)) == 0;
    free(ta);
    return eq || ta == NULL;
}

/* Encode a decoded message and decode it again: taskd re-publishes what it decoded. */
static void round_trip(const struct task__msg *m, const struct task__limits *lim)
{
    struct task__wire w;
    task_error err = {0};
    int rc = task__msg_encode(m, &w, &err);
    if (rc == TASK_ENOMEM)
        return;
    CHECK(rc == 0);
    struct task__msg back;
    enum task__bad why;
    struct task__limits big = {.max_body_bytes = w.body_len + 1, .max_depth = lim->max_depth + 2};
    rc = task__msg_decode(&w.props, w.body, w.body_len, &big, &back, &why, &err);
    if (rc != 0)
        fprintf(stderr, "fuzz_codec: re-decode refused (%s): %s\n", task__bad_slug(why), err.msg);
    CHECK(rc == 0);
    CHECK(same(back.id, m->id) && same(back.task, m->task));
    CHECK(back.retries == m->retries && back.ignore_result == m->ignore_result);
    /* As text: NaN never equals itself, but must come back as NaN. */
    CHECK(same_json(back.args, m->args) && same_json(back.kwargs, m->kwargs));
    task__msg_clear(&back);
    task__wire_free(&w);
}

static void decode_task(const amqp_basic_properties_t *p, const uint8_t *body, size_t n,
                        uint8_t sel)
{
    /* Top bit set: a small depth limit; clear: the worker's default. */
    struct task__limits lim = {.max_body_bytes = 1 << 20,
                               .max_depth = (sel & 0x80) ? 2 + sel % 32 : 64};
    struct task__msg m;
    enum task__bad why;
    task_error err = {0};
    int rc = task__msg_decode(p, body, n, &lim, &m, &why, &err);
    if (getenv("FUZZ_CODEC_TRACE") != NULL) /* to see what a seed reaches: run it by hand */
        fprintf(stderr, "fuzz_codec: decode rc=%d reason=%s %s\n", rc, task__bad_slug(why),
                err.msg);
    if (rc == 0) {
        CHECK(why == TASK_BAD_NONE);
        CHECK(m.id != NULL && m.id[0] != '\0' && m.task != NULL && m.task[0] != '\0');
        CHECK(json_object_is_type(m.args, json_type_array));
        CHECK(json_object_is_type(m.kwargs, json_type_object));
        round_trip(&m, &lim);
    } else if (rc != TASK_ENOMEM) {
        CHECK(rc == TASK_EPROTO);
        CHECK(why > TASK_BAD_NONE && why < TASK_BAD__COUNT);
        CHECK(err.msg[0] != '\0');
    }
    task__msg_clear(&m);
}

static void decode_result(const uint8_t *body, size_t n)
{
    struct task__result r;
    task_error err = {0};
    if (task__result_decode(body, n, &r, &err) == 0) {
        CHECK(r.task_id != NULL && r.status != NULL);
        task__result_clear(&r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1 << 20))
        return 0;
    struct arena *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return 0;
    a->sel = data[0];
    size_t hn, pn, bn;
    const uint8_t *h = part(data + 1, size - 1, 0, 2, &hn);
    const uint8_t *pp = part(data + 1, size - 1, 1, 2, &pn);
    const uint8_t *body = part(data + 1, size - 1, 2, 2, &bn);
    json_object *hdrs = parse_part(h, hn), *props = parse_part(pp, pn);
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof(p));
    to_props(props, &p);
    if (json_object_is_type(hdrs, json_type_object)) {
        p._flags |= AMQP_BASIC_HEADERS_FLAG;
        to_table(a, hdrs, &p.headers, 0);
    }
    decode_task(&p, body ? body : (const uint8_t *)"", body ? bn : 0, a->sel);
    decode_result(body ? body : (const uint8_t *)"", body ? bn : 0);
    json_object_put(hdrs);
    json_object_put(props);
    arena_free(a);
    free(a);
    return 0;
}
