/*
 * test_outcome.c - outcome.c's choices for a job whose child reported, where no broker is
 * needed to see them: with no connection a leased job's outcome is kept for the next one (not
 * dropped, not published into nothing); an orphan's is kept for its redelivery, which then
 * gets it (orphan.c); a cold stop drops what cannot be settled. The kept reply is the child's,
 * held by reference.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "lease.h"
#include "orphan.h"
#include "outcome.h"

static struct worker *w;

static int setup(void **state)
{
    (void)state;
    w = calloc(1, sizeof(*w));
    return w == NULL;
}

static int teardown(void **state)
{
    (void)state;
    lease_free(w); /* the stashed jobs and the ids of leased runs that ended */
    orphan_free(w);
    free(w);
    return 0;
}

static struct job *job_for(const char *id)
{
    struct job *j = job_new(7);
    assert_non_null(j);
    j->m.id = strdup(id);
    j->m.task = strdup("t.x");
    return j;
}

/* A child's done frame for a SUCCESS of 42, as the pool reads it (ipc_frame.h). */
static json_object *reply_ok(struct ipc_up *up)
{
    json_object *result = json_object_new_int(42);
    struct ipc_up u = {.kind = IPC_UP_DONE, .jid = 1, .outcome = TASK_OK, .result = result,
                       .rss_kb = -1};
    json_object *o = ipc_up_write(&u);
    json_object_put(result);
    assert_non_null(o);
    assert_int_equal(ipc_up_read(o, up, NULL, 0), 0);
    return o;
}

static void no_connection_keeps_the_outcome(void **state)
{
    (void)state;
    struct job *j = job_for("id-1");
    j->leased = true;
    struct ipc_up up;
    json_object *reply = reply_ok(&up);
    outcome_child_ended(w, j, STASH_DONE, &up);
    assert_ptr_equal(w->stashed, j);
    assert_int_equal(j->stash, STASH_DONE);
    assert_ptr_equal(j->stash_reply, reply); /* a reference of its own */
    json_object_put(reply);
    json_object *v;
    assert_true(json_object_object_get_ex(j->stash_reply, "result", &v));
    assert_int_equal(json_object_get_int(v), 42);
    struct job *k = job_for("id-2");
    k->leased = true;
    outcome_child_ended(w, k, STASH_REQUEUE, NULL);
    assert_ptr_equal(w->stashed, k);
    assert_ptr_equal(k->next, j);
    assert_int_equal(k->stash, STASH_REQUEUE);
    assert_null(k->stash_reply);
}

static void orphan_waits_for_its_redelivery(void **state)
{
    (void)state;
    struct job *j = job_for("id-3");
    j->orphan = true;
    struct ipc_up up;
    json_object *reply = reply_ok(&up);
    outcome_child_ended(w, j, STASH_DONE, &up);
    json_object_put(reply);
    assert_null(w->stashed);
    assert_int_equal(w->norphans, 1);
    assert_ptr_equal(w->orphans, j);
    assert_true(j->orphan_until > task__now_mono() + ORPHAN_KEEP_S - 5);

    /* Its redelivery comes back: it takes the delivery and gets the kept outcome back. */
    struct task__delivery d = {.tag = 99, .redelivered = true};
    struct job *ended = NULL;
    assert_false(orphan_adopt(w, &d, "id-other", &ended));
    assert_null(ended);
    assert_true(orphan_adopt(w, &d, "id-3", &ended));
    assert_ptr_equal(ended, j);
    assert_int_equal(ended->dtag, 99);
    assert_false(ended->orphan);
    assert_int_equal(w->norphans, 0);
    assert_int_equal(w->inflight, 1);
    assert_int_equal(ended->stash, STASH_DONE);
    job_free(ended);
}

static void cold_stop_without_connection_drops(void **state)
{
    (void)state;
    w->pool.cold = true;
    struct job *j = job_for("id-4");
    j->orphan = true;
    outcome_child_ended(w, j, STASH_LOST, NULL); /* freed: ASan would see a leak otherwise */
    struct job *k = job_for("id-5");
    k->leased = true;
    outcome_child_ended(w, k, STASH_DONE, NULL);
    assert_null(w->stashed);
    assert_null(w->orphans);
    assert_int_equal(w->norphans, 0);
}

/* An orphan whose redelivery never came leaves the keep after ORPHAN_KEEP_S: expired ones are
 * taken out (the fresh one stays); one lost with its child is dropped, not published. */
static void expired_orphans_are_taken_out(void **state)
{
    (void)state;
    struct job *old = job_for("id-6"), *fresh = job_for("id-7");
    old->orphan = fresh->orphan = true;
    outcome_child_ended(w, old, STASH_LOST, NULL);
    outcome_child_ended(w, fresh, STASH_LOST, NULL);
    assert_int_equal(w->norphans, 2);
    old->orphan_until = task__now_mono() - 1;
    struct job *expired = orphan_take_expired(w);
    assert_ptr_equal(expired, old);
    assert_null(expired->next);
    assert_int_equal(w->norphans, 1);
    assert_ptr_equal(w->orphans, fresh);
    assert_null(orphan_take_expired(w));
    outcome_orphans_expired(w, expired); /* STASH_LOST: freed, nothing published (no conn) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(no_connection_keeps_the_outcome, setup, teardown),
        cmocka_unit_test_setup_teardown(orphan_waits_for_its_redelivery, setup, teardown),
        cmocka_unit_test_setup_teardown(cold_stop_without_connection_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(expired_orphans_are_taken_out, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
