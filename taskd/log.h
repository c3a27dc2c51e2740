/* log.h - one line per event on stderr: ts=... level=... event=... key=value... */
#ifndef TASKD_LOG_H
#define TASKD_LOG_H

#include <stddef.h>

enum log_level { LV_ERROR = 0, LV_WARN, LV_INFO, LV_DEBUG };

/* Set the threshold ("error", "warn", "info", "debug"); returns 0 or -1 for an unknown name. */
int log_set_level(const char *name);
int log_enabled(enum log_level lv);
/* `err`: an errno (> 0) or a TASK_E* (< 0) appended as err="..."; 0 for none. */
void log_event(enum log_level lv, int err, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Values from outside (task names and ids, hostnames, routing keys, error text) go through
 * log_v() in the arguments: "task=%s", log_v(m->task). A value with a space, '"', '=', '\\',
 * a control character or bytes that are not UTF-8 comes back quoted and escaped (logfmt: \",
 * \\, \n, \r, \t, \xHH), an empty or NULL one as "", anything else unchanged; so a name can
 * never forge a second line or a key. Longer than LOG_V_MAX bytes escaped: cut, ending "...".
 * The copy lives in one of LOG_V_SLOTS per-thread buffers, reused in turn: at most that many
 * log_v() per log_event() call.
 */
#define LOG_V_SLOTS 8
#define LOG_V_MAX 512
const char *log_v(const char *value);
/* The same into buf (size >= 8); returns buf. */
char *log_escape(const char *value, char *buf, size_t size);

#endif
