/*
 * test_log.c - logged values are logfmt-escaped: a task name with a newline once forged a
 * second log line (issue 15). One event must stay one line whatever its values hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "log.h"

static void check(const char *in, const char *want)
{
    char buf[LOG_V_MAX + 3];
    assert_string_equal(log_escape(in, buf, sizeof(buf)), want);
    assert_string_equal(log_v(in), want);
}

static void plain_values_are_unchanged(void **state)
{
    (void)state;
    check("test.add", "test.add");
    check("0194f2b1-7c3e-7d2a-9b1c-2f3e4d5c6b7a", "0194f2b1-7c3e-7d2a-9b1c-2f3e4d5c6b7a");
    check("caf\xc3\xa9", "caf\xc3\xa9"); /* printable UTF-8 stays readable */
}

static void specials_are_quoted_and_escaped(void **state)
{
    (void)state;
    check("", "\"\"");
    check(NULL, "\"\"");
    check("a b", "\"a b\"");
    check("k=v", "\"k=v\"");
    check("say \"hi\"", "\"say \\\"hi\\\"\"");
    check("back\\slash", "\"back\\\\slash\"");
    check("x\ny", "\"x\\ny\"");
    check("x\r\ty", "\"x\\r\\ty\"");
    check("bell\a", "\"bell\\x07\"");
    check("del\x7f", "\"del\\x7f\"");
    check("\xff\xfe", "\"\\xff\\xfe\"");             /* not UTF-8 */
    check("\xc3", "\"\\xc3\"");                      /* cut sequence */
    check("\xc2\x85", "\"\\xc2\\x85\"");             /* C1 next-line */
    check("a\xe2\x80\xa8" "b", "\"a\\xe2\\x80\\xa8b\""); /* line separator */
}

static void long_values_are_cut_and_marked(void **state)
{
    (void)state;
    char in[2000];
    memset(in, 'a', sizeof(in) - 1);
    in[sizeof(in) - 1] = '\0';
    const char *out = log_v(in);
    assert_true(strlen(out) <= LOG_V_MAX + 2);
    assert_string_equal(out + strlen(out) - 3, "...");
    memset(in, '\n', sizeof(in) - 1);
    out = log_v(in);
    assert_true(strlen(out) <= LOG_V_MAX + 2);
    assert_string_equal(out + strlen(out) - 4, "...\"");
    assert_null(strchr(out, '\n'));
    /* A small buffer still gets a well-formed value. */
    char small[8];
    assert_string_equal(log_escape("a b c d e f", small, sizeof(small)), "\"a ...\"");
    assert_string_equal(log_escape("abcdefghij", small, sizeof(small)), "abcd...");
    assert_string_equal(log_escape("abcdefg", small, sizeof(small)), "abcdefg");
}

static void slots_do_not_clobber_each_other_within_a_call(void **state)
{
    (void)state;
    const char *v[LOG_V_SLOTS];
    char in[LOG_V_SLOTS][16];
    for (int i = 0; i < LOG_V_SLOTS; i++) {
        snprintf(in[i], sizeof(in[i]), "v %d", i);
        v[i] = log_v(in[i]);
    }
    for (int i = 0; i < LOG_V_SLOTS; i++) {
        char want[20];
        snprintf(want, sizeof(want), "\"v %d\"", i);
        assert_string_equal(v[i], want);
    }
}

static void a_forged_name_stays_on_one_line(void **state)
{
    (void)state;
    char path[] = "/tmp/test_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    log_event(LV_ERROR, 0, "task_failed", "task=%s task_id=%s",
              log_v("evil\nts=2026 level=error event=forged"), log_v("id 1"));
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);
    char buf[4096] = "";
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "task=\"evil\\nts=2026 level=error event=forged\" "
                                "task_id=\"id 1\""));
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* the only newline ends the line */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_values_are_unchanged),
        cmocka_unit_test(specials_are_quoted_and_escaped),
        cmocka_unit_test(long_values_are_cut_and_marked),
        cmocka_unit_test(slots_do_not_clobber_each_other_within_a_call),
        cmocka_unit_test(a_forged_name_stays_on_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
