/* txchan.c - see txchan.h. */
#include "txchan.h"

int txchan_open(struct task__conn *c, uint16_t ch, bool *ready)
{
    if (*ready)
        return 0;
    int rc = task__conn_channel_open(c, ch);
    if (rc == 0) {
        amqp_tx_select(task__conn_amqp(c), ch);
        rc = task__conn_check(c, amqp_get_rpc_reply(task__conn_amqp(c)), "tx.select");
    }
    *ready = rc == 0;
    return rc;
}

int txchan_ask(struct task__conn *c, uint16_t ch, bool *ready)
{
    amqp_channel_open_t open = {.out_of_band = amqp_empty_bytes};
    amqp_tx_select_t sel = {0};
    int rc = task__conn_ask(c, ch, AMQP_CHANNEL_OPEN_METHOD, &open, "open tx channel");
    if (rc == 0)
        rc = task__conn_ask(c, ch, AMQP_TX_SELECT_METHOD, &sel, "tx.select");
    *ready = rc == 0;
    return rc;
}

void txchan_reset(struct task__conn *c, uint16_t ch, bool *ready)
{
    *ready = false;
    if (!task__conn_alive(c))
        return; /* the reconnect opens a fresh channel */
    /* Only for failures of calls on `ch`: the refusal answered is the last call's. */
    if (task__conn_answer_refusal(c, ch) == 0) {
        amqp_rpc_reply_t r = amqp_channel_close(task__conn_amqp(c), ch, AMQP_REPLY_SUCCESS);
        (void)task__conn_check(c, r, "close tx channel");
    }
    task__conn_clear_error(c);
}

int txchan_commit(struct task__conn *c, uint16_t ch)
{
    amqp_tx_commit(task__conn_amqp(c), ch);
    return task__conn_check(c, amqp_get_rpc_reply(task__conn_amqp(c)), "tx.commit");
}
