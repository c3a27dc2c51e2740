/* screen.c - see screen.h. */
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include "common.h"
#include "screen.h"

static struct termios saved;
static bool raw_on, screen_on;
static volatile sig_atomic_t got_signal;
static bool quit;

static void on_signal(int sig)
{
    got_signal = sig;
}

void frame_add(struct frame *f, bool strong, const char *fmt, ...)
{
    if (f->n >= SCREEN_MAX_LINES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->text[f->n], SCREEN_LINE_BYTES, fmt, ap);
    va_end(ap);
    ctl_scrub(f->text[f->n]);
    f->strong[f->n++] = strong;
}

static void put(const char *s)
{
    fputs(s, stdout);
}

void screen_enter(void)
{
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll() returns at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios raw = saved;
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO); /* ISIG stays: Ctrl-C is a SIGINT */
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        raw_on = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    }
    put("\033[?1049h\033[?25l\033[H\033[2J"); /* alternate screen, cursor hidden, cleared */
    fflush(stdout);
    screen_on = true;
}

void screen_leave(void)
{
    if (screen_on) {
        put("\033[0m\033[?25h\033[?1049l");
        fflush(stdout);
        screen_on = false;
    }
    if (raw_on) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        raw_on = false;
    }
}

static void term_size(int *rows, int *cols)
{
    struct winsize ws;
    *rows = 24;
    *cols = 80;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        *rows = ws.ws_row;
        *cols = ws.ws_col;
    }
}

void screen_draw(const struct frame *f)
{
    int rows, cols;
    term_size(&rows, &cols);
    put("\033[H");
    int n = f->n < rows ? f->n : rows;
    for (int i = 0; i < n; i++) {
        /* never the last column of the last row: the terminal would scroll */
        int width = i == rows - 1 ? cols - 1 : cols;
        if (f->strong[i])
            put("\033[1;7m");
        printf("%-*.*s", width, width, f->text[i]);
        if (f->strong[i])
            put("\033[0m");
        if (i < n - 1)
            put("\r\n");
    }
    put("\033[J");
    fflush(stdout);
}

void frame_print(const struct frame *f)
{
    for (int i = 0; i < f->n; i++)
        puts(f->text[i]);
    fflush(stdout);
}

bool screen_quit_requested(int wait_ms)
{
    if (quit || got_signal != 0)
        return quit = true;
    if (!raw_on) {
        if (wait_ms > 0)
            poll(NULL, 0, wait_ms);
        return quit = got_signal != 0;
    }
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    if (poll(&p, 1, wait_ms > 0 ? wait_ms : 0) <= 0)
        return quit = got_signal != 0;
    char keys[32];
    ssize_t n = read(STDIN_FILENO, keys, sizeof(keys));
    for (ssize_t i = 0; i < n; i++)
        if (keys[i] == 'q' || keys[i] == 'Q' || keys[i] == 3 /* Ctrl-C with ISIG off */)
            quit = true;
    return quit || got_signal != 0;
}
