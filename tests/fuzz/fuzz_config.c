/*
 * fuzz_config.c - libFuzzer harness for the config file loader (libtask/src/config.c): libconfig
 * text -> task_config through the option table. A config file is an administrator's, but a typo
 * or a truncated file must give one error line naming file:line, never a crash or a value
 * outside its option's range.
 *
 * Input: the file's text. Inputs with "@include" are skipped: libconfig would read the named
 * file (say /dev/zero, for ever), which is the administrator's choice, not a parser bug.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <task/config.h>
#include "config_opts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void invariant(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_config: invariant failed: %s\n", what);
        abort();
    }
}

static char path[64];

static void check_values(const task_config *cfg)
{
    size_t n;
    const struct task__opt *o = task__config_opts(&n);
    for (size_t i = 0; i < n; i++) {
        const void *f = (const char *)cfg + o[i].off;
        switch (o[i].type) {
        case OPT_INT: {
            int v = *(const int *)f;
            invariant(v >= o[i].min && v <= o[i].max, o[i].path);
            break;
        }
        case OPT_SECONDS: {
            double v = *(const double *)f;
            invariant(v >= o[i].min && v <= o[i].max, o[i].path); /* NaN fails both */
            break;
        }
        case OPT_BOOL:
            break;
        case OPT_STRING:
            invariant(*(char *const *)f != NULL, o[i].path);
            break;
        case OPT_STRLIST: {
            const task_strlist *l = f;
            invariant(l->n >= 0 && (l->n == 0 || l->v != NULL), o[i].path);
            for (int k = 0; k < l->n; k++)
                invariant(l->v[k] != NULL, o[i].path);
            break;
        }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memmem(data, size, "@include", 8) != NULL)
        return 0;
    if (path[0] == '\0')
        snprintf(path, sizeof(path), "/tmp/fuzz_config_%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return 0;
    size_t w = fwrite(data, 1, size, f);
    if (fclose(f) != 0 || w != size)
        return 0;
    task_config *cfg = task_config_new();
    if (cfg == NULL)
        return 0;
    task_error err = {0};
    int rc = task_config_load_file(cfg, path, &err);
    if (rc == 0) {
        check_values(cfg);
    } else {
        invariant(rc == TASK_ECONFIG || rc == TASK_EIO || rc == TASK_ENOMEM, "error code");
        invariant(err.msg[0] != '\0', "an error has a message");
        invariant(strchr(err.msg, '\n') == NULL, "the message is one line");
        /* The loader stops at the first error; what it set so far still obeys the ranges. */
        check_values(cfg);
    }
    task_config_free(cfg);
    return 0;
}
