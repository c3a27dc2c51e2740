/* progress.c - see progress.h. */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "progress.h"

#define BAR_WIDTH 30

static bool shown;

bool progress_wanted(bool json)
{
    return !json && isatty(STDOUT_FILENO);
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1)
        return ws.ws_col;
    return 80;
}

/* "3/10 [#########.....................] 30%" into buf, or false when meta is not {current,
 * total} numbers. */
static bool format_bar(json_object *meta, char *buf, size_t size)
{
    json_object *cur, *tot;
    if (!json_object_object_get_ex(meta, "current", &cur) ||
        !json_object_object_get_ex(meta, "total", &tot))
        return false;
    bool numbers = (json_object_is_type(cur, json_type_int) ||
                    json_object_is_type(cur, json_type_double)) &&
                   (json_object_is_type(tot, json_type_int) ||
                    json_object_is_type(tot, json_type_double));
    double c = json_object_get_double(cur), t = json_object_get_double(tot);
    if (!numbers || t <= 0)
        return false;
    double frac = c / t < 0 ? 0 : c / t > 1 ? 1 : c / t;
    char bar[BAR_WIDTH + 1];
    int filled = (int)(frac * BAR_WIDTH + 0.5);
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    snprintf(buf, size, "%s/%s [%s] %3d%%", json_object_get_string(cur),
             json_object_get_string(tot), bar, (int)(frac * 100 + 0.5));
    return true;
}

void progress_show(const char *id, task_state st, const char *name, json_object *meta, void *ud)
{
    (void)id;
    (void)st;
    (void)ud;
    char detail[512] = "";
    if (meta != NULL && !format_bar(meta, detail, sizeof(detail)))
        snprintf(detail, sizeof(detail), "%s",
                 json_object_to_json_string_ext(meta, JSON_C_TO_STRING_PLAIN));
    char line[640];
    snprintf(line, sizeof(line), "%s %s", name, detail);
    int width = term_width() - 1;
    if ((int)strlen(line) > width)
        line[width] = '\0';
    printf("\r\033[K%s", line);
    fflush(stdout);
    shown = true;
}

void progress_clear(void)
{
    if (!shown)
        return;
    fputs("\r\033[K", stdout);
    fflush(stdout);
    shown = false;
}
