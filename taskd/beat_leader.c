/* beat_leader.c - see beat_leader.h. */
#include <stdio.h>
#include <string.h>
#include "beat_leader.h"
#include "beat_store.h"
#include "log.h"

static amqp_table_t leader_args(amqp_table_entry_t e[2])
{
    amqp_field_value_t yes = {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1};
    return beat_quorum_args(e, "x-single-active-consumer", yes);
}

int beat_publish(struct beat_leader *l, struct task__conn *c, const char *queue,
                 const char *body, uint64_t *seq)
{
    amqp_basic_properties_t p = {0};
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    p.delivery_mode = 2;
    int rc = task__conn_publish(c, BEAT_CH_PUB, "", queue, &p, body, strlen(body), NULL);
    if (rc != 0)
        return rc;
    *seq = ++l->pub_seq;
    return 0;
}

static int seed(struct beat_leader *l, struct task__conn *c, uint64_t *seq)
{
    char body[160], id[37];
    task__uuid4(id);
    snprintf(body, sizeof(body), "{\"token\":\"%s\",\"at\":%.3f}", id, task__now_wall());
    return beat_publish(l, c, BEAT_LEADER_QUEUE, body, seq);
}

int beat_leader_join(struct beat_leader *l, struct task__conn *c)
{
    memset(l, 0, sizeof(*l));
    int rc = task__conn_channel_open(c, BEAT_CH_TOKEN);
    if (rc == 0)
        rc = task__conn_channel_open(c, BEAT_CH_PUB);
    if (rc == 0)
        rc = task__conn_confirm_select(c, BEAT_CH_PUB);
    amqp_table_entry_t e[2];
    amqp_queue_declare_ok_t ok = {0};
    uint16_t refused = 0;
    if (rc == 0)
        rc = task__conn_declare_probe(c, BEAT_CH_PUB, BEAT_LEADER_QUEUE, false, leader_args(e),
                                      &ok, &refused);
    if (rc != 0)
        return rc;
    /* A leader holds its token unacked (not counted as ready): seed only an idle queue. Two
     * instances starting together may both seed; the leader acks the spare. */
    uint64_t seq = 0;
    if (ok.message_count == 0 && ok.consumer_count == 0) {
        rc = seed(l, c, &seq);
        log_event(LV_INFO, rc, "beat_token_seeded", "queue=%s", BEAT_LEADER_QUEUE);
    }
    if (rc == 0)
        rc = task__conn_qos(c, BEAT_CH_TOKEN, 1);
    if (rc == 0)
        rc = task__conn_consume(c, BEAT_CH_TOKEN, BEAT_LEADER_QUEUE, false, amqp_empty_table,
                                NULL);
    return rc;
}

int beat_leader_on_token(struct beat_leader *l, struct task__conn *c, uint64_t tag)
{
    if (l->token_tag != 0) {
        int rc = task__conn_ack(c, BEAT_CH_TOKEN, l->token_tag, false);
        if (rc != 0)
            return rc;
    }
    if (!l->leading) {
        l->leading = true;
        l->since_wall = task__now_wall();
    }
    l->token_tag = tag;
    l->token_at = task__now_mono();
    return 0;
}

int beat_leader_rotate(struct beat_leader *l, struct task__conn *c, uint64_t *seq)
{
    *seq = 0;
    if (!l->leading || l->token_tag == 0 ||
        task__now_mono() - l->token_at < l->rotate_s)
        return 0;
    /* The new token is published before the old one is acked: dying in between leaves two
     * tokens (the next leader acks one), never none. */
    return seed(l, c, seq);
}

int beat_leader_rotated(struct beat_leader *l, struct task__conn *c, uint64_t old_tag)
{
    if (old_tag == 0 || l->token_tag != old_tag)
        return 0; /* a newer token already replaced it */
    l->token_tag = 0;
    return task__conn_ack(c, BEAT_CH_TOKEN, old_tag, false);
}

int beat_leader_instances(struct task__conn *c)
{
    amqp_queue_declare_ok_t ok = {0};
    uint16_t refused = 0;
    if (task__conn_declare_probe(c, BEAT_CH_PUB, BEAT_LEADER_QUEUE, true, amqp_empty_table, &ok,
                                 &refused) != 0)
        return -1;
    return (int)ok.consumer_count;
}
