/*
 * fuzz_canvas.c - libFuzzer harness for the canvas JSON a worker reads from any client that can
 * publish a task: a signature (link, link_error, chain step, chord callback) and a chord part.
 * The input is JSON text, parsed as the worker parses a message (shared depth, UTF-8 checked).
 * Invariants: a signature the worker accepts encodes into a task message that its own decoder
 * accepts (name and id intact) unless the message would be too deep or too big, which the
 * worker refuses the same way; a part's index is -1 or within the header.
 * Built and run by tests/fuzz/run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "canvas_sig.h"
#include "codec.h"
#include "task_limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void invariant(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "invariant failed: %s\n", what);
        abort();
    }
}

static void roundtrip(const struct canvas_call *call, json_object *chain)
{
    const char *id = call->task_id ? call->task_id : "01890a5d-ac96-774b-bcce-b302099a8057";
    struct task__msg m = {
        .lang = "c", .task = (char *)call->name, .id = (char *)id, .correlation_id = (char *)id,
        .group_index = -1, .reply_to = (char *)call->reply_to, .delivery_mode = 2,
        .args = call->args, .kwargs = call->kwargs, .chain = chain, .eta = call->eta,
        .expires = call->expires, .callbacks = call->link, .errbacks = call->link_error,
    };
    struct task__wire wire;
    task_error err = {0};
    if (task__msg_encode(&m, &wire, &err) != 0)
        return; /* an id or name with a NUL byte cut to nothing: refused before any publish */
    struct task__limits lim = {.max_body_bytes = TASK__MAX_MESSAGE_BYTES,
                               .max_depth = TASK__JSON_MAX_DEPTH};
    struct task__msg out;
    enum task__bad why = TASK_BAD_NONE;
    int rc = task__msg_decode(&wire.props, wire.body, wire.body_len, &lim, &out, &why, &err);
    invariant(rc == 0 || why == TASK_BAD_TOO_DEEP || why == TASK_BAD_TOO_BIG,
              "an accepted signature encodes into a message the worker accepts");
    if (rc == 0) {
        invariant(strcmp(out.task, call->name) == 0, "task name survives");
        invariant(strcmp(out.id, wire.id) == 0, "id survives");
    }
    task__msg_clear(&out);
    task__wire_free(&wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum task__bad why;
    json_object *root = task__json_parse(data, size, TASK__JSON_MAX_DEPTH, &why, NULL);
    if (root == NULL)
        return 0;
    json_object *first = json_object_new_int(7);
    struct canvas_call call;
    const char *bad = NULL;
    if (canvas_sig_read(root, first, 1.7e9, &call, &bad) == 0) {
        invariant(call.name != NULL && call.name[0] != '\0', "a name");
        invariant(json_object_is_type(call.args, json_type_array), "args is a list");
        json_object *chain = NULL;
        json_object_object_get_ex(root, "chain", &chain);
        roundtrip(&call, json_object_is_type(chain, json_type_array) ? chain : NULL);
        canvas_call_clear(&call);
    } else {
        invariant(bad != NULL && bad[0] != '\0', "a refusal has a reason");
    }
    for (int n = 1; n <= 64; n *= 4) {
        int i = chord_part_index(root, n);
        invariant(i >= -1 && i < n, "part index in range");
    }
    json_object_put(first);
    json_object_put(root);
    return 0;
}
