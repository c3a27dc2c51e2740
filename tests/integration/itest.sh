# itest.sh - sourced by the shell integration tests: the broker check (skip, or fail under
# TASKD_REQUIRE_BROKER=1), the programs under test, and ok/bad/check/finish counting.
if [ -z "${TASKD_BROKER_URL:-}" ]; then
    echo "no TASKD_BROKER_URL: run under tests/harness/with-broker" >&2
    [ "${TASKD_REQUIRE_BROKER:-0}" = 1 ] && exit 1
    exit 77
fi
B=${TASKD_BUILD_ROOT:?}
CTL=$B/taskctl/taskctl
TASKD=$B/taskd/taskd
MOD=$B/tests/tasks/libtesttasks.so
URL=${TASKD_BROKER_URL%%,*}
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; }
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (expected '$2', got '$3')"; fi
}
# The last line every test prints, and its exit status.
# A RabbitMQ node of the test's own in DIR/rmq (its variables in DIR/rmq.env); BLOG: its log.
# Stop it with node_stop DIR (from the test's EXIT trap).
node_start() {
    "${TASKD_SOURCE_ROOT:?}/tests/harness/rmq-node" start --dir "$1/rmq" >"$1/rmq.env" ||
        { echo "private node did not start"; exit 1; }
    BLOG=$1/rmq/n1/log/rabbit.log
}
node_stop() { "${TASKD_SOURCE_ROOT:?}/tests/harness/rmq-node" stop --dir "$1/rmq" >/dev/null 2>&1; }
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
