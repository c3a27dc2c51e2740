/*
 * test_malformed_flood.c - fault (d) of issue 7: flood a worker's queue with N raw messages
 * (rabbitmq-c, not libtask's send path) of every malformed kind the decoder knows, with a valid
 * test.add interleaved one in ten. The worker must not crash (same supervisor and child pids,
 * still answering), every bad message must be in the dead queue exactly once with an
 * x-taskd-error header whose reason fits its kind, and every valid task must end SUCCESS.
 * N = 100000, or TASKD_FAULT_FLOOD_N. The same N under ASan: measured 75 s there, 66 s without
 * (2 cores), so no smaller default is needed; the printed line names the build.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <task/client.h>
#include "faultlib.h"
#include "conn.h"
#include "../integration/itest.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

enum { N_DEFAULT = 100000, VALID_EVERY = 10, MAX_SIZE = 4096, MAX_DEPTH = 16 };
#define VALID_PREFIX "fccccccc-0000-4000-8000-"
#define BAD_PREFIX "feeeeeee-0000-4000-8000-"

/* One message being built: properties, headers and body with their storage. */
struct msg {
    amqp_basic_properties_t p;
    amqp_table_entry_t h[24 + 100];
    amqp_field_value_t arr[4];
    int nh;
    char id[40], type[40], msgid[24];
    char body[9000];
    size_t len;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* ---------------------------------------------------------------- field values */

static amqp_field_value_t fv(uint8_t kind)
{
    amqp_field_value_t v;
    memset(&v, 0, sizeof(v));
    v.kind = kind;
    return v;
}

static amqp_field_value_t fv_str(uint8_t kind, const char *s, size_t len)
{
    amqp_field_value_t v = fv(kind);
    v.value.bytes.bytes = (void *)s;
    v.value.bytes.len = len;
    return v;
}

static amqp_field_value_t fv_i64(int64_t i)
{
    amqp_field_value_t v = fv(AMQP_FIELD_KIND_I64);
    v.value.i64 = i;
    return v;
}

static amqp_field_value_t fv_i32(int32_t i)
{
    amqp_field_value_t v = fv(AMQP_FIELD_KIND_I32);
    v.value.i32 = i;
    return v;
}

static amqp_field_value_t fv_f64(double d)
{
    amqp_field_value_t v = fv(AMQP_FIELD_KIND_F64);
    v.value.f64 = d;
    return v;
}

static amqp_field_value_t fv_bool(int b)
{
    amqp_field_value_t v = fv(AMQP_FIELD_KIND_BOOLEAN);
    v.value.boolean = b;
    return v;
}

static amqp_field_value_t fv_array(struct msg *m, int n)
{
    amqp_field_value_t v = fv(AMQP_FIELD_KIND_ARRAY);
    v.value.array.num_entries = n;
    v.value.array.entries = m->arr;
    return v;
}

static amqp_field_value_t fv_table(void)
{
    amqp_field_value_t v = fv(AMQP_FIELD_KIND_TABLE);
    v.value.table = amqp_empty_table;
    return v;
}

static amqp_field_value_t fv_text(const char *s)
{
    return fv_str(AMQP_FIELD_KIND_UTF8, s, strlen(s));
}

/* ---------------------------------------------------------------- message building */

static void set_hdr(struct msg *m, const char *key, amqp_field_value_t v)
{
    for (int i = 0; i < m->nh; i++)
        if (strcmp(m->h[i].key.bytes, key) == 0) { /* keys are our C literals */
            m->h[i].value = v;
            return;
        }
    m->h[m->nh].key = amqp_cstring_bytes(key);
    m->h[m->nh].value = v;
    m->nh++;
    m->p.headers.num_entries = m->nh;
}

static void del_hdr(struct msg *m, const char *key)
{
    for (int i = 0; i < m->nh; i++)
        if (strcmp(m->h[i].key.bytes, key) == 0) {
            m->h[i] = m->h[--m->nh];
            m->p.headers.num_entries = m->nh;
            return;
        }
}

static void set_body(struct msg *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_body(struct msg *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m->body, sizeof(m->body), fmt, ap);
    va_end(ap);
    m->len = n < 0 ? 0 : (size_t)n >= sizeof(m->body) ? sizeof(m->body) - 1 : (size_t)n;
}

static void set_raw(struct msg *m, const char *bytes, size_t len)
{
    memcpy(m->body, bytes, len);
    m->len = len;
}

#define EMBED "{\"callbacks\":null,\"errbacks\":null,\"chain\":null,\"chord\":null}"

/* A well-formed protocol v2 test.add(i, i) as Celery 5.2 sends it; `kind` and `seq` tag it. */
static void base(struct msg *m, const char *prefix, long i, const char *kind, long seq)
{
    memset(&m->p, 0, sizeof(m->p));
    m->nh = 0;
    snprintf(m->id, sizeof(m->id), "%s%012lx", prefix, (unsigned long)i);
    snprintf(m->type, sizeof(m->type), "%s", kind);
    snprintf(m->msgid, sizeof(m->msgid), "%ld", seq);
    m->p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
                  AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                  AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_TYPE_FLAG |
                  AMQP_BASIC_MESSAGE_ID_FLAG;
    m->p.content_type = amqp_cstring_bytes("application/json");
    m->p.content_encoding = amqp_cstring_bytes("utf-8");
    m->p.delivery_mode = 2;
    m->p.correlation_id = amqp_cstring_bytes(m->id);
    m->p.type = amqp_cstring_bytes(m->type);
    m->p.message_id = amqp_cstring_bytes(m->msgid);
    m->p.headers.entries = m->h;
    set_hdr(m, "lang", fv_text("py"));
    set_hdr(m, "task", fv_text("test.add"));
    set_hdr(m, "id", fv_text(m->id));
    set_hdr(m, "shadow", fv(AMQP_FIELD_KIND_VOID));
    set_hdr(m, "eta", fv(AMQP_FIELD_KIND_VOID));
    set_hdr(m, "expires", fv(AMQP_FIELD_KIND_VOID));
    set_hdr(m, "group", fv(AMQP_FIELD_KIND_VOID));
    set_hdr(m, "group_index", fv(AMQP_FIELD_KIND_VOID));
    set_hdr(m, "retries", fv_i32(0));
    m->arr[0] = m->arr[1] = fv(AMQP_FIELD_KIND_VOID);
    set_hdr(m, "timelimit", fv_array(m, 2));
    set_hdr(m, "root_id", fv_text(m->id));
    set_hdr(m, "parent_id", fv(AMQP_FIELD_KIND_VOID));
    set_hdr(m, "argsrepr", fv_text("(i, i)"));
    set_hdr(m, "kwargsrepr", fv_text("{}"));
    set_hdr(m, "origin", fv_text("gen1@flood"));
    set_hdr(m, "ignore_result", fv_bool(0));
    set_body(m, "[[%ld, %ld], {}, " EMBED "]", i, i);
}

/* ---------------------------------------------------------------- the bad kinds */

static void k_random(struct msg *m, long n)
{
    (void)n;
    size_t len = 1 + rnd() % 256;
    for (size_t i = 0; i < len; i++)
        m->body[i] = (char)rnd();
    m->len = len;
}

static void k_truncated(struct msg *m, long n)
{
    m->len = 1 + (size_t)n % (m->len - 1); /* any proper prefix of the valid body */
}

static void k_pickle(struct msg *m, long n)
{
    (void)n;
    m->p.content_type = amqp_cstring_bytes("application/x-python-serialize");
    m->p.content_encoding = amqp_cstring_bytes("binary");
    /* pickle.dumps([1, 2], protocol=4) */
    static const char pickle[] = "\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00]\x94("
                                 "K\x01K\x02" "e.";
    set_raw(m, pickle, sizeof(pickle) - 1);
}

static void k_yaml(struct msg *m, long n)
{
    (void)n;
    m->p.content_type = amqp_cstring_bytes("application/x-yaml");
    set_body(m, "- [1, 2]\n- {}\n- {callbacks: null}\n");
}

static void k_no_content_type(struct msg *m, long n)
{
    (void)n;
    m->p._flags &= ~(amqp_flags_t)AMQP_BASIC_CONTENT_TYPE_FLAG;
}

static void k_encoding(struct msg *m, long n)
{
    m->p.content_encoding = amqp_cstring_bytes(n % 2 ? "binary" : "latin-1");
}

/* Every header, in turn, with each of six types it must not have. */
static void k_header_type(struct msg *m, long n)
{
    static const char *const keys[] = {"lang", "task", "id", "shadow", "group", "root_id",
                                       "parent_id", "argsrepr", "kwargsrepr", "origin", "eta",
                                       "expires", "retries", "group_index", "timelimit",
                                       "ignore_result"};
    const int nkeys = (int)(sizeof(keys) / sizeof(keys[0]));
    const char *key = keys[n % nkeys];
    int variant = (int)(n / nkeys % 6);
    bool is_str = n % nkeys < 12, is_int = !is_str && n % nkeys < 14;
    amqp_field_value_t wrong[6];
    m->arr[0] = fv_text("x");
    m->arr[1] = fv(AMQP_FIELD_KIND_VOID);
    if (is_str) {
        wrong[0] = fv_i32(7), wrong[1] = fv_f64(1.5), wrong[2] = fv_bool(1);
        wrong[3] = fv_array(m, 1), wrong[4] = fv_table();
        wrong[5] = fv_str(AMQP_FIELD_KIND_BYTES, m->id, strlen(m->id));
    } else if (is_int) {
        wrong[0] = fv_text("3"), wrong[1] = fv_f64(2.5), wrong[2] = fv_bool(1);
        wrong[3] = fv_array(m, 1), wrong[4] = fv_table();
        wrong[5] = fv_str(AMQP_FIELD_KIND_BYTES, "3", 1);
    } else if (strcmp(key, "timelimit") == 0) {
        wrong[0] = fv_text("10"), wrong[1] = fv_i32(10), wrong[2] = fv_bool(1);
        wrong[3] = fv_array(m, 1), wrong[4] = fv_array(m, 2), wrong[5] = fv_table();
    } else {
        wrong[0] = fv_text("true"), wrong[1] = fv_i32(1), wrong[2] = fv_f64(0);
        wrong[3] = fv_array(m, 1), wrong[4] = fv_table();
        wrong[5] = fv_str(AMQP_FIELD_KIND_BYTES, "t", 1);
    }
    set_hdr(m, key, wrong[variant]);
}

static void k_bad_eta(struct msg *m, long n)
{
    set_hdr(m, "eta", fv_text(n % 2 ? "tomorrow" : "2024-02-31T10:00:00"));
}

static void k_bad_expires(struct msg *m, long n)
{
    set_hdr(m, "expires", fv_text(n % 2 ? "2024-13-01T00:00:00Z" : "soon"));
}

static void k_no_headers(struct msg *m, long n)
{
    if (n % 2)
        m->p._flags &= ~(amqp_flags_t)AMQP_BASIC_HEADERS_FLAG;
    else
        m->nh = 0, m->p.headers.num_entries = 0;
}

static void k_no_task(struct msg *m, long n)
{
    if (n % 3 == 0)
        del_hdr(m, "task");
    else if (n % 3 == 1)
        set_hdr(m, "task", fv_text(""));
    else
        set_hdr(m, "task", fv(AMQP_FIELD_KIND_VOID));
}

static void k_no_id(struct msg *m, long n)
{
    if (n % 2)
        del_hdr(m, "id");
    else
        set_hdr(m, "id", fv_text(""));
}

static void k_body_shape(struct msg *m, long n)
{
    static const char *const bodies[] = {"{}", "[[1, 2], {}]", "null", "42", "\"x\"",
                                         "[[], {}, {}, {}]", "[]"};
    set_body(m, "%s", bodies[n % 7]);
}

static void k_args(struct msg *m, long n)
{
    set_body(m, n % 2 ? "[{}, {}, null]" : "[\"1, 2\", {}, " EMBED "]");
}

static void k_kwargs(struct msg *m, long n)
{
    set_body(m, n % 2 ? "[[1, 2], [], null]" : "[[1, 2], null, null]");
}

static void k_embed(struct msg *m, long n)
{
    static const char *const bodies[] = {"[[1, 2], {}, 5]", "[[1, 2], {}, {\"callbacks\": 3}]",
                                         "[[1, 2], {}, {\"chain\": {}}]",
                                         "[[1, 2], {}, {\"chord\": []}]"};
    set_body(m, "%s", bodies[n % 4]);
}

/* Numbers out of every header's range (the body's numbers are the task's business). */
static void k_huge(struct msg *m, long n)
{
    switch (n % 4) {
    case 0: set_hdr(m, "retries", fv_i64(INT64_C(1) << 40)); break;
    case 1: set_hdr(m, "retries", fv_i64(-5)); break;
    case 2: set_hdr(m, "group_index", fv_i64(INT64_MAX)); break;
    default:
        m->arr[0] = fv_f64(-1e308), m->arr[1] = fv(AMQP_FIELD_KIND_VOID);
        set_hdr(m, "timelimit", fv_array(m, 2));
    }
}

static void k_too_deep(struct msg *m, long n)
{
    int depth = MAX_DEPTH + 1 + (int)(n % 50);
    char nest[200];
    memset(nest, '[', (size_t)depth);
    memset(nest + depth, ']', (size_t)depth);
    nest[2 * depth] = '\0';
    set_body(m, "[[%s], {}, " EMBED "]", nest);
}

static void k_bad_utf8(struct msg *m, long n)
{
    static const char *const bad[] = {"\xff\xfe", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                      "abc\xe2\x82"};
    set_body(m, "[[\"%s\", 1], {}, " EMBED "]", bad[n % 5]);
}

static void k_header_utf8(struct msg *m, long n)
{
    static const char task[] = "test.\xff" "add", id[] = "id\0nul";
    if (n % 2)
        set_hdr(m, "task", fv_str(AMQP_FIELD_KIND_UTF8, task, sizeof(task) - 1));
    else
        set_hdr(m, "id", fv_str(AMQP_FIELD_KIND_UTF8, id, sizeof(id) - 1));
}

static void k_unknown(struct msg *m, long n)
{
    set_hdr(m, "task", fv_text(n % 2 ? "test.no_such_task" : "os.system"));
}

static void k_too_big(struct msg *m, long n)
{
    size_t pad = MAX_SIZE + (size_t)(n % 4000);
    int k = snprintf(m->body, sizeof(m->body), "[[1, 2], {\"pad\": \"");
    memset(m->body + k, 'p', pad);
    k += (int)pad;
    k += snprintf(m->body + k, sizeof(m->body) - (size_t)k, "\"}, " EMBED "]");
    m->len = (size_t)k;
}

static void k_not_json(struct msg *m, long n)
{
    static const char *const bodies[] = {"", "[[1, 2], {}, {}] trailing", "[[1, 2], {}, {},]",
                                         "[[1 2], {}, {}]", "[[1, 2], {'a': 1}, {}]"};
    if (n % 6 == 5)
        set_raw(m, "[[1, 2],\0{}, {}]", 16);
    else
        set_body(m, "%s", bodies[n % 6]);
}

/* A bad message with 100 headers more than Celery's: the dead copy must keep them all. */
enum { NPAD = 100 };
static char pad_keys[NPAD][12];

static void k_many_headers(struct msg *m, long n)
{
    for (int i = 0; i < NPAD; i++) {
        if (pad_keys[i][0] == '\0')
            snprintf(pad_keys[i], sizeof(pad_keys[i]), "x-pad-%03d", i);
        set_hdr(m, pad_keys[i], fv_i32(i));
    }
    del_hdr(m, n % 2 ? "id" : "task");
}

struct kind {
    const char *name;
    const char *slugs; /* the reasons this kind may be quarantined for */
    void (*make)(struct msg *m, long n);
};

static const struct kind kinds[] = {
    {"random-bytes", "not-json invalid-utf8 body-shape", k_random},
    {"truncated-json", "not-json", k_truncated},
    {"pickle", "content-type", k_pickle},
    {"yaml", "content-type", k_yaml},
    {"no-content-type", "content-type", k_no_content_type},
    {"bad-encoding", "content-encoding", k_encoding},
    {"header-type", "bad-header", k_header_type},
    {"bad-eta", "bad-eta", k_bad_eta},
    {"bad-expires", "bad-expires", k_bad_expires},
    {"no-headers", "no-headers", k_no_headers},
    {"no-task", "missing-task", k_no_task},
    {"no-id", "missing-id", k_no_id},
    {"body-shape", "body-shape", k_body_shape},
    {"args", "args-not-list", k_args},
    {"kwargs", "kwargs-not-object", k_kwargs},
    {"embed", "bad-embed", k_embed},
    {"huge-numbers", "bad-header", k_huge},
    {"too-deep", "too-deep", k_too_deep},
    {"body-utf8", "invalid-utf8", k_bad_utf8},
    {"header-utf8", "bad-header", k_header_utf8},
    {"unknown-task", "unknown-task", k_unknown},
    {"too-big", "too-big", k_too_big},
    {"not-json", "not-json", k_not_json},
    {"many-headers", "missing-id missing-task", k_many_headers},
};
enum { NKINDS = sizeof(kinds) / sizeof(kinds[0]) };

static int kind_index(amqp_bytes_t type)
{
    for (int i = 0; i < NKINDS; i++)
        if (strlen(kinds[i].name) == type.len && memcmp(kinds[i].name, type.bytes, type.len) == 0)
            return i;
    return -1;
}

/* ---------------------------------------------------------------- broker side */

static struct task__conn *open_conn(void)
{
    task_strlist urls = {.v = (char *[]){(char *)itest_broker()}, .n = 1};
    struct task__conn_opts o = {.urls = &urls, .connect_timeout_s = 5, .name = "flood"};
    struct task__conn *cn = NULL;
    task_error err = {0};
    if (task__conn_open(&cn, &o, &err) != 0)
        fail_msg("connect: %s", err.msg);
    assert_int_equal(task__conn_channel_open(cn, 1), 0);
    return cn;
}

/* Read confirms until every publish up to `seq` is acked; a nack fails the test. */
static void wait_confirms(struct task__conn *cn, uint64_t seq, uint64_t *acked)
{
    while (*acked < seq) {
        amqp_frame_t f;
        int rc = task__conn_next_frame(cn, &f, 10000, NULL);
        if (rc <= 0)
            fail_msg("waiting for confirms: %s", rc == 0 ? "timeout" : task__conn_errmsg(cn));
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        if (f.payload.method.id == AMQP_BASIC_NACK_METHOD)
            fail_msg("the broker refused a publish");
        if (f.payload.method.id != AMQP_BASIC_ACK_METHOD)
            continue;
        amqp_basic_ack_t *a = f.payload.method.decoded;
        *acked = a->delivery_tag > *acked ? a->delivery_tag : *acked;
        task__conn_release_buffers(cn);
    }
}

struct flood {
    long n, bad, valid;
    long per_kind[NKINDS];
};

/* Publish the flood to `q`; message i is valid when i % VALID_EVERY == VALID_EVERY - 1. */
static void publish_flood(const char *q, struct flood *fl)
{
    struct task__conn *cn = open_conn();
    assert_int_equal(task__conn_confirm_select(cn, 1), 0);
    static struct msg m;
    uint64_t seq = 0, acked = 0;
    for (long i = 0; i < fl->n; i++) {
        if (i % VALID_EVERY == VALID_EVERY - 1) {
            base(&m, VALID_PREFIX, fl->valid++, "valid", i);
        } else {
            long b = fl->bad++;
            int k = (int)(b % NKINDS);
            long nth = fl->per_kind[k]++;
            base(&m, BAD_PREFIX, b, kinds[k].name, i);
            kinds[k].make(&m, nth);
        }
        if (task__conn_publish(cn, 1, "", q, &m.p, m.body, m.len, &seq) != 0)
            fail_msg("publish %ld: %s", i, task__conn_errmsg(cn));
        if (seq - acked >= 2000)
            wait_confirms(cn, seq - 1000, &acked);
    }
    wait_confirms(cn, seq, &acked);
    task__conn_close(cn);
}

struct dead_count {
    long total, no_header, wrong_reason, dups, foreign, headers_lost;
    long per_kind[NKINDS];
    unsigned char *seen; /* by message_id */
};

/* Check one quarantined copy: tagged by us, once, with a reason its kind allows. */
static void check_dead(struct dead_count *dc, long n, const amqp_basic_properties_t *p)
{
    char id[24] = "";
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        snprintf(id, sizeof(id), "%.*s", (int)p->message_id.len, (char *)p->message_id.bytes);
    long seq = strtol(id, NULL, 10);
    int k = (p->_flags & AMQP_BASIC_TYPE_FLAG) ? kind_index(p->type) : -1;
    if (k < 0 || seq < 0 || seq >= n) {
        dc->foreign++;
        return;
    }
    dc->total++;
    dc->per_kind[k]++;
    if (dc->seen[seq]++)
        dc->dups++;
    const amqp_field_value_t *why = NULL;
    int pads = 0;
    for (int i = 0; (p->_flags & AMQP_BASIC_HEADERS_FLAG) && i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        if (e->key.len == 13 && memcmp(e->key.bytes, "x-taskd-error", 13) == 0)
            why = &e->value;
        pads += e->key.len > 6 && memcmp(e->key.bytes, "x-pad-", 6) == 0;
    }
    if (kinds[k].make == k_many_headers && pads != NPAD && dc->headers_lost++ == 0)
        printf("dead copy of a message with %d extra headers has %d\n", NPAD, pads);
    if (why == NULL || why->kind != AMQP_FIELD_KIND_UTF8) {
        dc->no_header++;
        return;
    }
    const char *text = why->value.bytes.bytes, *colon = memchr(text, ':', why->value.bytes.len);
    char slug[40];
    snprintf(slug, sizeof(slug), "%.*s", colon ? (int)(colon - text) : 0, text);
    const char *hit = slug[0] ? strstr(kinds[k].slugs, slug) : NULL;
    size_t sl = strlen(slug);
    if (hit == NULL || (hit[sl] != ' ' && hit[sl] != '\0')) {
        if (dc->wrong_reason++ < 5)
            printf("kind %s quarantined as '%.*s'\n", kinds[k].name, (int)why->value.bytes.len,
                   text);
    }
}

/* Drain `dead`: until `want` copies came and then 2 s of quiet, 60 s without any copy (the
 * rest is not coming), or the deadline. */
static void read_dead(const char *dead, long want, long n, struct dead_count *dc, double deadline)
{
    struct task__conn *cn = open_conn();
    assert_int_equal(task__conn_qos(cn, 1, 1000), 0);
    assert_int_equal(task__conn_consume(cn, 1, dead, false, amqp_empty_table, NULL), 0);
    double quiet_until = 0, last = itest_now();
    while (itest_now() < deadline && itest_now() - last < 60) {
        if (dc->total >= want && quiet_until == 0)
            quiet_until = itest_now() + 2;
        if (quiet_until > 0 && itest_now() > quiet_until)
            break;
        amqp_frame_t f;
        int rc = task__conn_next_frame(cn, &f, 200, NULL);
        if (rc < 0)
            fail_msg("reading %s: %s", dead, task__conn_errmsg(cn));
        if (rc == 0 || f.frame_type != AMQP_FRAME_METHOD ||
            f.payload.method.id != AMQP_BASIC_DELIVER_METHOD)
            continue;
        struct task__delivery d;
        assert_int_equal(task__conn_read_delivery(cn, &f, &d), 0);
        check_dead(dc, n, &d.msg.properties);
        last = itest_now();
        task__conn_ack(cn, 1, d.tag, false);
        task__delivery_free(&d);
        task__conn_release_buffers(cn);
    }
    task__conn_close(cn);
}

/* ---------------------------------------------------------------- the test */

static long flood_size(const char **why)
{
    const char *env = getenv("TASKD_FAULT_FLOOD_N");
    if (env != NULL && atol(env) > 0) {
        *why = "TASKD_FAULT_FLOOD_N";
        return atol(env);
    }
    *why = "default";
    return N_DEFAULT;
}

static void same_pids(const struct itest_worker *wk, const pid_t *before, int nbefore)
{
    pid_t now[16];
    int n = fault_children(wk->pid, now, 16);
    assert_true(itest_worker_alive(wk));
    assert_int_equal(n, nbefore);
    for (int i = 0; i < nbefore; i++) {
        bool found = false;
        for (int j = 0; j < n; j++)
            found = found || now[j] == before[i];
        if (!found)
            fail_msg("pool child %d is gone: a child crashed", (int)before[i]);
    }
}

/* The worker still answers: a libtask call round trip. */
static void still_answers(const char *q)
{
    task_client *c = fault_client(q);
    json_object *a = json_tokener_parse("[20, 22]");
    task_id id;
    assert_int_equal(task_send(c, "test.add", a, NULL, NULL, &id), 0);
    json_object_put(a);
    task_state st;
    json_object *res = NULL;
    assert_int_equal(task_wait(c, id.str, 30000, &st, &res), 0);
    assert_int_equal(st, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(res), 42);
    json_object_put(res);
    task_client_free(c);
}

static void malformed_flood_quarantines_every_bad_message(void **state)
{
    (void)state;
    const char *why;
    struct flood fl = {.n = flood_size(&why)};
    char q[64], dead[80], dead_env[120], size_env[80], depth_env[80];
    snprintf(q, sizeof(q), "t_fault_flood_%d", (int)getpid());
    snprintf(dead, sizeof(dead), "%s.dead", q);
    snprintf(dead_env, sizeof(dead_env), "TASKD_WORKER_DEAD_QUEUE=%s", dead);
    snprintf(size_env, sizeof(size_env), "TASKD_WORKER_MAX_MESSAGE_SIZE=%d", MAX_SIZE);
    snprintf(depth_env, sizeof(depth_env), "TASKD_WORKER_JSON_MAX_DEPTH=%d", MAX_DEPTH);
    const char *env[] = {dead_env, size_env, depth_env, NULL};
    /* info, not debug: one line per quarantined message is enough */
    const char *args[] = {"-c", "2", "--loglevel", "info", NULL};
    assert_int_equal(itest_worker_start(&fault_worker, q, env, args), 0);
    pid_t kids[16];
    int nkids = fault_children(fault_worker.pid, kids, 16);
    assert_int_equal(nkids, 2);

    double t0 = itest_now(), wall0 = (double)time(NULL);
    publish_flood(q, &fl);
    double published_s = itest_now() - t0;
    struct want wt = {.prefix = VALID_PREFIX, .n = (int)fl.valid,
                      .seen = calloc((size_t)fl.valid, 1)};
    int valid_ok = fault_collect(wall0, &wt, itest_now() + 600);
    struct dead_count dc = {.seen = calloc((size_t)fl.n, 1)};
    read_dead(dead, fl.bad, fl.n, &dc, itest_now() + 600);
    double total_s = itest_now() - t0;
    printf("malformed flood: sent=%ld bad=%ld dead=%ld valid=%ld valid_ok=%d dups=%ld "
           "no_header=%ld wrong_reason=%ld headers_lost=%ld kinds=%d n_from=%s%s publish_s=%.1f "
           "total_s=%.1f\n",
           fl.n, fl.bad, dc.total, fl.valid, valid_ok, dc.dups, dc.no_header, dc.wrong_reason,
           dc.headers_lost, NKINDS, why, UNDER_ASAN ? " (asan build)" : "", published_s, total_s);
    for (int k = 0; k < NKINDS; k++)
        if (dc.per_kind[k] != fl.per_kind[k])
            printf("kind %s: sent=%ld dead=%ld\n", kinds[k].name, fl.per_kind[k],
                   dc.per_kind[k]);
    same_pids(&fault_worker, kids, nkids);
    still_answers(q);
    assert_int_equal(dc.foreign, 0);
    assert_int_equal(dc.no_header, 0);
    assert_int_equal(dc.wrong_reason, 0);
    assert_int_equal(dc.dups, 0);
    assert_int_equal(dc.headers_lost, 0);
    assert_int_equal(dc.total, fl.bad);
    assert_int_equal(valid_ok, fl.valid);
    free(wt.seen);
    free(dc.seen);
    assert_int_equal(itest_worker_stop(&fault_worker, SIGTERM, 30), 0);
    /* UBSan reports and goes on: its findings would only be in the log. */
    assert_false(itest_file_has(fault_worker.log, "runtime error:"));
    assert_false(itest_file_has(fault_worker.log, "Sanitizer"));
    unlink(fault_worker.log); /* tens of MB of quarantine lines, no longer needed */
}

int main(void)
{
    itest_broker();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(malformed_flood_quarantines_every_bad_message, fault_stop_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
