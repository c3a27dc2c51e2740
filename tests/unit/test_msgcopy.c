/*
 * test_msgcopy.c - what a republished copy of a task message keeps (taskd/msgcopy.c): the
 * task's own headers stay, the broker's counts of the old copy's deliveries and our lease
 * sequence go, and delivery_count() adds what earlier copies had, so a task that kills its
 * worker from a lease is still counted as redelivered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "msgcopy.h"

static amqp_table_entry_t str_entry(const char *k, const char *v)
{
    return (amqp_table_entry_t){.key = amqp_cstring_bytes(k),
                                .value = {.kind = AMQP_FIELD_KIND_UTF8,
                                          .value.bytes = amqp_cstring_bytes(v)}};
}

static amqp_table_entry_t int_entry(const char *k, int64_t v)
{
    return (amqp_table_entry_t){.key = amqp_cstring_bytes(k),
                                .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = v}};
}

static const amqp_table_entry_t *find(const amqp_table_t *t, const char *k)
{
    for (int i = 0; i < t->num_entries; i++)
        if (msgcopy_key_is(t->entries[i].key, k))
            return &t->entries[i];
    return NULL;
}

static void copy_drops_broker_counts_keeps_task_headers(void **state)
{
    (void)state;
    amqp_table_entry_t h[5] = {str_entry("id", "abc"), int_entry("x-delivery-count", 3),
                               str_entry("x-death", "old"), int_entry("x-taskd-lease", 7),
                               str_entry("task", "test.add")};
    amqp_basic_properties_t in = {._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG,
                                  .headers = {.num_entries = 5, .entries = h},
                                  .correlation_id = amqp_cstring_bytes("abc")};
    amqp_basic_properties_t out;
    amqp_table_entry_t *kept = NULL;
    assert_int_equal(msgcopy_props(&in, NULL, 0, &out, &kept), 0);
    assert_int_equal(out.headers.num_entries, 2);
    assert_non_null(find(&out.headers, "id"));
    assert_non_null(find(&out.headers, "task"));
    assert_null(find(&out.headers, "x-delivery-count"));
    assert_null(find(&out.headers, "x-death"));
    assert_null(find(&out.headers, "x-taskd-lease"));
    assert_true(out._flags & AMQP_BASIC_CORRELATION_ID_FLAG);
    assert_int_equal(in.headers.num_entries, 5); /* the original is untouched */
    free(kept);
}

static void extra_replaces_same_name(void **state)
{
    (void)state;
    amqp_table_entry_t h[2] = {str_entry("id", "abc"), int_entry("x-taskd-delivery-count", 1)};
    amqp_basic_properties_t in = {._flags = AMQP_BASIC_HEADERS_FLAG,
                                  .headers = {.num_entries = 2, .entries = h}};
    amqp_table_entry_t extra[2] = {int_entry("x-taskd-delivery-count", 4),
                                   int_entry("x-taskd-lease", 2)};
    amqp_basic_properties_t out;
    amqp_table_entry_t *kept = NULL;
    assert_int_equal(msgcopy_props(&in, extra, 2, &out, &kept), 0);
    assert_int_equal(out.headers.num_entries, 3);
    const amqp_table_entry_t *e = find(&out.headers, "x-taskd-delivery-count");
    assert_non_null(e);
    assert_int_equal(e->value.value.i64, 4);
    assert_int_equal(find(&out.headers, "x-taskd-lease")->value.value.i64, 2);
    free(kept);
}

static void no_headers_gets_some(void **state)
{
    (void)state;
    amqp_basic_properties_t in = {0};
    amqp_table_entry_t extra = int_entry("x-taskd-lease", 1);
    amqp_basic_properties_t out;
    amqp_table_entry_t *kept = NULL;
    assert_int_equal(msgcopy_props(&in, &extra, 1, &out, &kept), 0);
    assert_true(out._flags & AMQP_BASIC_HEADERS_FLAG);
    assert_int_equal(out.headers.num_entries, 1);
    free(kept);
}

static int count_with(amqp_table_entry_t *h, int n, bool redelivered)
{
    struct task__delivery d = {.redelivered = redelivered};
    if (n > 0) {
        d.msg.properties._flags = AMQP_BASIC_HEADERS_FLAG;
        d.msg.properties.headers = (amqp_table_t){.num_entries = n, .entries = h};
    }
    return delivery_count(&d);
}

static void delivery_count_adds_earlier_copies(void **state)
{
    (void)state;
    assert_int_equal(count_with(NULL, 0, false), 1);
    assert_int_equal(count_with(NULL, 0, true), 2);
    amqp_table_entry_t q[1] = {int_entry("x-delivery-count", 2)}; /* quorum: 2 before */
    assert_int_equal(count_with(q, 1, false), 3);
    amqp_table_entry_t c[1] = {int_entry("x-taskd-delivery-count", 1)}; /* a lease came back */
    assert_int_equal(count_with(c, 1, false), 2);
    assert_int_equal(count_with(c, 1, true), 3);
    amqp_table_entry_t both[2] = {int_entry("x-taskd-delivery-count", 2),
                                  int_entry("x-delivery-count", 1)};
    assert_int_equal(count_with(both, 2, false), 4);
    /* a value no count can have is ignored, not trusted */
    amqp_table_entry_t bad[1] = {int_entry("x-taskd-delivery-count", -5)};
    assert_int_equal(count_with(bad, 1, false), 1);
    amqp_table_entry_t huge[1] = {int_entry("x-taskd-delivery-count", 1LL << 40)};
    assert_int_equal(count_with(huge, 1, false), 1);
    amqp_table_entry_t str[1] = {str_entry("x-taskd-delivery-count", "9")};
    assert_int_equal(count_with(str, 1, false), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(copy_drops_broker_counts_keeps_task_headers),
        cmocka_unit_test(extra_replaces_same_name),
        cmocka_unit_test(no_headers_gets_some),
        cmocka_unit_test(delivery_count_adds_earlier_copies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
