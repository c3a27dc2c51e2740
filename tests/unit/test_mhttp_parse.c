/*
 * test_mhttp_parse.c - the /metrics request-head parser on its own (no sockets): what each head
 * is answered, when it waits for more, and that the verdict never depends on a NUL terminator.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "metrics_http.h"

/* Parse `text` from a buffer with no NUL after it (ASan sees any read past the end). */
static int parse(const char *text, size_t max, bool *head)
{
    size_t n = strlen(text);
    char *p = malloc(n ? n : 1);
    memcpy(p, text, n);
    struct mhttp_req rq;
    int rc = mhttp_parse_head(p, n, max, &rq);
    free(p);
    assert_int_equal(rq.status, rc);
    if (head != NULL)
        *head = rq.head;
    return rc;
}

static void heads_get_their_answers(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        int status;
    } cases[] = {
        {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200},
        {"GET /metrics?x=1 HTTP/1.0\n\n", 200},
        {"HEAD /metrics HTTP/1.1\r\n\r\n", 200},
        {"GET / HTTP/1.1\r\n\r\n", 404},
        {"GET /metricsx HTTP/1.1\r\n\r\n", 404},
        {"POST /metrics HTTP/1.1\r\n\r\n", 405},
        {"GET /metrics HTTP/2.0\r\n\r\n", 400},
        {"GET /metrics\r\n\r\n", 400},
        {"GET /metrics HTTP/1.1 extra\r\n\r\n", 400},
        {"GET /metrics\nHTTP/1.1\n\n", 400},
        {"\x16\x03\x01\x02\x00", 400},
        {"get /metrics HTTP/1.1\r\n\r\n", 400},
        {"GET /metr\x01ics HTTP/1.1\r\n\r\n", 400},
        {"ABCDEFGHIJKLMNOPQ /metrics HTTP/1.1\r\n\r\n", 400},
        {"GET /metrics HTTP/1.1\r\n", 0},
        {"GET /met", 0},
        {"GE", 0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse(cases[i].head, 4096, NULL);
        if (rc != cases[i].status)
            fail_msg("'%s': %d, expected %d", cases[i].head, rc, cases[i].status);
    }
    bool head = false;
    assert_int_equal(parse("HEAD /metrics HTTP/1.1\r\n\r\n", 4096, &head), 200);
    assert_true(head);
    assert_int_equal(parse("GET /metrics HTTP/1.1\r\n\r\n", 4096, &head), 200);
    assert_false(head);
}

static void a_nul_in_the_head_is_junk(void **state)
{
    (void)state;
    static const char req[] = "GET /metrics HTTP/1.1\r\nX: a\0b\r\n\r\n";
    struct mhttp_req rq;
    assert_int_equal(mhttp_parse_head(req, sizeof(req) - 1, 4096, &rq), 400);
}

/* Found by fuzz_metrics: the same bytes read at once or in two reads got different answers,
 * because a NUL after the head counted when it came in the same read. */
static void bytes_after_the_head_do_not_change_the_answer(void **state)
{
    (void)state;
    static const char req[] = "GET /metrics HTTP/1.1\r\n\r\n\0\x16 junk";
    struct mhttp_req rq;
    assert_int_equal(mhttp_parse_head(req, sizeof(req) - 1, 4096, &rq), 200);
    static const char req2[] = "EI ]  HTTP/1.1PPE\n\n ]\r\0\0";
    assert_int_equal(mhttp_parse_head(req2, 22, 4096, &rq), 405);
    assert_int_equal(mhttp_parse_head(req2, sizeof(req2) - 1, 4096, &rq), 405);
}

static void a_head_that_fills_the_buffer_unfinished_is_431(void **state)
{
    (void)state;
    assert_int_equal(parse("GET /metrics HTTP/1.1\r\nX-Long: aaaa", 30, NULL), 431);
    assert_int_equal(parse("GET /metrics HTTP/1.1\r\n\r\n", 25, NULL), 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(heads_get_their_answers),
        cmocka_unit_test(a_nul_in_the_head_is_junk),
        cmocka_unit_test(bytes_after_the_head_do_not_change_the_answer),
        cmocka_unit_test(a_head_that_fills_the_buffer_unfinished_is_431),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
