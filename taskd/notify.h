/* notify.h - systemd's readiness protocol (sd_notify datagrams), without libsystemd. */
#ifndef TASKD_NOTIFY_H
#define TASKD_NOTIFY_H

/* Send `state` ("READY=1", "STOPPING=1") to $NOTIFY_SOCKET; a no-op when it is unset. */
void notify_send(const char *state);

#endif
