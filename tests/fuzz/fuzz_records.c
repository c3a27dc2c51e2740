/*
 * fuzz_records.c - libFuzzer harness for stream records as readers of the durable streams see
 * them: anyone who can publish to the default exchange can append to taskd.revoked and to the
 * results streams. Built three times by tests/fuzz/run:
 *   -DFUZZ_REVOKED  the body of a taskd.revoked message through task__stream_body() and
 *                   task__revoked_record_id(), as a worker reads it back at start;
 *   -DFUZZ_RESULTS  the body of a results-stream message through task__results_body(), as a
 *                   lookup reads it (id "id-1", marker "mk");
 *   -DFUZZ_MGMT     a management API answer through taskctl's rows_of_answer().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "replies.h"
#if defined(FUZZ_MGMT)
#include "../../taskctl/mgmt.c"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void invariant(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant failed: %s\n", what);
        abort();
    }
}

#if defined(FUZZ_REVOKED)
static void on_record(json_object *rec, void *ud)
{
    unsigned *ids = ud;
    invariant(json_object_is_type(rec, json_type_object), "records are objects");
    const char *id = task__revoked_record_id(rec);
    if (id != NULL) {
        size_t n = strlen(id);
        invariant(n > 0 && n <= TASK__ID_MAX, "id length");
        ++*ids;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned ids = 0, rejected = 0;
    bool marker = false;
    int rc = task__stream_body(data, size, "fuzz-marker", on_record, &ids, &marker, &rejected);
    invariant(rc == 0 || (rc == TASK_EPROTO && rejected == 1 && ids == 0), "not JSON: one reject");
    return 0;
}
#elif defined(FUZZ_RESULTS)
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct task__replies r;
    invariant(task__replies_init(&r) == 0, "replies");
    r.max = 4;
    bool marker = false, final = false;
    unsigned rejected = 0;
    int rc = task__results_body(data, size, "id-1", "mk", &r, &marker, &final, &rejected);
    invariant(rc == 0 || rc == TASK_EPROTO, "return code");
    invariant(r.count <= 1, "only the asked id is kept");
    struct task__reply *e = task__replies_find(&r, "id-1");
    invariant(!final || (e != NULL && task_state_is_final(e->state)), "final seen => kept final");
    task__replies_free(&r);
    return 0;
}
#elif defined(FUZZ_MGMT)
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_tokener *tok = json_tokener_new();
    json_object *answer = json_tokener_parse_ex(tok, (const char *)data, (int)size);
    json_tokener_free(tok);
    json_object *rows = json_object_new_array();
    int rc = rows_of_answer(answer, rows);
    invariant(rc == 0 || rc == -1, "return code");
    for (size_t i = 0; i < json_object_array_length(rows); i++) {
        json_object *row = json_object_array_get_idx(rows, i);
        invariant(task__json_get_str(row, "name") != NULL, "every row has a name");
        /* What taskctl queues prints with: text of the row must serialise. */
        invariant(json_object_to_json_string(row) != NULL, "row serialises");
    }
    json_object_put(rows);
    json_object_put(answer);
    return 0;
}
#else
#error "define FUZZ_REVOKED, FUZZ_RESULTS or FUZZ_MGMT"
#endif
