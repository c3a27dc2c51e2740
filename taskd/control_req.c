/* control_req.c - see control_req.h. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "codec.h"
#include "control_req.h"
#include "task_limits.h"

static const char *const bad_slugs[] = {
    "none",
#define CONTROL_X_SLUG(sym, slug) slug,
    CONTROL_BAD_MAP(CONTROL_X_SLUG)
#undef CONTROL_X_SLUG
};

const char *control_bad_slug(enum control_bad b)
{
    return b > CONTROL_BAD_NONE && b < CONTROL_BAD__COUNT ? bad_slugs[b] : "unknown";
}

static bool short_str(const char *s)
{
    return s != NULL && s[0] != '\0' && strlen(s) <= CONTROL_SHORT_MAX;
}

/* destination: absent or null is a broadcast; else a list naming the workers meant. */
static int read_destination(json_object *root, const char *hostname, bool *for_me)
{
    json_object *dest = NULL;
    *for_me = true;
    if (!json_object_object_get_ex(root, "destination", &dest) || dest == NULL)
        return 0;
    if (!json_object_is_type(dest, json_type_array))
        return TASK_EPROTO;
    *for_me = false;
    for (size_t i = 0; i < json_object_array_length(dest) && !*for_me; i++) {
        const char *name = task__json_idx_str(dest, i);
        *for_me = name != NULL && strcmp(name, hostname) == 0;
    }
    return 0;
}

/* reply_to and ticket: both there and well-formed is a call, both absent (or null) a cast. */
static enum control_bad read_reply(json_object *root, struct control_req *out)
{
    json_object *to = NULL, *ticket = NULL;
    bool has_to = json_object_object_get_ex(root, "reply_to", &to) && to != NULL;
    bool has_ticket = json_object_object_get_ex(root, "ticket", &ticket) && ticket != NULL;
    if (has_ticket && !(json_object_is_type(ticket, json_type_string) &&
                        short_str(json_object_get_string(ticket))))
        return CONTROL_BAD_TICKET;
    if (!has_to)
        return CONTROL_BAD_NONE;
    const char *rk = task__json_get_str(to, "routing_key");
    if (!short_str(rk))
        return CONTROL_BAD_REPLY_TO;
    if (has_ticket) {
        out->reply_rk = rk;
        out->ticket = json_object_get_string(ticket);
    }
    return CONTROL_BAD_NONE;
}

static enum control_bad read_req(json_object *root, const char *hostname, struct control_req *out)
{
    if (!json_object_is_type(root, json_type_object))
        return CONTROL_BAD_NOT_OBJECT;
    out->method = task__json_get_str(root, "method");
    if (!short_str(out->method))
        return CONTROL_BAD_METHOD;
    if (read_destination(root, hostname, &out->for_me) != 0)
        return CONTROL_BAD_DESTINATION;
    json_object *args = NULL;
    if (json_object_object_get_ex(root, "arguments", &args) && args != NULL &&
        !json_object_is_type(args, json_type_object))
        return CONTROL_BAD_ARGUMENTS;
    out->args = args;
    return read_reply(root, out);
}

int control_req_parse(const void *body, size_t len, const char *hostname,
                      struct control_req *out, enum control_bad *why)
{
    enum task__bad jwhy;
    memset(out, 0, sizeof(*out));
    json_object *root = task__json_parse(body, len, TASK__JSON_MAX_DEPTH, &jwhy, NULL);
    *why = root == NULL ? CONTROL_BAD_NOT_JSON : read_req(root, hostname, out);
    if (*why != CONTROL_BAD_NONE) {
        json_object_put(root);
        memset(out, 0, sizeof(*out));
        return TASK_EPROTO;
    }
    out->root = root;
    return 0;
}

void control_req_free(struct control_req *req)
{
    json_object_put(req->root);
    memset(req, 0, sizeof(*req));
}

size_t control_revoke_count(json_object *args)
{
    json_object *ids = NULL;
    json_object_object_get_ex(args, "task_id", &ids);
    if (json_object_is_type(ids, json_type_string))
        return 1;
    return json_object_is_type(ids, json_type_array) ? json_object_array_length(ids) : 0;
}

const char *control_revoke_id(json_object *args, size_t i)
{
    json_object *ids = NULL;
    json_object_object_get_ex(args, "task_id", &ids);
    const char *id = json_object_is_type(ids, json_type_string)
                         ? (i == 0 ? json_object_get_string(ids) : NULL)
                         : task__json_idx_str(ids, i);
    return id != NULL && id[0] != '\0' && strlen(id) <= TASK__ID_MAX ? id : NULL;
}

