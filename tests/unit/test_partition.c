/* test_partition.c - which results stream a task id's records go to (stream.h): the FNV-1a
 * vectors of its definition, every id in range, an even spread of random ids, the names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "internal.h"
#include "stream.h"

/* Published FNV-1a 32-bit test vectors: the partition is the hash's top bits. */
static void partition_is_top_bits_of_fnv1a(void **state)
{
    (void)state;
    assert_int_equal(task__results_partition("a"), 0xe40c292cu >> (32 - TASK__RESULTS_BITS));
    assert_int_equal(task__results_partition("foobar"),
                     0xbf9cf968u >> (32 - TASK__RESULTS_BITS));
    assert_int_equal(task__results_partition(""), 0x811c9dc5u >> (32 - TASK__RESULTS_BITS));
}

/* Celery's uuid4 ids and taskd's UUIDv7 ids both spread evenly: a skewed stream would be read
 * more than its share. 64k ids, each stream within 15 % of its mean (about 5 sigma). */
static void ids_spread_evenly(void **state)
{
    (void)state;
    enum { N = 65536 };
    for (int kind = 0; kind < 2; kind++) {
        unsigned count[TASK__RESULTS_PARTITIONS] = {0};
        for (int i = 0; i < N; i++) {
            char id[37];
            if (kind == 0)
                task__uuid4(id);
            else
                task__uuid7(id);
            unsigned p = task__results_partition(id);
            assert_true(p < TASK__RESULTS_PARTITIONS);
            count[p]++;
        }
        unsigned mean = N / TASK__RESULTS_PARTITIONS;
        for (unsigned p = 0; p < TASK__RESULTS_PARTITIONS; p++) {
            if (count[p] < mean * 85 / 100 || count[p] > mean * 115 / 100)
                fail_msg("kind %d: stream %u got %u of %d ids (mean %u)", kind, p, count[p], N,
                         mean);
        }
    }
}

static void names(void **state)
{
    (void)state;
    char name[32];
    assert_string_equal(task__results_name(0, name), "taskd.results.0");
    char want[32];
    snprintf(want, sizeof(want), "taskd.results.%u", TASK__RESULTS_PARTITIONS - 1);
    assert_string_equal(task__results_name(TASK__RESULTS_PARTITIONS - 1, name), want);
    char id[37];
    task__uuid7(id);
    unsigned p = task__results_partition(id);
    snprintf(want, sizeof(want), "taskd.results.%u", p);
    assert_string_equal(task__results_name(p, name), want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(partition_is_top_bits_of_fnv1a),
        cmocka_unit_test(ids_spread_evenly),
        cmocka_unit_test(names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
