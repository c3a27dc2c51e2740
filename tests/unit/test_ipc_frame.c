/*
 * test_ipc_frame.c - the supervisor <-> child frames (ipc_frame.h): the frames each side writes
 * today validate with every field read back; a wrong type, a missing field or a value out of
 * range is refused with a reason naming the field, never read as a default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include <task/task.h>
#include "ipc_frame.h"

static json_object *parse(const char *text)
{
    json_object *o = json_tokener_parse(text);
    assert_non_null(o);
    return o;
}

static void job_frame_reads_back_every_field(void **state)
{
    (void)state;
    json_object *o = parse("{\"jid\":7,\"task\":\"test.add\",\"id\":\"abc\",\"args\":[1,2],"
                           "\"kwargs\":{\"x\":1},\"retries\":3,\"soft\":2.5}");
    struct ipc_down d;
    char why[200] = "";
    assert_int_equal(ipc_down_read(o, &d, why, sizeof(why)), 0);
    assert_int_equal(d.kind, IPC_DOWN_JOB);
    assert_int_equal(d.jid, 7);
    assert_string_equal(d.task, "test.add");
    assert_string_equal(d.id, "abc");
    assert_int_equal(json_object_array_length(d.args), 2);
    assert_true(json_object_is_type(d.kwargs, json_type_object));
    assert_int_equal(d.retries, 3);
    assert_true(d.soft_s == 2.5);
    assert_false(d.cancelled);
    json_object_put(o);
}

static void cancel_frame_needs_only_a_jid(void **state)
{
    (void)state;
    json_object *o = parse("{\"kind\":\"cancel\",\"jid\":9}");
    struct ipc_down d;
    assert_int_equal(ipc_down_read(o, &d, NULL, 0), 0);
    assert_int_equal(d.kind, IPC_DOWN_CANCEL);
    assert_int_equal(d.jid, 9);
    json_object_put(o);
}

static void malformed_job_frames_are_refused_naming_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *frame, *why;
    } cases[] = {
        {"[]", "frame: expected an object"},
        {"{\"task\":\"t\",\"id\":\"i\",\"args\":[],\"kwargs\":{}}", "job frame: jid"},
        {"{\"jid\":0,\"task\":\"t\",\"id\":\"i\",\"args\":[],\"kwargs\":{}}", "job frame: jid"},
        {"{\"jid\":1.5,\"task\":\"t\",\"id\":\"i\",\"args\":[],\"kwargs\":{}}", "job frame: jid"},
        {"{\"jid\":\"1\",\"task\":\"t\",\"id\":\"i\",\"args\":[],\"kwargs\":{}}", "job frame: jid"},
        {"{\"jid\":1,\"id\":\"i\",\"args\":[],\"kwargs\":{}}", "job frame: task"},
        {"{\"jid\":1,\"task\":7,\"id\":\"i\",\"args\":[],\"kwargs\":{}}", "job frame: task"},
        {"{\"jid\":1,\"task\":\"t\",\"id\":null,\"args\":[],\"kwargs\":{}}", "job frame: id"},
        {"{\"jid\":1,\"task\":\"t\",\"id\":\"\",\"args\":[],\"kwargs\":{}}", "job frame: id"},
        {"{\"jid\":1,\"task\":\"t\",\"id\":\"i\",\"args\":{},\"kwargs\":{}}", "job frame: args"},
        {"{\"jid\":1,\"task\":\"t\",\"id\":\"i\",\"args\":[]}", "job frame: kwargs"},
        {"{\"jid\":1,\"task\":\"t\",\"id\":\"i\",\"args\":[],\"kwargs\":{},\"retries\":-1}",
         "job frame: retries"},
        {"{\"jid\":1,\"task\":\"t\",\"id\":\"i\",\"args\":[],\"kwargs\":{},\"soft\":\"5\"}",
         "job frame: soft"},
        {"{\"jid\":1,\"task\":\"t\",\"id\":\"i\",\"args\":[],\"kwargs\":{},\"soft\":-1}",
         "job frame: soft"},
        {"{\"jid\":1,\"task\":\"t\",\"id\":\"i\",\"args\":[],\"kwargs\":{},\"cancelled\":1}",
         "job frame: cancelled"},
        {"{\"kind\":\"stop\",\"jid\":1}", "frame: kind: unknown"},
        {"{\"kind\":1,\"jid\":1}", "frame: kind: expected a string"},
        {"{\"kind\":\"cancel\"}", "cancel frame: jid"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *o = parse(cases[i].frame);
        struct ipc_down d;
        char why[200] = "";
        int rc = ipc_down_read(o, &d, why, sizeof(why));
        if (rc != TASK_EPROTO || strncmp(why, cases[i].why, strlen(cases[i].why)) != 0)
            fail_msg("%s: rc %d, why '%s', expected '%s'", cases[i].frame, rc, why,
                     cases[i].why);
        json_object_put(o);
    }
}

static void done_frame_as_a_child_writes_it_reads_back(void **state)
{
    (void)state;
    json_object *o = parse("{\"jid\":5,\"kind\":\"done\",\"outcome\":1,\"result\":null,"
                           "\"exc_type\":\"ValueError\",\"exc_message\":\"bad\",\"retry_in\":0,"
                           "\"runtime\":0.25,\"cancelled\":false,\"rss_kb\":4096}");
    struct ipc_up u;
    char why[200] = "";
    assert_int_equal(ipc_up_read(o, &u, why, sizeof(why)), 0);
    assert_int_equal(u.kind, IPC_UP_DONE);
    assert_int_equal(u.jid, 5);
    assert_int_equal(u.outcome, TASK_FAIL);
    assert_null(u.result);
    assert_string_equal(u.exc_type, "ValueError");
    assert_string_equal(u.exc_message, "bad");
    assert_true(u.retry_in_s == 0);
    assert_true(u.runtime_s == 0.25);
    assert_int_equal(u.rss_kb, 4096);
    json_object_put(o);

    o = parse("{\"jid\":5,\"kind\":\"progress\",\"meta\":{\"done\":3}}");
    assert_int_equal(ipc_up_read(o, &u, why, sizeof(why)), 0);
    assert_int_equal(u.kind, IPC_UP_PROGRESS);
    assert_true(json_object_is_type(u.meta, json_type_object));
    json_object_put(o);

    o = parse("{\"jid\":5,\"kind\":\"done\",\"outcome\":0,\"result\":[1]}");
    assert_int_equal(ipc_up_read(o, &u, why, sizeof(why)), 0);
    assert_true(u.retry_in_s < 0);
    assert_int_equal(u.rss_kb, -1);
    assert_string_equal(u.exc_type, "");
    json_object_put(o);
}

static void malformed_up_frames_are_refused_naming_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *frame, *why;
    } cases[] = {
        {"7", "frame: expected an object"},
        {"{\"jid\":1}", "frame: kind"},
        {"{\"jid\":1,\"kind\":\"finished\"}", "frame: kind: unknown"},
        {"{\"kind\":\"done\",\"outcome\":0}", "done frame: jid"},
        {"{\"jid\":-3,\"kind\":\"progress\"}", "progress frame: jid"},
        {"{\"jid\":1,\"kind\":\"done\"}", "done frame: outcome"},
        {"{\"jid\":1,\"kind\":\"done\",\"outcome\":\"0\"}", "done frame: outcome"},
        {"{\"jid\":1,\"kind\":\"done\",\"outcome\":4294967296}", "done frame: outcome"},
        {"{\"jid\":1,\"kind\":\"done\",\"outcome\":0,\"exc_type\":[]}", "done frame: exc_type"},
        {"{\"jid\":1,\"kind\":\"done\",\"outcome\":0,\"exc_message\":1}",
         "done frame: exc_message"},
        {"{\"jid\":1,\"kind\":\"done\",\"outcome\":0,\"retry_in\":NaN}", "done frame: retry_in"},
        {"{\"jid\":1,\"kind\":\"done\",\"outcome\":0,\"runtime\":-1}", "done frame: runtime"},
        {"{\"jid\":1,\"kind\":\"done\",\"outcome\":0,\"rss_kb\":-5}", "done frame: rss_kb"},
        {"{\"jid\":1,\"kind\":\"done\",\"outcome\":0,\"cancelled\":\"no\"}",
         "done frame: cancelled"},
        /* Found by fuzz_ipc: the peer's kind was echoed into the reason, newline and all. */
        {"{\"kind\":\"x\\ny\"}", "frame: kind: unknown kind"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *o = parse(cases[i].frame);
        struct ipc_up u;
        char why[200] = "";
        int rc = ipc_up_read(o, &u, why, sizeof(why));
        if (rc != TASK_EPROTO || strncmp(why, cases[i].why, strlen(cases[i].why)) != 0)
            fail_msg("%s: rc %d, why '%s', expected '%s'", cases[i].frame, rc, why,
                     cases[i].why);
        if (strchr(why, '\n') != NULL)
            fail_msg("%s: reason is more than one line", cases[i].frame);
        json_object_put(o);
    }
    /* The same for a child reading a frame of an unknown kind without a jid. */
    json_object *o = parse("{\"kind\":\"x\\ny\"}");
    struct ipc_down d;
    char why[200] = "";
    assert_int_equal(ipc_down_read(o, &d, why, sizeof(why)), TASK_EPROTO);
    assert_string_equal(why, "frame: kind: unknown kind");
    json_object_put(o);
}

static void depth_is_counted_as_json_c_counts_it_and_stops_past_the_limit(void **state)
{
    (void)state;
    json_object *o = parse("[[[1]], {\"a\": [[[[2]]]]}]");
    assert_int_equal(ipc_json_depth(o, 100), 7);
    assert_int_equal(ipc_json_depth(o, 7), 7);
    assert_int_equal(ipc_json_depth(o, 6), 7);
    assert_int_equal(ipc_json_depth(o, 2), 3);
    json_object_put(o);
    o = parse("[[], {}]");
    assert_int_equal(ipc_json_depth(o, 100), 2);
    json_object_put(o);
    assert_int_equal(ipc_json_depth(NULL, 100), 1);
    o = parse("3");
    assert_int_equal(ipc_json_depth(o, 100), 1);
    json_object_put(o);
    /* The count agrees with the tokener's: a document of depth d parses at limit d, not d-1. */
    const char *doc = "{\"a\":[1,{\"b\":[]}]}";
    o = parse(doc);
    int d = ipc_json_depth(o, 100);
    assert_int_equal(d, 4);
    json_object_put(o);
    for (int lim = d - 1; lim <= d; lim++) {
        json_tokener *tok = json_tokener_new_ex(lim);
        json_object *p = json_tokener_parse_ex(tok, doc, (int)strlen(doc));
        if ((p != NULL) != (lim == d))
            fail_msg("tokener at depth %d: %s", lim, p ? "parsed" : "refused");
        json_object_put(p);
        json_tokener_free(tok);
    }
}

/* What the writers make, the readers read back field for field (both sides use them). */
static void writers_round_trip(void **state)
{
    (void)state;
    json_object *args = parse("[1, \"two\"]"), *kwargs = parse("{\"k\": null}");
    struct ipc_down d = {.kind = IPC_DOWN_JOB, .jid = 9, .task = "t.add", .id = "abc",
                         .args = args, .kwargs = kwargs, .retries = 3, .soft_s = 1.5,
                         .cancelled = true};
    json_object *o = ipc_down_write(&d);
    struct ipc_down back;
    assert_int_equal(ipc_down_read(o, &back, NULL, 0), 0);
    assert_int_equal(back.kind, IPC_DOWN_JOB);
    assert_int_equal(back.jid, 9);
    assert_string_equal(back.task, "t.add");
    assert_string_equal(back.id, "abc");
    assert_true(json_object_equal(back.args, args));
    assert_true(json_object_equal(back.kwargs, kwargs));
    assert_int_equal(back.retries, 3);
    assert_true(back.soft_s == 1.5);
    assert_true(back.cancelled);
    json_object_put(o);
    d = (struct ipc_down){.kind = IPC_DOWN_CANCEL, .jid = 4};
    o = ipc_down_write(&d);
    assert_int_equal(ipc_down_read(o, &back, NULL, 0), 0);
    assert_int_equal(back.kind, IPC_DOWN_CANCEL);
    assert_int_equal(back.jid, 4);
    json_object_put(o);

    struct ipc_up u = {.kind = IPC_UP_DONE, .jid = 7, .outcome = TASK_RETRY, .result = args,
                       .exc_type = "ValueError", .exc_message = "bad", .retry_in_s = 2,
                       .runtime_s = 0.25, .cancelled = true, .soft_expired = true, .rss_kb = 512};
    o = ipc_up_write(&u);
    struct ipc_up ub;
    assert_int_equal(ipc_up_read(o, &ub, NULL, 0), 0);
    assert_int_equal(ub.kind, IPC_UP_DONE);
    assert_int_equal(ub.jid, 7);
    assert_int_equal(ub.outcome, TASK_RETRY);
    assert_true(json_object_equal(ub.result, args));
    assert_string_equal(ub.exc_type, "ValueError");
    assert_string_equal(ub.exc_message, "bad");
    assert_true(ub.retry_in_s == 2 && ub.runtime_s == 0.25);
    assert_true(ub.cancelled && ub.soft_expired);
    assert_int_equal(ub.rss_kb, 512);
    assert_ptr_equal(ub.frame, o);
    json_object_put(o);
    u = (struct ipc_up){.kind = IPC_UP_PROGRESS, .jid = 7, .meta = kwargs};
    o = ipc_up_write(&u);
    assert_int_equal(ipc_up_read(o, &ub, NULL, 0), 0);
    assert_int_equal(ub.kind, IPC_UP_PROGRESS);
    assert_true(json_object_equal(ub.meta, kwargs));
    json_object_put(o);
    json_object_put(args);
    json_object_put(kwargs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(job_frame_reads_back_every_field),
        cmocka_unit_test(writers_round_trip),
        cmocka_unit_test(cancel_frame_needs_only_a_jid),
        cmocka_unit_test(malformed_job_frames_are_refused_naming_the_field),
        cmocka_unit_test(done_frame_as_a_child_writes_it_reads_back),
        cmocka_unit_test(malformed_up_frames_are_refused_naming_the_field),
        cmocka_unit_test(depth_is_counted_as_json_c_counts_it_and_stops_past_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
