/*
 * encode_variants.c - sends one task message of each shape libtask can produce (plain,
 * countdown, expires, link, link_error, chain, ignore_result, priority, group, child of a
 * parent) to QUEUE, with no worker, so test_wire_kombu.py can read each with Celery's code.
 * Prints "shape id" per line. Broker from TASKD_BROKER_URL.
 */
#include <stdio.h>
#include <string.h>
#include <task/client.h>

static json_object *sig(const char *task, int arg)
{
    json_object *s = json_object_new_object();
    json_object *args = json_object_new_array();
    json_object_array_add(args, json_object_new_int(arg));
    json_object_object_add(s, "task", json_object_new_string(task));
    json_object_object_add(s, "args", args);
    json_object_object_add(s, "kwargs", json_object_new_object());
    json_object_object_add(s, "options", json_object_new_object());
    json_object_object_add(s, "subtask_type", NULL);
    json_object_object_add(s, "immutable", json_object_new_boolean(0));
    return s;
}

static json_object *list_of(json_object *a, json_object *b)
{
    json_object *l = json_object_new_array();
    json_object_array_add(l, a);
    if (b != NULL)
        json_object_array_add(l, b);
    return l;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    task_error err = {0};
    task_client *c = task_client_new(NULL, &err);
    if (c == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    json_object *link = list_of(sig("test.mul", 10), NULL);
    json_object *errback = list_of(sig("test.errback", 0), NULL);
    json_object *chain = list_of(sig("test.mul", 3), sig("test.add", 2));
    struct {
        const char *shape;
        task_send_opts o;
    } v[] = {
        {"plain", {.countdown_s = 0}},
        {"countdown", {.countdown_s = 30}},
        {"expires", {.expires_s = 60}},
        {"link", {.link = link}},
        {"link_error", {.link_error = errback}},
        {"chain", {.chain = chain}},
        {"ignore_result", {.ignore_result = true}},
        {"priority", {.priority = 7}},
        {"group", {.group_id = "7f3c6e0a-1111-4222-8333-944455556666"}},
        {"child", {.parent_id = "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000",
                   .root_id = "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0001"}},
    };
    json_object *args = list_of(json_object_new_int(2), json_object_new_int(3));
    int rc = 0;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        task_id id;
        v[i].o.queue = argv[1];
        if (task_send(c, "test.add", args, NULL, &v[i].o, &id) != 0) {
            fprintf(stderr, "%s: %s\n", v[i].shape, task_client_errmsg(c));
            rc = 1;
            break;
        }
        printf("%s %s\n", v[i].shape, id.str);
    }
    json_object_put(args);
    json_object_put(link);
    json_object_put(errback);
    json_object_put(chain);
    task_client_free(c);
    return rc;
}
