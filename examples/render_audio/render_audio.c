/*
 * render_audio.c - the seed scenario's task (docs/celery-interop.md, "The seed scenario"):
 * "render" a song by calling a slow third-party API once per step with libcurl, reporting
 * PROGRESS after each call.
 *
 *   audio.render(song_id, api_url, steps=4) -> {"song": song_id, "steps": n, "statuses": [...]}
 *
 * Built as build/examples/librender_audio.so; run it with
 * `taskd --module build/examples/librender_audio.so`.
 */
#include <stdio.h>
#include <task/http.h>
#include <task/task.h>

static int render(task_ctx *ctx, json_object *args, json_object *kwargs, json_object **result)
{
    json_object *song = json_object_array_get_idx(args, 0);
    json_object *api = json_object_array_get_idx(args, 1);
    json_object *steps_o = NULL;
    if (!json_object_object_get_ex(kwargs, "steps", &steps_o))
        steps_o = json_object_array_get_idx(args, 2);
    int steps = steps_o ? json_object_get_int(steps_o) : 4;
    if (!json_object_is_type(song, json_type_string) || !json_object_is_type(api, json_type_string) ||
        steps < 1 || steps > 1000)
        return task_fail(ctx, "TypeError", "render(song_id, api_url[, steps 1..1000])");
    json_object *statuses = json_object_new_array();
    for (int i = 1; i <= steps; i++) {
        task_http_response resp;
        int rc = task_http_get(ctx, json_object_get_string(api), NULL, &resp);
        if (rc != 0) {
            json_object_put(statuses);
            if (rc == TASK_ECANCELLED)
                return task_fail(ctx, "SoftTimeLimitExceeded", "render of %s cancelled",
                                 json_object_get_string(song));
            return task_retry_in(ctx, -1); /* the API hiccuped: back off and try again */
        }
        json_object_array_add(statuses, json_object_new_int((int)resp.status));
        task_http_response_free(&resp);
        json_object *meta = json_object_new_object();
        json_object_object_add(meta, "current", json_object_new_int(i));
        json_object_object_add(meta, "total", json_object_new_int(steps));
        (void)task_progress(ctx, meta);
        json_object_put(meta);
    }
    *result = json_object_new_object();
    json_object_object_add(*result, "song", json_object_get(song));
    json_object_object_add(*result, "steps", json_object_new_int(steps));
    json_object_object_add(*result, "statuses", statuses);
    return TASK_OK;
}
TASK(render, "audio.render", .max_retries = 5, .retry_backoff = 1.0, .soft_time_limit = 540,
     .time_limit = 600);
