/*
 * fuzz_jsonarg.c - libFuzzer harness for taskctl's --args/--kwargs reader (taskctl/jsonarg.c,
 * ctl_json_arg()): what it takes must be strict JSON a Celery worker reads the same way, so a
 * value it takes, written out again by json-c (as task_send does), must be taken again, with
 * the same text.
 *
 * Input: SEL TEXT (a command-line argument: it ends at the first NUL). SEL bit 0: --args (an
 * array) or --kwargs (an object).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jsonarg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void invariant(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_jsonarg: invariant failed: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    json_type want = (data[0] & 1) ? json_type_object : json_type_array;
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    char why[300] = "";
    json_object *o = ctl_json_arg(text, want, why, sizeof(why));
    if (o == NULL) {
        invariant(why[0] != '\0' && strchr(why, '\n') == NULL, "a one-line reason");
    } else {
        invariant(json_object_is_type(o, want), "the type asked for");
        char *again = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        if (again != NULL) {
            char why2[300] = "";
            json_object *p = ctl_json_arg(again, want, why2, sizeof(why2));
            if (p == NULL)
                fprintf(stderr, "fuzz_jsonarg: re-read of '%s' refused: %s\n", again, why2);
            invariant(p != NULL, "what was taken, written out, is taken again");
            invariant(strcmp(json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN), again) == 0,
                      "and reads back the same");
            json_object_put(p);
            free(again);
        }
        json_object_put(o);
    }
    free(text);
    return 0;
}
