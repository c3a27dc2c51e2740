/* state.c - task state names as Celery spells them. */
#include <string.h>
#include <task/client.h>

static const char *const state_names[] = {
    [TASK_STATE_PENDING] = "PENDING",   [TASK_STATE_RECEIVED] = "RECEIVED",
    [TASK_STATE_STARTED] = "STARTED",   [TASK_STATE_PROGRESS] = "PROGRESS",
    [TASK_STATE_RETRY] = "RETRY",       [TASK_STATE_SUCCESS] = "SUCCESS",
    [TASK_STATE_FAILURE] = "FAILURE",   [TASK_STATE_REVOKED] = "REVOKED",
    [TASK_STATE_OTHER] = "OTHER",
};

const char *task_state_name(task_state s)
{
    if ((unsigned)s < sizeof(state_names) / sizeof(state_names[0]))
        return state_names[s];
    return "OTHER";
}

task_state task_state_from_name(const char *name)
{
    for (unsigned i = 0; name != NULL && i < TASK_STATE_OTHER; i++) {
        if (strcmp(state_names[i], name) == 0)
            return (task_state)i;
    }
    return TASK_STATE_OTHER;
}

bool task_state_is_final(task_state s)
{
    return s == TASK_STATE_SUCCESS || s == TASK_STATE_FAILURE || s == TASK_STATE_REVOKED;
}
