/*
 * test_records.c - JSON read from outside by libtask: the typed field getters, stream records
 * (taskd.revoked), results-stream records (lookups), and the bound on the replies table. A
 * 22-byte {"taskd_marker": null} once crashed every worker at start, and a results record with a
 * null task_id crashed lookups (issue 15).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "internal.h"
#include "replies.h"

static void getters_return_only_the_asked_type(void **state)
{
    (void)state;
    json_object *o = json_tokener_parse(
        "{\"s\":\"x\",\"n\":null,\"i\":5,\"d\":1.5,\"a\":[\"y\",null,3],\"o\":{},\"b\":true,"
        "\"f\":false,\"big\":9007199254740993}");
    assert_non_null(o);
    assert_string_equal(task__json_get_str(o, "s"), "x");
    assert_null(task__json_get_str(o, "n"));
    assert_null(task__json_get_str(o, "i"));   /* no "5" from a number */
    assert_null(task__json_get_str(o, "a"));
    assert_null(task__json_get_str(o, "missing"));
    assert_null(task__json_get_str(NULL, "s"));
    assert_null(task__json_get_str(task__json_get_arr(o, "a"), "s")); /* not an object */
    assert_non_null(task__json_get_obj(o, "o"));
    assert_null(task__json_get_obj(o, "n"));
    assert_null(task__json_get_obj(o, "a"));
    assert_non_null(task__json_get_arr(o, "a"));
    assert_null(task__json_get_arr(o, "o"));
    int64_t v = -1;
    assert_int_equal(task__json_get_int(o, "i", &v), 0);
    assert_int_equal(v, 5);
    assert_int_equal(task__json_get_int(o, "big", &v), 0);
    assert_true(v == 9007199254740993LL);
    v = -1;
    assert_int_equal(task__json_get_int(o, "d", &v), TASK_EPROTO);
    assert_int_equal(task__json_get_int(o, "s", &v), TASK_EPROTO);
    assert_int_equal(task__json_get_int(o, "n", &v), TASK_EPROTO);
    assert_int_equal(v, -1);
    assert_true(task__json_get_bool(o, "b"));
    assert_false(task__json_get_bool(o, "f"));
    assert_false(task__json_get_bool(o, "s")); /* a non-empty string is not true */
    assert_false(task__json_get_bool(o, "i"));
    json_object *a = task__json_get_arr(o, "a");
    assert_string_equal(task__json_idx_str(a, 0), "y");
    assert_null(task__json_idx_str(a, 1));
    assert_null(task__json_idx_str(a, 2));
    assert_null(task__json_idx_str(a, 3));
    assert_null(task__json_idx_str(o, 0));
    json_object_put(o);
}

/* ---- stream records ---- */

struct seen {
    int records;
    int ids;
    char last[300];
};

static void on_record(json_object *rec, void *ud)
{
    struct seen *s = ud;
    s->records++;
    const char *id = task__revoked_record_id(rec);
    if (id != NULL) {
        s->ids++;
        snprintf(s->last, sizeof(s->last), "%s", id);
    }
}

static int body(const char *text, const char *marker, struct seen *s, bool *marker_seen,
                unsigned *rejected)
{
    return task__stream_body(text, strlen(text), marker, on_record, s, marker_seen, rejected);
}

static void null_marker_is_skipped_not_compared(void **state)
{
    (void)state;
    struct seen s = {0};
    bool m = false;
    unsigned rej = 0;
    const char *rec = "{\"taskd_marker\": null}";
    assert_int_equal(strlen(rec), 22);
    assert_int_equal(body(rec, "a-marker", &s, &m, &rej), 0);
    assert_false(m);
    assert_int_equal(rej, 1);
    assert_int_equal(s.records, 0);
    const char *bad[] = {"{\"taskd_marker\": 5}", "{\"taskd_marker\": []}",
                         "{\"taskd_marker\": {}}", "[{\"taskd_marker\": null}]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(body(bad[i], "a-marker", &s, &m, &rej), 0);
    assert_false(m);
    assert_int_equal(rej, 5);
    assert_int_equal(body("{\"taskd_marker\": \"other\"}", "a-marker", &s, &m, &rej), 0);
    assert_false(m);
    assert_int_equal(rej, 5);
    assert_int_equal(body("[{\"task_id\":\"x\"},{\"taskd_marker\":\"a-marker\"}]", "a-marker", &s,
                          &m, &rej),
                     0);
    assert_true(m);
    assert_int_equal(s.ids, 1);
}

static void revoked_records_need_a_string_id(void **state)
{
    (void)state;
    struct seen s = {0};
    bool m = false;
    unsigned rej = 0;
    const char *junk[] = {"{\"task_id\": null}", "{\"task_id\": 5}", "{\"task_id\": [\"x\"]}",
                          "{\"task_id\": \"\"}", "{}", "{\"revoked_at\": \"2026\"}"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        assert_int_equal(body(junk[i], NULL, &s, &m, &rej), 0);
    assert_int_equal(s.records, 6); /* objects reach the reader, which refuses them */
    assert_int_equal(s.ids, 0);
    /* Not objects, not JSON: refused before the reader. */
    const char *worse[] = {"[1, null, \"x\", []]", "null", "\"x\"", "not json", "{\"a\":",
                           "\xff\xfe"};
    for (size_t i = 0; i < sizeof(worse) / sizeof(worse[0]); i++)
        (void)body(worse[i], NULL, &s, &m, &rej);
    assert_int_equal(rej, 4 + 1 + 1 + 3);
    assert_int_equal(body("not json", NULL, &s, &m, &rej), TASK_EPROTO);
    char big[400];
    snprintf(big, sizeof(big), "{\"task_id\": \"%0300d\"}", 1);
    assert_int_equal(body(big, NULL, &s, &m, &rej), 0);
    assert_int_equal(s.ids, 0); /* longer than an id can be */
    assert_int_equal(body("[{\"task_id\": \"good-1\"}, {\"task_id\": null}]", NULL, &s, &m, &rej),
                     0);
    assert_int_equal(s.ids, 1);
    assert_string_equal(s.last, "good-1");
}

/* ---- results-stream records ---- */

static int results(const char *text, const char *id, struct task__replies *r, bool *m, bool *fin,
                   unsigned *rej)
{
    return task__results_body(text, strlen(text), id, "mk", r, m, fin, rej);
}

static void results_records_with_null_fields_are_skipped(void **state)
{
    (void)state;
    struct task__replies r;
    assert_int_equal(task__replies_init(&r), 0);
    bool m = false, fin = false;
    unsigned rej = 0;
    const char *id = "id-1";
    /* memmem() lets these through to the parser: each names the id somewhere. */
    const char *junk[] = {
        "{\"task_id\": null, \"status\": \"SUCCESS\", \"x\": \"id-1\"}",
        "{\"task_id\": \"id-1\", \"status\": null}",
        "{\"task_id\": \"id-1\"}",
        "{\"task_id\": 1, \"status\": \"SUCCESS\", \"x\": \"id-1\"}",
        "[null, 1, \"id-1\", {\"task_id\": null, \"status\": null}]",
        "{\"taskd_marker\": null, \"task_id\": \"id-1\"}",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        assert_int_equal(results(junk[i], id, &r, &m, &fin, &rej), 0);
    assert_int_equal(rej, 4 + 4 + 1);
    assert_int_equal(r.count, 0);
    assert_false(m);
    assert_false(fin);
    assert_int_equal(results("{\"task_id\": \"id-1\", \"status\": \"STARTED\"}", id, &r, &m, &fin,
                             &rej),
                     0);
    assert_false(fin);
    assert_int_equal(results("[{\"task_id\": \"id-1\", \"status\": \"SUCCESS\", \"result\": 4},"
                             "{\"task_id\": \"id-1\", \"status\": \"PROGRESS\"}]",
                             id, &r, &m, &fin, &rej),
                     0);
    assert_true(fin);
    struct task__reply *e = task__replies_find(&r, id);
    assert_non_null(e);
    assert_int_equal(e->state, TASK_STATE_SUCCESS);
    assert_int_equal(json_object_get_int(e->result), 4);
    assert_int_equal(results("{\"taskd_marker\": \"mk\"}", id, &r, &m, &fin, &rej), 0);
    assert_true(m);
    task__replies_free(&r);
}

/* ---- the bound ---- */

static void replies_drop_the_oldest_past_max(void **state)
{
    (void)state;
    struct task__replies r;
    assert_int_equal(task__replies_init(&r), 0);
    assert_int_equal(r.max, TASK__REPLIES_MAX);
    r.max = 100;
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "id-%d", i);
        assert_int_equal(task__replies_put(&r, id, "SUCCESS", json_object_new_int(i)), 0);
        if (i == 50) /* a new state refreshes id-10: it is now younger than id-11..id-50 */
            assert_int_equal(task__replies_put(&r, "id-10", "SUCCESS", NULL), 0);
    }
    assert_int_equal(r.count, 100);
    assert_int_equal(r.evicted, 4900);
    assert_null(task__replies_find(&r, "id-0"));
    assert_null(task__replies_find(&r, "id-10"));
    assert_null(task__replies_find(&r, "id-4899"));
    assert_non_null(task__replies_find(&r, "id-4900"));
    assert_non_null(task__replies_find(&r, "id-4999"));
    /* The age list and the buckets agree after removals in the middle and at both ends. */
    task__replies_remove(&r, "id-4950");
    task__replies_remove(&r, "id-4900");
    task__replies_remove(&r, "id-4999");
    assert_int_equal(r.count, 97);
    size_t n = 0;
    for (struct task__reply *e = r.oldest; e != NULL; e = e->newer) {
        assert_non_null(task__replies_find(&r, e->id));
        assert_true(e->newer == NULL || e->newer->older == e);
        n++;
    }
    assert_int_equal(n, 97);
    assert_string_equal(r.oldest->id, "id-4901");
    assert_string_equal(r.newest->id, "id-4998");
    task__replies_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(getters_return_only_the_asked_type),
        cmocka_unit_test(null_marker_is_skipped_not_compared),
        cmocka_unit_test(revoked_records_need_a_string_id),
        cmocka_unit_test(results_records_with_null_fields_are_skipped),
        cmocka_unit_test(replies_drop_the_oldest_past_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
