/*
 * test_stream_reader.c - the stream reader's own decisions, without a broker: where a read
 * starts (x-stream-offset values), the offset a delivery carries, when to ack and to widen the
 * window, where a read ends (the marker, an earlier read's start), and how a message body is
 * split into records.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "internal.h"
#include "stream_reader.h"

static void from_values_are_the_brokers_kinds(void **state)
{
    (void)state;
    amqp_field_value_t v = task__stream_from_first();
    assert_int_equal(v.kind, AMQP_FIELD_KIND_UTF8);
    assert_int_equal(v.value.bytes.len, 5);
    assert_memory_equal(v.value.bytes.bytes, "first", 5);

    v = task__stream_from_time(1700000000.9);
    assert_int_equal(v.kind, AMQP_FIELD_KIND_TIMESTAMP);
    assert_int_equal(v.value.u64, 1700000000); /* whole seconds: never after the time asked */
    assert_int_equal(task__stream_from_time(-5).value.u64, 0);

    v = task__stream_from_offset(123456789012);
    assert_int_equal(v.kind, AMQP_FIELD_KIND_I64);
    assert_int_equal(v.value.i64, 123456789012);
}

static void from_ago(double back_s, const char *want)
{
    char buf[32];
    amqp_field_value_t v = task__stream_from_ago(back_s, buf);
    assert_int_equal(v.kind, AMQP_FIELD_KIND_UTF8);
    assert_int_equal(v.value.bytes.len, strlen(want));
    assert_memory_equal(v.value.bytes.bytes, want, strlen(want));
}

static void intervals_round_up_to_whole_seconds(void **state)
{
    (void)state;
    from_ago(0, "1s"); /* the broker's smallest interval */
    from_ago(0.25, "1s");
    from_ago(1, "1s");
    from_ago(5.25, "6s"); /* up: a read may start early, never late */
    from_ago(60, "60s");
    from_ago(60.001, "61s");
    from_ago(21600.25, "21601s");
}

/* Properties with one header entry. */
static amqp_basic_properties_t with_header(amqp_table_entry_t *e, const char *key,
                                           amqp_field_value_t v)
{
    *e = (amqp_table_entry_t){.key = amqp_cstring_bytes(key), .value = v};
    return (amqp_basic_properties_t){._flags = AMQP_BASIC_HEADERS_FLAG,
                                     .headers = {.num_entries = 1, .entries = e}};
}

static void delivery_offsets_come_from_x_stream_offset(void **state)
{
    (void)state;
    amqp_basic_properties_t none = {0};
    assert_int_equal(task__stream_offset_of(&none), -1);

    amqp_table_entry_t e;
    amqp_basic_properties_t p =
        with_header(&e, "x-stream-offset", task__stream_from_offset(4242));
    assert_int_equal(task__stream_offset_of(&p), 4242);
    p._flags = 0; /* headers not sent: the table is not there */
    assert_int_equal(task__stream_offset_of(&p), -1);

    /* Only the broker's own header, as a signed 64-bit number, counts. */
    p = with_header(&e, "x-stream-offsets", task__stream_from_offset(1));
    assert_int_equal(task__stream_offset_of(&p), -1);
    p = with_header(&e, "x-stream-offset", task__stream_from_first());
    assert_int_equal(task__stream_offset_of(&p), -1);

    amqp_table_entry_t two[2] = {
        {.key = amqp_cstring_bytes("x-other"), .value = task__stream_from_offset(7)},
        {.key = amqp_cstring_bytes("x-stream-offset"), .value = task__stream_from_offset(8)},
    };
    p.headers = (amqp_table_t){.num_entries = 2, .entries = two};
    p._flags = AMQP_BASIC_HEADERS_FLAG;
    assert_int_equal(task__stream_offset_of(&p), 8);
}

static void acks_at_a_quarter_window_or_before_waiting(void **state)
{
    (void)state;
    assert_false(task__stream_ack_due(1, 16, true));
    assert_false(task__stream_ack_due(3, 16, true));
    assert_true(task__stream_ack_due(4, 16, true));
    assert_true(task__stream_ack_due(1, 16, false)); /* nothing buffered: the user will wait */
    assert_false(task__stream_ack_due(499, 2000, true));
    assert_true(task__stream_ack_due(500, 2000, true));
}

static const struct task__stream_window LOOKUP = {.start = 16, .wide = 2000, .after = 512};
static const struct task__stream_window FIXED = {.start = 1000, .wide = 1000, .after = 0};

static void widens_once_after_the_narrow_start(void **state)
{
    (void)state;
    assert_false(task__stream_widen_due(&LOOKUP, 1, 16));
    assert_false(task__stream_widen_due(&LOOKUP, 511, 16));
    assert_true(task__stream_widen_due(&LOOKUP, 512, 16));
    assert_true(task__stream_widen_due(&LOOKUP, 600, 16)); /* until it is done */
    assert_false(task__stream_widen_due(&LOOKUP, 600, 2000));
    assert_false(task__stream_widen_due(&FIXED, 0, 1000));
    assert_false(task__stream_widen_due(&FIXED, 1000000, 1000));
}

/* A reader in a read with window w, as task__stream_reader_start() leaves it (no broker). */
static struct task__stream_reader reading(const struct task__stream_window *w, int64_t stop_at)
{
    struct task__stream_reader r;
    task__stream_reader_init(&r, NULL, 3);
    r.window = *w;
    r.prefetch = w->start;
    r.stop_at = stop_at;
    return r;
}

static void a_read_notes_offsets_and_when_to_widen(void **state)
{
    (void)state;
    struct task__stream_reader r = reading(&LOOKUP, -1);
    assert_int_equal(r.first, -1);
    assert_int_equal(r.offset, -1);
    for (int64_t off = 100; off < 100 + 511; off++) {
        assert_int_equal(task__stream_reader_note(&r, off), TASK__STREAM_RECORD);
        assert_false(r.widen);
    }
    assert_int_equal(r.first, 100);
    assert_int_equal(r.offset, 610);
    assert_int_equal(task__stream_reader_note(&r, 611), TASK__STREAM_RECORD);
    assert_true(r.widen);
    assert_int_equal(r.read, 512);
    /* A message without an offset (not from a stream) does not move the first one. */
    struct task__stream_reader q = reading(&LOOKUP, -1);
    assert_int_equal(task__stream_reader_note(&q, -1), TASK__STREAM_RECORD);
    assert_int_equal(task__stream_reader_note(&q, 5), TASK__STREAM_RECORD);
    assert_int_equal(q.first, 5);
}

static void a_window_ends_where_the_later_read_began(void **state)
{
    (void)state;
    struct task__stream_reader r = reading(&LOOKUP, 1000);
    assert_int_equal(task__stream_reader_note(&r, 998), TASK__STREAM_RECORD);
    assert_int_equal(task__stream_reader_note(&r, 999), TASK__STREAM_RECORD);
    assert_false(r.done);
    assert_int_equal(task__stream_reader_note(&r, 1000), TASK__STREAM_END);
    assert_true(r.done);
    /* What the broker sent before it saw the cancel is not the read's. */
    assert_int_equal(task__stream_reader_note(&r, 1001), TASK__STREAM_SKIP);
    assert_int_equal(r.offset, 1000);

    /* Done set by the user (its marker, a final state) skips the rest too. */
    struct task__stream_reader u = reading(&FIXED, -1);
    u.done = true;
    assert_int_equal(task__stream_reader_note(&u, 1), TASK__STREAM_SKIP);
    assert_int_equal(u.read, 0);
}

/* The broker sees a cancel late: an earlier consumer's deliveries, even the read's own marker
 * among them, are no part of the read (a lookup that parsed them stopped its next window at
 * once: a uuid4 id older than a few minutes was reported PENDING). */
static void an_earlier_consumers_deliveries_are_skipped(void **state)
{
    (void)state;
    struct task__stream_reader r = reading(&LOOKUP, 1000);
    struct task__delivery d = {.tag = 41, .consumer_tag = "amq.ctag-old"};
    assert_int_equal(task__stream_reader_take(&r, &d), TASK__STREAM_SKIP); /* no consumer yet */
    r.consumer = strdup("amq.ctag-new");
    d.tag = 42;
    assert_int_equal(task__stream_reader_take(&r, &d), TASK__STREAM_SKIP);
    d.consumer_tag = NULL;
    d.tag = 43;
    assert_int_equal(task__stream_reader_take(&r, &d), TASK__STREAM_SKIP);
    assert_int_equal(r.tag, 43); /* acked with the next of the read's own, or at its end */
    assert_int_equal(r.read, 0);
    assert_int_equal(r.first, -1);
    assert_false(r.done);
    task__stream_reader_free(&r);
    assert_null(r.consumer);
}

struct seen {
    int n;
    char ids[4][16];
};

static void on_record(json_object *rec, void *ud)
{
    struct seen *s = ud;
    const char *id = task__json_get_str(rec, "task_id");
    if (s->n < 4)
        snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", id != NULL ? id : "?");
    s->n++;
}

static void marker_records_end_the_read_they_belong_to(void **state)
{
    (void)state;
    const char *mk = "6f1c0f0e-2b7a-4c1e-9d7e-0c3a9f1b2d4e";
    char body[80];
    int n = task__stream_marker_body(body, mk);
    assert_int_equal(n, (int)strlen(body));
    struct seen s = {0};
    bool seen = false;
    unsigned rejected = 0;
    assert_int_equal(task__stream_body(body, (size_t)n, mk, on_record, &s, &seen, &rejected), 0);
    assert_true(seen);
    assert_int_equal(s.n, 0); /* a marker is no record */
    assert_int_equal(rejected, 0);
    /* Another reader's marker is passed over, neither seen nor a record. */
    seen = false;
    assert_int_equal(task__stream_body(body, (size_t)n, "other", on_record, &s, &seen, &rejected),
                     0);
    assert_false(seen);
    assert_int_equal(s.n, 0);
}

static void bodies_split_into_records_in_order(void **state)
{
    (void)state;
    const char *batch = "[{\"task_id\":\"a\"},7,{\"taskd_marker\":\"m\"},{\"task_id\":\"b\"},"
                        "{\"taskd_marker\":1},{\"task_id\":\"c\"}]";
    struct seen s = {0};
    bool seen = false;
    unsigned rejected = 0;
    assert_int_equal(task__stream_body(batch, strlen(batch), "m", on_record, &s, &seen, &rejected),
                     0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.ids[0], "a");
    assert_string_equal(s.ids[1], "b");
    assert_string_equal(s.ids[2], "c");
    assert_true(seen);
    assert_int_equal(rejected, 2); /* the number, and the marker that is not a string */

    const char *one = "{\"task_id\":\"d\"}";
    assert_int_equal(task__stream_body(one, strlen(one), NULL, on_record, &s, &seen, &rejected),
                     0);
    assert_int_equal(s.n, 4);
    assert_string_equal(s.ids[3], "d");

    rejected = 0;
    assert_int_equal(task__stream_body("{\"task_id\":", 11, NULL, on_record, &s, &seen, &rejected),
                     TASK_EPROTO);
    assert_int_equal(rejected, 1);
    assert_int_equal(s.n, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(from_values_are_the_brokers_kinds),
        cmocka_unit_test(intervals_round_up_to_whole_seconds),
        cmocka_unit_test(delivery_offsets_come_from_x_stream_offset),
        cmocka_unit_test(acks_at_a_quarter_window_or_before_waiting),
        cmocka_unit_test(widens_once_after_the_narrow_start),
        cmocka_unit_test(a_read_notes_offsets_and_when_to_widen),
        cmocka_unit_test(a_window_ends_where_the_later_read_began),
        cmocka_unit_test(an_earlier_consumers_deliveries_are_skipped),
        cmocka_unit_test(marker_records_end_the_read_they_belong_to),
        cmocka_unit_test(bodies_split_into_records_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
