/*
 * test_limits.c - one table of limits (task_limits.h) for every reader: a task message at the
 * depth limit runs, and what it can hand back (its args echoed as a result) is readable by a
 * lookup's record parser, by a client's result decoder and through the pool's IPC frames; one
 * level more is refused, never half-read. The config cannot lift a worker past what lookups read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include <task/config.h>
#include "codec.h"
#include "internal.h"
#include "replies.h"
#include "ipc.h"
#include "task_limits.h"

_Static_assert(TASK__RESULT_MAX_DEPTH >= TASK__JSON_MAX_DEPTH - 2,
               "an echoed argument (2 levels under the body) must be a publishable result");
_Static_assert(TASK__IPC_MAX_DEPTH > TASK__JSON_MAX_DEPTH,
               "a frame must carry a too-deep result to the supervisor, which refuses it");

/* A value `depth` levels deep as the tokener counts (task_limits.h): "[[...[1]...]]", depth 1
 * is "1". New reference. */
static json_object *nested(int depth)
{
    json_object *o = json_object_new_int(1);
    for (int i = 1; i < depth; i++) {
        json_object *a = json_object_new_array();
        json_object_array_add(a, o);
        o = a;
    }
    return o;
}

/* Encode a task whose first argument is `depth` levels deep; its body is depth + 2 deep. */
static int decode_with_arg_depth(int depth, const struct task__limits *lim, enum task__bad *why)
{
    json_object *args = json_object_new_array();
    json_object_array_add(args, nested(depth));
    struct task__msg m = {.id = "0f7a3c52-6b1e-4d8e-9a47-1c2b3d4e5f60", .task = "test.echo",
                          .args = args};
    struct task__wire w;
    task_error err = {0};
    assert_int_equal(task__msg_encode(&m, &w, &err), 0);
    struct task__msg out;
    int rc = task__msg_decode(&w.props, w.body, w.body_len, lim, &out, why, &err);
    task__msg_clear(&out);
    task__wire_free(&w);
    json_object_put(args);
    return rc;
}

static void task_message_at_the_depth_limit_runs_and_one_past_is_too_deep(void **state)
{
    (void)state;
    enum task__bad why;
    /* No limits given: the codec's own default. */
    assert_int_equal(decode_with_arg_depth(TASK__JSON_MAX_DEPTH - 2, NULL, &why), 0);
    assert_int_equal(decode_with_arg_depth(TASK__JSON_MAX_DEPTH - 1, NULL, &why), TASK_EPROTO);
    assert_int_equal(why, TASK_BAD_TOO_DEEP);
    /* A worker's limits come from its config: by default the same numbers. */
    task_config *cfg = task_config_new();
    assert_non_null(cfg);
    struct task__limits lim = {.max_body_bytes = (size_t)cfg->max_message_bytes,
                               .max_depth = cfg->json_max_depth};
    assert_int_equal(decode_with_arg_depth(TASK__JSON_MAX_DEPTH - 2, &lim, &why), 0);
    assert_int_equal(decode_with_arg_depth(TASK__JSON_MAX_DEPTH - 1, &lim, &why), TASK_EPROTO);
    assert_int_equal(why, TASK_BAD_TOO_DEEP);
    task_config_free(cfg);
}

static void config_defaults_are_the_table_and_depth_cannot_pass_it(void **state)
{
    (void)state;
    task_config *cfg = task_config_new();
    assert_non_null(cfg);
    assert_int_equal(cfg->json_max_depth, TASK__JSON_MAX_DEPTH);
    assert_int_equal(cfg->max_message_bytes, (int)TASK__MAX_MESSAGE_BYTES);
    task_error err = {0};
    char v[16];
    snprintf(v, sizeof(v), "%d", TASK__JSON_MAX_DEPTH);
    assert_int_equal(task_config_set(cfg, "worker.json_max_depth", v, "test", &err), 0);
    snprintf(v, sizeof(v), "%d", TASK__JSON_MAX_DEPTH + 1);
    assert_int_equal(task_config_set(cfg, "worker.json_max_depth", v, "test", &err),
                     TASK_ECONFIG);
    assert_non_null(strstr(err.msg, "out of range"));
    task_config_free(cfg);
}

/* A results-stream message as a worker batches it: [ {task_id, status, result}, ... ]. */
static char *stream_batch(int result_depth, size_t *len)
{
    json_object *rec = json_object_new_object();
    json_object_object_add(rec, "task_id",
                           json_object_new_string("0f7a3c52-6b1e-4d8e-9a47-1c2b3d4e5f60"));
    json_object_object_add(rec, "status", json_object_new_string("SUCCESS"));
    json_object_object_add(rec, "result", nested(result_depth));
    json_object *batch = json_object_new_array();
    json_object_array_add(batch, rec);
    char *text = strdup(json_object_to_json_string_ext(batch, JSON_C_TO_STRING_PLAIN));
    *len = strlen(text);
    json_object_put(batch);
    return text;
}

/* A lookup's record parser (lookup.c) on one results-stream message: did it find the record? */
static bool lookup_reads(int result_depth)
{
    size_t len;
    char *t = stream_batch(result_depth, &len);
    struct task__replies r;
    assert_int_equal(task__replies_init(&r), 0);
    bool marker = false, final = false;
    unsigned rejected = 0;
    int rc = task__results_body(t, len, "0f7a3c52-6b1e-4d8e-9a47-1c2b3d4e5f60", NULL, &r,
                                &marker, &final, &rejected);
    bool found = rc == 0 && final;
    task__replies_free(&r);
    free(t);
    return found;
}

static void result_at_the_limit_is_readable_by_a_lookup_and_one_past_is_not(void **state)
{
    (void)state;
    /* The deepest argument a worker takes, echoed back as its result... */
    assert_true(lookup_reads(TASK__JSON_MAX_DEPTH - 2));
    /* ...and the deepest result a worker may publish. */
    assert_true(lookup_reads(TASK__RESULT_MAX_DEPTH));
    assert_false(lookup_reads(TASK__RESULT_MAX_DEPTH + 1));
    /* The stream replay (stream.c) reads at the same depth. */
    size_t len;
    enum task__bad why;
    char *t = stream_batch(TASK__RESULT_MAX_DEPTH + 1, &len);
    assert_null(task__json_parse(t, len, TASK__JSON_MAX_DEPTH, &why, NULL));
    assert_int_equal(why, TASK_BAD_TOO_DEEP);
    free(t);
}

static void result_message_at_the_limit_decodes_for_a_client(void **state)
{
    (void)state;
    json_object *msg = json_object_new_object();
    json_object_object_add(msg, "task_id",
                           json_object_new_string("0f7a3c52-6b1e-4d8e-9a47-1c2b3d4e5f60"));
    json_object_object_add(msg, "status", json_object_new_string("SUCCESS"));
    json_object_object_add(msg, "result", nested(TASK__RESULT_MAX_DEPTH));
    const char *text = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);
    struct task__result r;
    task_error err = {0};
    assert_int_equal(task__result_decode(text, strlen(text), &r, &err), 0);
    task__result_clear(&r);
    json_object_put(msg);
}

/* Frame `o` as ipc_send() does, into a receive buffer. */
static void frame_into(struct ipc_buf *b, const char *text, size_t n)
{
    b->p = realloc(b->p, b->len + 4 + n);
    uint32_t hdr = htonl((uint32_t)n);
    memcpy(b->p + b->len, &hdr, 4);
    memcpy(b->p + b->len + 4, text, n);
    b->len += 4 + n;
    b->cap = b->len;
}

static void ipc_carries_the_deepest_job_and_a_too_deep_result(void **state)
{
    (void)state;
    struct ipc_buf b = {0};
    /* The job frame of the deepest task body: {"args": [arg]} like the body's [[arg], ...]. */
    json_object *job = json_object_new_object();
    json_object *args = json_object_new_array();
    json_object_array_add(args, nested(TASK__JSON_MAX_DEPTH - 2));
    json_object_object_add(job, "args", args);
    const char *text = json_object_to_json_string_ext(job, JSON_C_TO_STRING_PLAIN);
    frame_into(&b, text, strlen(text));
    /* A done frame whose result is deeper than any reader takes: the supervisor must see it
     * to fail that one task, not lose the child over it. */
    json_object *done = json_object_new_object();
    json_object_object_add(done, "result", nested(TASK__RESULT_MAX_DEPTH + 10));
    text = json_object_to_json_string_ext(done, JSON_C_TO_STRING_PLAIN);
    frame_into(&b, text, strlen(text));
    int bad = 0;
    json_object *o = ipc_next(&b, &bad);
    assert_non_null(o);
    assert_int_equal(bad, 0);
    json_object_put(o);
    o = ipc_next(&b, &bad);
    assert_non_null(o);
    assert_int_equal(bad, 0);
    json_object_put(o);
    assert_null(ipc_next(&b, &bad));
    assert_int_equal(bad, 0);
    json_object_put(job);
    json_object_put(done);
    ipc_buf_free(&b);
}

static void ipc_frame_with_trailing_bytes_is_broken(void **state)
{
    (void)state;
    static const char *broken[] = {"{}x", "{\"jid\":1} {}", "12", "[1]]"};
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        struct ipc_buf b = {0};
        frame_into(&b, broken[i], strlen(broken[i]));
        int bad = 0;
        json_object *o = ipc_next(&b, &bad);
        if (o != NULL || bad != 1)
            fail_msg("frame '%s' was taken (bad=%d)", broken[i], bad);
        ipc_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(task_message_at_the_depth_limit_runs_and_one_past_is_too_deep),
        cmocka_unit_test(config_defaults_are_the_table_and_depth_cannot_pass_it),
        cmocka_unit_test(result_at_the_limit_is_readable_by_a_lookup_and_one_past_is_not),
        cmocka_unit_test(result_message_at_the_limit_decodes_for_a_client),
        cmocka_unit_test(ipc_carries_the_deepest_job_and_a_too_deep_result),
        cmocka_unit_test(ipc_frame_with_trailing_bytes_is_broken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
