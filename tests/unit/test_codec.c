/*
 * test_codec.c - the task-message codec against messages captured from real Celery 5.2.6:
 * every captured task message decodes with every field right and re-encodes to the same
 * message; every malformed shape is refused with its own reason, and none crashes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <cmocka.h>
#include "codec.h"
#include "golden.h"

static void check_str(json_object *hdrs, const char *key, const char *got)
{
    json_object *v = golden_get(hdrs, key);
    if (v == NULL || json_object_is_type(v, json_type_null)) {
        if (got != NULL)
            fail_msg("header %s: expected null, got '%s'", key, got);
        return;
    }
    if (got == NULL)
        fail_msg("header %s: expected '%s', got NULL", key, json_object_get_string(v));
    assert_string_equal(got, json_object_get_string(v));
}

static void check_time(json_object *hdrs, const char *key, double got)
{
    json_object *v = golden_get(hdrs, key);
    if (v == NULL || json_object_is_type(v, json_type_null)) {
        assert_true(got == 0);
        return;
    }
    double want;
    assert_int_equal(task__iso8601_parse(json_object_get_string(v), &want), 0);
    assert_true(fabs(want - got) < 1e-6);
}

static void check_json(json_object *want, json_object *got, const char *what)
{
    if (json_object_is_type(want, json_type_null))
        want = NULL;
    if (!json_object_equal(want, got))
        fail_msg("%s: expected %s, got %s", what, json_object_to_json_string(want),
                 json_object_to_json_string(got));
}

static void check_fields(struct golden *g, const struct task__msg *m, const char *file)
{
    json_object *h = golden_get(g->root, "headers");
    json_object *p = golden_get(g->root, "properties");
    const char *keys[] = {"lang", "task", "id", "shadow", "group", "root_id", "parent_id",
                          "argsrepr", "kwargsrepr", "origin"};
    const char *vals[] = {m->lang, m->task, m->id, m->shadow, m->group, m->root_id,
                          m->parent_id, m->argsrepr, m->kwargsrepr, m->origin};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        check_str(h, keys[i], vals[i]);
    check_time(h, "eta", m->eta);
    check_time(h, "expires", m->expires);
    json_object *gi = golden_get(h, "group_index");
    assert_int_equal(m->group_index, gi ? json_object_get_int(gi) : -1);
    if (gi != NULL && json_object_is_type(gi, json_type_null))
        assert_int_equal(m->group_index, -1);
    assert_int_equal(m->retries, json_object_get_int(golden_get(h, "retries")));
    json_object *tl = golden_get(h, "timelimit");
    assert_true(fabs(m->timelimit_hard - json_object_get_double(json_object_array_get_idx(tl, 0))) < 1e-9);
    assert_true(fabs(m->timelimit_soft - json_object_get_double(json_object_array_get_idx(tl, 1))) < 1e-9);
    assert_int_equal(m->ignore_result, json_object_get_boolean(golden_get(h, "ignore_result")));
    check_str(p, "correlation_id", m->correlation_id);
    check_str(p, "reply_to", m->reply_to);
    assert_int_equal(m->priority, json_object_get_int(golden_get(p, "priority")));
    assert_int_equal(m->delivery_mode, json_object_get_int(golden_get(p, "delivery_mode")));
    json_object *body = golden_get(g->root, "body");
    check_json(json_object_array_get_idx(body, 0), m->args, "args");
    check_json(json_object_array_get_idx(body, 1), m->kwargs, "kwargs");
    json_object *embed = json_object_array_get_idx(body, 2);
    check_json(golden_get(embed, "callbacks"), m->callbacks, "callbacks");
    check_json(golden_get(embed, "errbacks"), m->errbacks, "errbacks");
    check_json(golden_get(embed, "chain"), m->chain, "chain");
    check_json(golden_get(embed, "chord"), m->chord, "chord");
    (void)file;
}

static const amqp_table_entry_t *find_entry(const amqp_table_t *t, const char *key)
{
    for (int i = 0; i < t->num_entries; i++) {
        if (t->entries[i].key.len == strlen(key) &&
            memcmp(t->entries[i].key.bytes, key, strlen(key)) == 0)
            return &t->entries[i];
    }
    return NULL;
}

static void check_same_value(const amqp_field_value_t *a, const amqp_field_value_t *b,
                             const char *key)
{
    if (a->kind != b->kind)
        fail_msg("header %s: AMQP kind '%c' vs '%c'", key, a->kind, b->kind);
    switch (a->kind) {
    case AMQP_FIELD_KIND_UTF8:
        if (strcmp(key, "eta") == 0 || strcmp(key, "expires") == 0) {
            char x[64], y[64];
            double tx, ty;
            snprintf(x, sizeof(x), "%.*s", (int)a->value.bytes.len, (char *)a->value.bytes.bytes);
            snprintf(y, sizeof(y), "%.*s", (int)b->value.bytes.len, (char *)b->value.bytes.bytes);
            assert_int_equal(task__iso8601_parse(x, &tx), 0);
            assert_int_equal(task__iso8601_parse(y, &ty), 0);
            assert_true(fabs(tx - ty) < 2e-6);
            assert_int_equal(strlen(x), strlen(y)); /* same format: micros and +00:00 */
            break;
        }
        assert_int_equal(a->value.bytes.len, b->value.bytes.len);
        assert_memory_equal(a->value.bytes.bytes, b->value.bytes.bytes, a->value.bytes.len);
        break;
    case AMQP_FIELD_KIND_I32:
        assert_int_equal(a->value.i32, b->value.i32);
        break;
    case AMQP_FIELD_KIND_BOOLEAN:
        assert_int_equal(a->value.boolean != 0, b->value.boolean != 0);
        break;
    case AMQP_FIELD_KIND_ARRAY:
        assert_int_equal(a->value.array.num_entries, b->value.array.num_entries);
        for (int i = 0; i < a->value.array.num_entries; i++)
            check_same_value(&a->value.array.entries[i], &b->value.array.entries[i], key);
        break;
    default:
        break;
    }
}

static void check_reencode(struct golden *g, const struct task__msg *m)
{
    struct task__wire w;
    task_error err = {0};
    assert_int_equal(task__msg_encode(m, &w, &err), 0);
    /* Same property set (flag word) as Celery sent. */
    const char *flags = json_object_get_string(golden_get(g->root, "property_flags"));
    assert_int_equal(w.props._flags, strtol(flags, NULL, 16));
    /* Same header keys, kinds and values. */
    assert_int_equal(w.props.headers.num_entries, g->props.headers.num_entries);
    for (int i = 0; i < g->props.headers.num_entries; i++) {
        const amqp_table_entry_t *want = &g->props.headers.entries[i];
        char key[64];
        snprintf(key, sizeof(key), "%.*s", (int)want->key.len, (char *)want->key.bytes);
        const amqp_table_entry_t *got = find_entry(&w.props.headers, key);
        if (got == NULL)
            fail_msg("re-encoded message lacks header %s", key);
        check_same_value(&want->value, &got->value, key);
    }
    /* Body JSON-equal (key order and spacing may differ). */
    json_object *a = json_tokener_parse((const char *)g->body);
    json_object *b = json_tokener_parse(w.body);
    check_json(a, b, "body");
    json_object_put(a);
    json_object_put(b);
    task__wire_free(&w);
}

static void every_captured_task_message_decodes_and_reencodes(void **state)
{
    (void)state;
    char **files = golden_list("task_");
    int n = 0;
    for (int i = 0; files[i] != NULL; i++, n++) {
        struct golden g;
        assert_int_equal(golden_load(files[i], &g), 0);
        struct task__msg m;
        enum task__bad why;
        task_error err = {0};
        int rc = task__msg_decode(&g.props, g.body, g.body_len, NULL, &m, &why, &err);
        if (rc != 0)
            fail_msg("%s: %s (%s)", files[i], err.msg, task__bad_slug(why));
        print_message("decoded %s\n", files[i]);
        check_fields(&g, &m, files[i]);
        check_reencode(&g, &m);
        task__msg_clear(&m);
        golden_free(&g);
    }
    assert_true(n >= 20); /* the capture has 23; a missing directory must not pass */
    golden_list_free(files);
}

struct expect {
    const char *file;
    enum task__bad reason; /* TASK_BAD_NONE: Celery runs it, so must we */
};

static void malformed_captures_get_their_reason(void **state)
{
    (void)state;
    static const struct expect cases[] = {
        {"malformed_args_not_list.json", TASK_BAD_ARGS},
        {"malformed_bad_eta.json", TASK_BAD_ETA},
        {"malformed_bad_expires.json", TASK_BAD_EXPIRES},
        {"malformed_body_embed_null.json", TASK_BAD_NONE},
        {"malformed_body_null.json", TASK_BAD_BODY_SHAPE},
        {"malformed_body_object_v2.json", TASK_BAD_BODY_SHAPE},
        {"malformed_body_two_elements.json", TASK_BAD_BODY_SHAPE},
        {"malformed_invalid_json.json", TASK_BAD_NOT_JSON},
        {"malformed_kwargs_not_object.json", TASK_BAD_KWARGS},
        {"malformed_minimal_headers.json", TASK_BAD_NONE},
        {"malformed_missing_id.json", TASK_BAD_NO_ID},
        {"malformed_no_headers_v1_like.json", TASK_BAD_NO_HEADERS},
        {"malformed_no_task_header.json", TASK_BAD_NO_TASK},
        {"malformed_unknown_task_raw.json", TASK_BAD_NONE}, /* the registry refuses it */
        {"malformed_wrong_content_type_pickle.json", TASK_BAD_CONTENT_TYPE},
        {"malformed_wrong_content_type_text.json", TASK_BAD_CONTENT_TYPE},
    };
    char **files = golden_list("malformed_");
    int covered = 0;
    for (int i = 0; files[i] != NULL; i++) {
        const struct expect *e = NULL;
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
            if (strcmp(cases[k].file, files[i]) == 0)
                e = &cases[k];
        if (e == NULL)
            fail_msg("no expectation for %s: add one", files[i]);
        covered++;
        struct golden g;
        assert_int_equal(golden_load(files[i], &g), 0);
        struct task__msg m;
        enum task__bad why;
        task_error err = {0};
        int rc = task__msg_decode(&g.props, g.body, g.body_len, NULL, &m, &why, &err);
        if (why != e->reason)
            fail_msg("%s: expected %s, got %s (%s)", files[i], task__bad_slug(e->reason),
                     task__bad_slug(why), err.msg);
        assert_int_equal(rc, e->reason == TASK_BAD_NONE ? 0 : TASK_EPROTO);
        if (rc != 0)
            assert_true(err.msg[0] != '\0');
        task__msg_clear(&m);
        golden_free(&g);
    }
    assert_int_equal(covered, (int)(sizeof(cases) / sizeof(cases[0])));
    golden_list_free(files);
}

/* A good message from task_plain.json, with hooks to break one part. */
static int decode_variant(const char *body, size_t len, void (*edit)(struct golden *),
                          const struct task__limits *lim, enum task__bad *why, task_error *err,
                          struct task__msg *m)
{
    struct golden g;
    assert_int_equal(golden_load("task_plain.json", &g), 0);
    if (edit != NULL)
        edit(&g);
    int rc = task__msg_decode(&g.props, body ? (const void *)body : g.body,
                              body ? len : g.body_len, lim, m, why, err);
    golden_free(&g);
    return rc;
}

static void expect_reason(const char *body, size_t len, void (*edit)(struct golden *),
                          const struct task__limits *lim, enum task__bad want, const char *what)
{
    struct task__msg m;
    enum task__bad why;
    task_error err = {0};
    int rc = decode_variant(body, len, edit, lim, &why, &err, &m);
    if (why != want || rc != TASK_EPROTO)
        fail_msg("%s: expected %s, got %s rc=%d (%s)", what, task__bad_slug(want),
                 task__bad_slug(why), rc, err.msg);
    assert_true(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
    task__msg_clear(&m);
}

static amqp_table_entry_t *entry(struct golden *g, const char *key)
{
    return (amqp_table_entry_t *)find_entry(&g->props.headers, key);
}

static void drop_id(struct golden *g) { entry(g, "id")->value.kind = AMQP_FIELD_KIND_VOID; }
static void id_as_bytes(struct golden *g) { entry(g, "id")->value.kind = AMQP_FIELD_KIND_BYTES; }
static void task_as_bytes(struct golden *g) { entry(g, "task")->value.kind = AMQP_FIELD_KIND_BYTES; }
static void retries_as_string(struct golden *g)
{
    entry(g, "retries")->value.kind = AMQP_FIELD_KIND_UTF8;
    entry(g, "retries")->value.value.bytes = amqp_cstring_bytes("3");
}
static void negative_retries(struct golden *g) { entry(g, "retries")->value.value.i32 = -1; }
static void timelimit_scalar(struct golden *g)
{
    entry(g, "timelimit")->value.kind = AMQP_FIELD_KIND_I32;
}
static void ignore_result_int(struct golden *g)
{
    entry(g, "ignore_result")->value.kind = AMQP_FIELD_KIND_I32;
}
static void bad_utf8_task(struct golden *g)
{
    entry(g, "task")->value.value.bytes = amqp_cstring_bytes("golden.\xff\xfe");
}
static void nul_in_task(struct golden *g)
{
    entry(g, "task")->value.value.bytes = (amqp_bytes_t){.len = 9, .bytes = "golden\0ad"};
}
static void nul_in_argsrepr(struct golden *g)
{
    entry(g, "argsrepr")->value.value.bytes = (amqp_bytes_t){.len = 6, .bytes = "('\0',)"};
}
static void yaml_type(struct golden *g) { g->props.content_type = amqp_cstring_bytes("application/x-yaml"); }
static void gzip_encoding(struct golden *g) { g->props.content_encoding = amqp_cstring_bytes("binary"); }
static void no_headers(struct golden *g) { g->props._flags &= ~(amqp_flags_t)AMQP_BASIC_HEADERS_FLAG; }
static void eta_garbage(struct golden *g)
{
    entry(g, "eta")->value.kind = AMQP_FIELD_KIND_UTF8;
    entry(g, "eta")->value.value.bytes = amqp_cstring_bytes("tomorrow-ish");
}

static char long_id[300];
static void id_too_long(struct golden *g)
{
    memset(long_id, 'i', sizeof(long_id));
    entry(g, "id")->value.value.bytes = (amqp_bytes_t){.len = sizeof(long_id), .bytes = long_id};
}
static void expires_before_1970(struct golden *g)
{
    entry(g, "expires")->value.kind = AMQP_FIELD_KIND_UTF8;
    entry(g, "expires")->value.value.bytes = amqp_cstring_bytes("0001-01-01T00:00:00+00:00");
}

/* An expiry before 1970 is long past, not "never" (0 is how a decoded message says never). */
static void expires_before_1970_has_expired(void **state)
{
    (void)state;
    struct task__msg m;
    enum task__bad why;
    task_error err = {0};
    assert_int_equal(decode_variant(NULL, 0, expires_before_1970, NULL, &why, &err, &m), 0);
    assert_true(m.expires > 0 && m.expires < 1);
    task__msg_clear(&m);
}

static void handmade_bad_inputs_each_get_their_reason(void **state)
{
    (void)state;
    const char *ok_body = "[[1,2],{},{\"callbacks\":null,\"errbacks\":null,\"chain\":null,\"chord\":null}]";
    expect_reason(NULL, 0, drop_id, NULL, TASK_BAD_NO_ID, "missing id");
    expect_reason(NULL, 0, id_as_bytes, NULL, TASK_BAD_BAD_HEADER, "id as AMQP bytes");
    expect_reason(NULL, 0, id_too_long, NULL, TASK_BAD_BAD_HEADER, "id over 255 bytes");
    expect_reason(NULL, 0, task_as_bytes, NULL, TASK_BAD_BAD_HEADER, "task as AMQP bytes");
    expect_reason(NULL, 0, retries_as_string, NULL, TASK_BAD_BAD_HEADER, "retries as string");
    expect_reason(NULL, 0, negative_retries, NULL, TASK_BAD_BAD_HEADER, "negative retries");
    expect_reason(NULL, 0, timelimit_scalar, NULL, TASK_BAD_BAD_HEADER, "timelimit scalar");
    expect_reason(NULL, 0, ignore_result_int, NULL, TASK_BAD_BAD_HEADER, "ignore_result int");
    expect_reason(NULL, 0, bad_utf8_task, NULL, TASK_BAD_BAD_HEADER, "task not UTF-8");
    expect_reason(NULL, 0, nul_in_task, NULL, TASK_BAD_BAD_HEADER, "NUL in task name");
    expect_reason(NULL, 0, yaml_type, NULL, TASK_BAD_CONTENT_TYPE, "yaml content type");
    expect_reason(NULL, 0, gzip_encoding, NULL, TASK_BAD_CONTENT_ENCODING, "binary encoding");
    expect_reason(NULL, 0, no_headers, NULL, TASK_BAD_NO_HEADERS, "no headers");
    expect_reason(NULL, 0, eta_garbage, NULL, TASK_BAD_ETA, "eta garbage");
    expect_reason("[[1,2],{}]", 10, NULL, NULL, TASK_BAD_BODY_SHAPE, "2-element body");
    expect_reason("[[1,2],{},{},{}]", 16, NULL, NULL, TASK_BAD_BODY_SHAPE, "4-element body");
    expect_reason("\"text\"", 6, NULL, NULL, TASK_BAD_BODY_SHAPE, "string body");
    expect_reason("[1,{},{}]", 9, NULL, NULL, TASK_BAD_ARGS, "args a number");
    expect_reason("[[],null,{}]", 12, NULL, NULL, TASK_BAD_KWARGS, "kwargs null");
    expect_reason("[[],{},[]]", 10, NULL, NULL, TASK_BAD_EMBED, "embed a list");
    expect_reason("[[],{},{\"chain\":{}}]", 20, NULL, NULL, TASK_BAD_EMBED, "chain an object");
    expect_reason("[[],{},{\"chord\":[1]}]", 21, NULL, NULL, TASK_BAD_EMBED, "chord a list");
    expect_reason("[[1,2],{},{\"callbacks\":nu", 25, NULL, NULL, TASK_BAD_NOT_JSON, "truncated");
    expect_reason("", 0, NULL, NULL, TASK_BAD_NOT_JSON, "empty body");
    expect_reason("[[1,2],{},{}] x", 15, NULL, NULL, TASK_BAD_NOT_JSON, "trailing garbage");
    expect_reason("[[\"\xc3\x28\"],{},{}]", 14, NULL, NULL, TASK_BAD_BAD_UTF8, "invalid UTF-8");
    expect_reason("[[\"\xed\xa0\x80\"],{},{}]", 15, NULL, NULL, TASK_BAD_BAD_UTF8, "UTF-16 surrogate");
    static const char nul_body[] = "[[\"a\0b\"],{},{}]";
    expect_reason(nul_body, sizeof(nul_body) - 1, NULL, NULL, TASK_BAD_NOT_JSON, "NUL in body");

    enum { DEEP = 10000 };
    char *deep = malloc(2 * DEEP + 16);
    size_t n = 0;
    deep[n++] = '[';
    for (int i = 0; i < DEEP; i++)
        deep[n++] = '[';
    for (int i = 0; i < DEEP; i++)
        deep[n++] = ']';
    n += (size_t)sprintf(deep + n, ",{},{}]");
    expect_reason(deep, n, NULL, NULL, TASK_BAD_TOO_DEEP, "nesting depth 10000");
    free(deep);

    size_t big = 17u * 1024u * 1024u;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    memcpy(huge, ok_body, strlen(ok_body));
    expect_reason(huge, big, NULL, NULL, TASK_BAD_TOO_BIG, "17 MiB body");
    struct task__limits tight = {.max_body_bytes = 1024, .max_depth = 4};
    expect_reason(huge, 2048, NULL, &tight, TASK_BAD_TOO_BIG, "over a configured limit");
    expect_reason("[[[[[[1]]]]],{},{}]", 19, NULL, &tight, TASK_BAD_TOO_DEEP, "over depth 4");
    free(huge);
}

/* JSON that json-c takes but Python's json.loads (so a Celery worker) refuses is not run. */
static void lax_json_is_refused_as_python_refuses_it(void **state)
{
    (void)state;
    static const struct {
        const char *body, *what;
    } lax[] = {
        {"[['a'],{},{}]", "single-quoted string"},
        {"[[1,2,],{},{}]", "trailing comma"},
        {"[[1.],{},{}]", "number ending in a dot"},
        {"[[01],{},{}]", "leading zero"},
        {"[[1],{},{}] /* c */", "comment"},
        {"[[\"a\tb\"],{},{}]", "raw tab inside a string"},
        {"[[TRUE],{},{}]", "TRUE"},
    };
    for (size_t i = 0; i < sizeof(lax) / sizeof(lax[0]); i++)
        expect_reason(lax[i].body, strlen(lax[i].body), NULL, NULL, TASK_BAD_NOT_JSON,
                      lax[i].what);
    /* ...while strict JSON that looks close to those still runs. */
    static const char *fine[] = {
        "[[\"it's\", \"a\\\"b\", \"1.\", \"/* no */\"],{},{}]",
        "[[1.5, -0.25, 1e3, 0, -0, 2E-2],{},{}]",
        "[[\"\\u0027\\t\"],{\"k\": [ ]},{}]",
    };
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        struct task__msg m;
        enum task__bad why;
        task_error err = {0};
        if (decode_variant(fine[i], strlen(fine[i]), NULL, NULL, &why, &err, &m) != 0)
            fail_msg("strict JSON refused: %s (%s)", fine[i], err.msg);
        task__msg_clear(&m);
    }
}

static void refused_message_keeps_its_address(void **state)
{
    (void)state;
    struct task__msg m;
    enum task__bad why;
    task_error err = {0};
    assert_int_equal(decode_variant("[[1,2],{}]", 10, NULL, NULL, &why, &err, &m), TASK_EPROTO);
    assert_string_equal(m.id, "f186296b-9338-429a-a91a-d980dc6bfa31");
    assert_string_equal(m.task, "golden.add");
    assert_string_equal(m.reply_to, "8d620806-02c8-38b6-a85a-7ecc5ed18c56");
    task__msg_clear(&m);
}

/* Celery puts raw NULs from the arguments into argsrepr: that message must still run. */
static void nul_in_display_header_is_accepted(void **state)
{
    (void)state;
    struct task__msg m;
    enum task__bad why;
    task_error err = {0};
    assert_int_equal(decode_variant(NULL, 0, nul_in_argsrepr, NULL, &why, &err, &m), 0);
    assert_string_equal(m.argsrepr, "('");
    task__msg_clear(&m);
}

static void encode_fills_defaults_like_a_celery_client(void **state)
{
    (void)state;
    struct task__msg m = {.task = "t.x", .id = "abc", .group_index = -1, .expires = 0};
    m.expires = task__now_wall() + 60;
    struct task__wire w;
    assert_int_equal(task__msg_encode(&m, &w, NULL), 0);
    assert_int_equal(w.props.headers.num_entries, 16);
    assert_true(w.props._flags & AMQP_BASIC_EXPIRATION_FLAG);
    long ms = strtol(w.expiration_buf, NULL, 10);
    assert_true(ms > 59000 && ms <= 60000);
    const amqp_table_entry_t *root = find_entry(&w.props.headers, "root_id");
    assert_memory_equal(root->value.value.bytes.bytes, "abc", 3);
    assert_string_equal(w.body, "[[],{},{\"callbacks\":null,\"errbacks\":null,\"chain\":null,\"chord\":null}]");
    task__wire_free(&w);
    struct task__msg bad = {.task = "t.x"};
    task_error err = {0};
    assert_int_equal(task__msg_encode(&bad, &w, &err), TASK_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_captured_task_message_decodes_and_reencodes),
        cmocka_unit_test(malformed_captures_get_their_reason),
        cmocka_unit_test(handmade_bad_inputs_each_get_their_reason),
        cmocka_unit_test(expires_before_1970_has_expired),
        cmocka_unit_test(lax_json_is_refused_as_python_refuses_it),
        cmocka_unit_test(refused_message_keeps_its_address),
        cmocka_unit_test(nul_in_display_header_is_accepted),
        cmocka_unit_test(encode_fills_defaults_like_a_celery_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
