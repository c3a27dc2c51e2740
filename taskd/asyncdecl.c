/* asyncdecl.c - see asyncdecl.h. */
#include <string.h>
#include "asyncdecl.h"

bool adecl_may_start(const struct adecl *a, double now)
{
    return a->state == ADECL_NONE && now >= a->retry_at;
}

void adecl_sent(struct adecl *a, int n)
{
    a->oks_left = n > 0 ? n : 0;
    a->state = n > 0 ? ADECL_PENDING : ADECL_READY;
}

enum adecl_ok adecl_on_ok(struct adecl *a)
{
    if (a->state != ADECL_PENDING || a->oks_left <= 0)
        return ADECL_STRAY;
    if (--a->oks_left > 0)
        return ADECL_MORE;
    a->state = ADECL_READY;
    a->refusals = 0;
    a->refused = 0;
    return ADECL_NOW_READY;
}

double adecl_backoff_s(unsigned refusals)
{
    double s = 1;
    for (unsigned i = 1; i < refusals && s < 60; i++)
        s *= 2;
    return s < 60 ? s : 60;
}

void adecl_on_closed(struct adecl *a, uint16_t code, double now)
{
    a->state = ADECL_REOPENING;
    a->oks_left = 0;
    a->refused = code;
    a->refusals++;
    a->retry_at = now + adecl_backoff_s(a->refusals);
}

bool adecl_on_open_ok(struct adecl *a)
{
    if (a->state != ADECL_REOPENING)
        return false;
    a->state = ADECL_NONE;
    return true;
}

void adecl_forget(struct adecl *a)
{
    if (a->state == ADECL_READY)
        a->state = ADECL_NONE;
}

void adecl_reset(struct adecl *a)
{
    memset(a, 0, sizeof(*a));
}
