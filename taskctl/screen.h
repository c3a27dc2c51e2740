/*
 * screen.h - the full-screen terminal of taskctl top with plain ANSI escapes: raw keyboard
 * (no echo, no line buffering; Ctrl-C still signals), the alternate screen, a hidden cursor, and
 * a frame of lines drawn over the previous one. Everything is undone by screen_leave(), which the
 * caller runs on every way out (q, Ctrl-C, SIGTERM, SIGHUP).
 */
#ifndef TASKCTL_SCREEN_H
#define TASKCTL_SCREEN_H

#include <stdbool.h>
#include <stddef.h>

#define SCREEN_MAX_LINES 256
#define SCREEN_LINE_BYTES 1024

/* A frame: lines of text, each optionally shown highlighted (a section header). */
struct frame {
    char text[SCREEN_MAX_LINES][SCREEN_LINE_BYTES];
    bool strong[SCREEN_MAX_LINES];
    int n;
};

void frame_add(struct frame *f, bool strong, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Enter raw mode and the alternate screen; installs the SIGINT/SIGTERM/SIGHUP handlers. */
void screen_enter(void);
/* Restore the terminal as screen_enter() found it; safe to call twice. */
void screen_leave(void);
/* Draw `f` from the top-left corner, cut to the terminal's size. */
void screen_draw(const struct frame *f);
/* Print `f` as plain lines (not a terminal, or --once). */
void frame_print(const struct frame *f);

/*
 * True once the user asked to quit: `q`/`Q` or Ctrl-C typed (read without waiting), or a
 * SIGINT/SIGTERM/SIGHUP received. `wait_ms` > 0 waits that long for a key first.
 */
bool screen_quit_requested(int wait_ms);

#endif
