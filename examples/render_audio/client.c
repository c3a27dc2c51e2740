/*
 * client.c - the seed scenario with libtask only: start a render, answer at once with the id,
 * then poll its state from a fresh client (as another web process would) until it is done.
 *
 *   render_client SONG_ID API_URL [STEPS]      (broker from TASKD_BROKER_URL)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <task/client.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: render_client SONG_ID API_URL [STEPS]\n");
        return 2;
    }
    task_error err = {0};
    task_client *web1 = task_client_new(NULL, &err);
    if (web1 == NULL) {
        fprintf(stderr, "render_client: %s\n", err.msg);
        return 1;
    }
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_string(argv[1]));
    json_object_array_add(args, json_object_new_string(argv[2]));
    json_object_array_add(args, json_object_new_int(argc > 3 ? atoi(argv[3]) : 4));
    task_id id;
    int rc = task_send(web1, "audio.render", args, NULL, NULL, &id);
    json_object_put(args);
    if (rc != 0) {
        fprintf(stderr, "render_client: %s\n", task_client_errmsg(web1));
        return 1;
    }
    printf("202 Accepted  Location: /status/%s\n", id.str);
    task_client_free(web1); /* the request that started it is gone */

    task_client *web2 = task_client_new(NULL, &err); /* any other process */
    if (web2 == NULL) {
        fprintf(stderr, "render_client: %s\n", err.msg);
        return 1;
    }
    for (;;) {
        task_state st;
        json_object *res = NULL;
        if (task_lookup(web2, id.str, 0, &st, &res) != 0) {
            fprintf(stderr, "render_client: %s\n", task_client_errmsg(web2));
            return 1;
        }
        const char *body = res ? json_object_to_json_string_ext(res, JSON_C_TO_STRING_PLAIN) : "{}";
        if (task_state_is_final(st)) {
            printf("%d %s  %s\n", st == TASK_STATE_SUCCESS ? 200 : 500, task_state_name(st), body);
            json_object_put(res);
            task_client_free(web2);
            return st == TASK_STATE_SUCCESS ? 0 : 1;
        }
        printf("202 %s  %s\n", task_state_name(st), body);
        json_object_put(res);
        struct timespec ts = {0, 300000000};
        nanosleep(&ts, NULL);
    }
}
