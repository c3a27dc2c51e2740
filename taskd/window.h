/*
 * window.h - the delivery window (the consumers' prefetch), sized by Little's law.
 *
 * A delivery stays unacked from its receipt until its result is confirmed by the broker, so the
 * window must hold the tasks waiting for a slot or running (slots x worker.prefetch_multiplier)
 * and also those that ended and wait only for confirms: about throughput x confirm latency,
 * which no setting can know. Too small and slots idle between confirms; too large and a worker
 * of long tasks holds messages other workers could run. So the confirm part starts at
 * worker.confirm_window and follows what is measured: it doubles while slots idle with the window full and half
 * of it or more waiting for confirms, and halves after a while at a quarter or less.
 */
#ifndef TASKD_WINDOW_H
#define TASKD_WINDOW_H

#include "worker.h"

/* The largest confirm part the window grows to. When the broker is the bottleneck its confirms
 * slow down as more wait, and the waiting ones fill any window: measured here (taskd -c 2,
 * test.add) 3.1k tasks/s at 64, 3.9k at 256, 4.5k at 544, 4.2k at 736. A bound also keeps what
 * a burst of short tasks widened from hoarding long ones later (it halves every
 * WINDOW_SHRINK_AFTER_S, and worker.give_back_after returns what waits). */
#define WINDOW_CONFIRM_MAX 512
/* Seconds of low use before the confirm part halves. */
#define WINDOW_SHRINK_AFTER_S 10

/* Loop turns in a second with a slot free, no task waiting for one and the window full that
 * make the confirm part grow (a share would be diluted: most turns are a child's or a confirm's
 * wakeup while the slots are busy). */
#define WINDOW_STARVED_TURNS 3

/* The confirm part for the next second, from the current one (`cur`), the most deliveries that
 * waited only for confirms at once in the last second (`peak`), the loop turns in which
 * slots starved for want of window (`starved`), and the seconds of low use so
 * far (*low_s, updated). Never below `floor` (worker.confirm_window; 0 turns sizing off) nor
 * above WINDOW_CONFIRM_MAX (or `floor`, when that is larger). */
int window_next(int cur, int peak, int starved, int floor, int *low_s);

/* Once a loop turn, while connected: counts what waits for confirms, resizes the confirm part
 * once a second, and applies a changed window (basic.qos and new consumers, window.c). */
void window_turn(struct worker *w);

#endif
