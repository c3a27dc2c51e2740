/* declare.c - see declare.h. */
#include <stdio.h>
#include "declare.h"
#include "log.h"

int declare_refused(struct worker *w)
{
    uint16_t code = task__conn_answer_refusal(w->conn, CH_DECLARE);
    if (code == 0 || !task__conn_alive(w->conn))
        return task__conn_alive(w->conn) ? 0 : TASK_ECLOSED;
    char why[300];
    snprintf(why, sizeof(why), "%s", task__conn_errmsg(w->conn));
    task__conn_clear_error(w->conn);
    int rc = task__conn_channel_open(w->conn, CH_DECLARE);
    log_event(rc == 0 ? LV_WARN : LV_ERROR, rc, "declare_refused", "code=%u detail=\"%s\"",
              (unsigned)code, why);
    return rc;
}

int declare_queue(struct worker *w, const char *queue)
{
    int rc = task__topo_declare(&w->topo, w->conn, CH_DECLARE, queue);
    if (rc == TASK_EBROKER && task__conn_alive(w->conn)) {
        char why[300];
        snprintf(why, sizeof(why), "%s", task__conn_errmsg(w->conn));
        int rc2 = declare_refused(w);
        if (rc2 != 0)
            return rc2;
        task__conn_fail(w->conn, TASK_EBROKER, "%s", why); /* the caller names the reason */
    }
    return rc;
}
