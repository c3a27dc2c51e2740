/*
 * lp_chord.c - a libtask producer for test_least_privilege.sh: sends a chord of N test.add(i, i)
 * members with a test.xsum callback to the default queue (TASKD_* environment: the producer
 * user's URL) and prints the callback's result. Exit 0 on SUCCESS, 1 otherwise (reason on
 * stderr, one line).
 */
#include <stdio.h>
#include <stdlib.h>
#include <task/canvas.h>
#include <task/client.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4;
    if (n < 1 || n > 64) {
        fprintf(stderr, "usage: lp_chord [N 1..64]\n");
        return 2;
    }
    task_error err = {0};
    task_client *c = task_client_new(NULL, &err);
    if (c == NULL) {
        fprintf(stderr, "lp_chord: %s\n", err.msg);
        return 1;
    }
    json_object *sigs[64];
    for (int i = 0; i < n; i++) {
        json_object *args = json_object_new_array();
        json_object_array_add(args, json_object_new_int(i));
        json_object_array_add(args, json_object_new_int(i));
        sigs[i] = task_sig_new("test.add", args, NULL, NULL, false);
        json_object_put(args);
    }
    json_object *cb = task_sig_new("test.xsum", NULL, NULL, NULL, false);
    task_id cb_id;
    int rc = task_send_chord(c, sigs, n, cb, NULL, &cb_id, NULL);
    task_state st = TASK_STATE_PENDING;
    json_object *res = NULL;
    if (rc == 0)
        rc = task_wait(c, cb_id.str, 30000, &st, &res);
    if (rc != 0)
        fprintf(stderr, "lp_chord: %s\n", task_client_errmsg(c));
    else
        printf("%s %s\n", task_state_name(st), json_object_to_json_string(res));
    json_object_put(res);
    json_object_put(cb);
    for (int i = 0; i < n; i++)
        json_object_put(sigs[i]);
    task_client_free(c);
    return rc == 0 && st == TASK_STATE_SUCCESS ? 0 : 1;
}
