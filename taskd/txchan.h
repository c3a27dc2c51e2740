/*
 * txchan.h - a channel in AMQP transaction mode, for the few steps that must be on the broker
 * before the worker goes on (a chord part, a lease copy): tx.commit-ok comes after the broker
 * has taken every publish and ack of the transaction, and the calls wait for it.
 */
#ifndef TASKD_TXCHAN_H
#define TASKD_TXCHAN_H

#include <stdbool.h>
#include <stdint.h>
#include "conn.h"

/* Open channel `ch` in tx mode unless *ready says it is; sets *ready. 0 or a TASK_E*. */
int txchan_open(struct task__conn *c, uint16_t ch, bool *ready);
/* The same asked with the connection's setup (task__conn_ask): *ready is set now, and a
 * refusal fails the setup's task__conn_answers(). */
int txchan_ask(struct task__conn *c, uint16_t ch, bool *ready);
/* A call on `ch` failed: start over on a fresh channel. If the broker closed it, the close is
 * answered; if not, we close it, which drops the open transaction. */
void txchan_reset(struct task__conn *c, uint16_t ch, bool *ready);
int txchan_commit(struct task__conn *c, uint16_t ch);

#endif
