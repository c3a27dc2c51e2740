/* chord_sm.c - see chord_sm.h. */
#include <string.h>
#include "chord_sm.h"

void chord_sm_init(struct chord_sm *s, int size)
{
    memset(s, 0, sizeof(*s));
    s->step = CHS_COUNT;
    s->size = size;
    s->left = CHORD_COUNT_REPLIES;
}

bool chord_sm_part(struct chord_sm *s, bool *seen, int i)
{
    if (i < 0 || i >= s->size || seen[i])
        return false;
    seen[i] = true;
    s->have++;
    return true;
}

bool chord_sm_over(const struct chord_sm *s)
{
    return s->step == CHS_DONE || s->step == CHS_BUSY || s->step == CHS_FAILED;
}

static enum chord_action fail(struct chord_sm *s)
{
    s->failed_at = s->step;
    s->step = CHS_FAILED;
    return CHA_FAIL;
}

static enum chord_action go(struct chord_sm *s, enum chord_step step, enum chord_action a)
{
    s->step = step;
    return a;
}

enum chord_action chord_sm_on(struct chord_sm *s, enum chord_event ev, long value)
{
    if (chord_sm_over(s))
        return CHA_WAIT; /* nothing of this member's is under way any more */
    if (ev == CHE_CLOSED) {
        /* Only the lock's refusal is an answer: another connection holds it and completes the
         * chord, this member is counted (its part was committed). */
        if (s->step == CHS_LOCK && value == 405)
            return go(s, CHS_BUSY, CHA_DONE);
        return fail(s);
    }
    switch (s->step) {
    case CHS_COUNT:
        /* The order is fixed on one channel: declare-ok, then commit-ok. */
        if (ev != (s->left == CHORD_COUNT_REPLIES ? CHE_DECLARE_OK : CHE_COMMIT_OK))
            return fail(s);
        return --s->left > 0 ? CHA_WAIT : go(s, CHS_TALLY, CHA_SEND_TALLY);
    case CHS_TALLY:
        if (ev != CHE_DECLARE_OK)
            return fail(s);
        return value < s->size ? go(s, CHS_DONE, CHA_DONE) : go(s, CHS_LOCK, CHA_SEND_LOCK);
    case CHS_LOCK:
        if (ev != CHE_DECLARE_OK)
            return fail(s);
        s->lock_held = true;
        s->have = 0;
        return go(s, CHS_GET, CHA_SEND_GET);
    case CHS_GET:
        if (ev == CHE_GET_OK)
            return CHA_SEND_GET;
        if (ev != CHE_GET_EMPTY)
            return fail(s);
        return s->have == s->size ? go(s, CHS_FIRE, CHA_FIRE) : go(s, CHS_DROP, CHA_DROP);
    case CHS_FIRE:
        if (ev != CHE_COMMIT_OK)
            return fail(s);
        s->fired = true;
        return go(s, CHS_DEL_QUEUE, CHA_DEL_QUEUE);
    case CHS_DEL_QUEUE:
        return ev == CHE_DELETE_OK ? go(s, CHS_DEL_LOCK, CHA_DEL_LOCK) : fail(s);
    case CHS_DEL_LOCK:
        if (ev != CHE_DELETE_OK)
            return fail(s);
        s->lock_held = false;
        return go(s, CHS_DONE, CHA_DONE);
    case CHS_DROP:
        return ev == CHE_COMMIT_OK ? go(s, CHS_RECHECK, CHA_SEND_RECHECK) : fail(s);
    case CHS_RECHECK:
        if (ev != CHE_DECLARE_OK)
            return fail(s);
        /* A member that ended while the distinct parts were out saw too few: look again. */
        if (value >= s->size && s->again < CHORD_RECHECKS) {
            s->again++;
            s->have = 0;
            return go(s, CHS_GET, CHA_SEND_GET);
        }
        return go(s, CHS_DEL_LOCK, CHA_DEL_LOCK);
    default:
        return fail(s);
    }
}
