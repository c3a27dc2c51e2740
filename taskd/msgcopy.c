/* msgcopy.c - see msgcopy.h. */
#include <stdlib.h>
#include <string.h>
#include "msgcopy.h"

bool msgcopy_key_is(amqp_bytes_t k, const char *name)
{
    size_t n = strlen(name);
    return k.len == n && memcmp(k.bytes, name, n) == 0;
}

/* Headers a copy does not carry over: the broker's counts of the old copy's deliveries, our
 * lease sequence, and whatever `extra` sets anew. */
static bool dropped(amqp_bytes_t k, const amqp_table_entry_t *extra, int n)
{
    if (msgcopy_key_is(k, "x-delivery-count") || msgcopy_key_is(k, "x-death") ||
        msgcopy_key_is(k, "x-taskd-lease"))
        return true;
    for (int i = 0; i < n; i++)
        if (k.len == extra[i].key.len && memcmp(k.bytes, extra[i].key.bytes, k.len) == 0)
            return true;
    return false;
}

int msgcopy_props(const amqp_basic_properties_t *in, const amqp_table_entry_t *extra, int n,
                  amqp_basic_properties_t *out, amqp_table_entry_t **kept)
{
    *out = *in;
    int have = (in->_flags & AMQP_BASIC_HEADERS_FLAG) ? in->headers.num_entries : 0;
    *kept = malloc(((size_t)have + (size_t)n + 1) * sizeof(**kept));
    if (*kept == NULL)
        return TASK_ENOMEM;
    int k = 0;
    for (int i = 0; i < have; i++)
        if (!dropped(in->headers.entries[i].key, extra, n))
            (*kept)[k++] = in->headers.entries[i];
    for (int i = 0; i < n; i++)
        (*kept)[k++] = extra[i];
    out->headers = (amqp_table_t){.num_entries = k, .entries = *kept};
    out->_flags |= AMQP_BASIC_HEADERS_FLAG;
    return 0;
}

/* An integer header's value (0..1000000: a count), or -1. */
static int64_t int_header(const amqp_basic_properties_t *p, const char *key)
{
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return -1;
    for (int i = 0; i < p->headers.num_entries; i++) {
        const amqp_table_entry_t *e = &p->headers.entries[i];
        if (!msgcopy_key_is(e->key, key))
            continue;
        if (e->value.kind == AMQP_FIELD_KIND_I64)
            return e->value.value.i64 < 0 || e->value.value.i64 > 1000000 ? -1 : e->value.value.i64;
        if (e->value.kind == AMQP_FIELD_KIND_I32)
            return e->value.value.i32 < 0 || e->value.value.i32 > 1000000 ? -1 : e->value.value.i32;
    }
    return -1;
}

int delivery_count(const struct task__delivery *d)
{
    const amqp_basic_properties_t *p = &d->msg.properties;
    /* Deliveries of earlier copies (a lease that came back, a crash requeued from a lease). */
    int64_t before = int_header(p, "x-taskd-delivery-count");
    int64_t broker = int_header(p, "x-delivery-count");
    int n = broker >= 0 ? (int)broker + 1 : (d->redelivered ? 2 : 1);
    return n + (before > 0 ? (int)before : 0);
}

