/* log.h - one line per event on stderr: ts=... level=... event=... key=value... */
#ifndef TASKD_LOG_H
#define TASKD_LOG_H

enum log_level { LV_ERROR = 0, LV_WARN, LV_INFO, LV_DEBUG };

/* Set the threshold ("error", "warn", "info", "debug"); returns 0 or -1 for an unknown name. */
int log_set_level(const char *name);
int log_enabled(enum log_level lv);
/* `err`: an errno (> 0) or a TASK_E* (< 0) appended as err="..."; 0 for none. */
void log_event(enum log_level lv, int err, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
