#!/usr/bin/env bash
# test_least_privilege.sh - the producer, worker and operator users of docs/security.md, created with the
# very commands of that file on a RabbitMQ node of our own, run real work: taskd as the worker
# user (with events); as the producer user, taskctl call (a result), a countdown, an autoretry,
# an explicit retry with a countdown, a libtask chord (tests/integration/lp_chord) and Python
# Celery (group, countdown, autoretry); as the operator user, inspect, control, revoke, lookups,
# events and the dead queue. All must complete, the broker must refuse the worker and the
# operator nothing, and the producer must be refused another queue.
set -u
. "$(dirname "$0")/itest.sh"
SRC=${TASKD_SOURCE_ROOT:?}
RMQ=$SRC/tests/harness/rmq-node
T=$(mktemp -d /tmp/itest-lp.XXXXXX)
WPID=''
cleanup() {
    [ -n "$WPID" ] && kill "$WPID" 2>/dev/null && wait "$WPID" 2>/dev/null
    node_stop "$T"
    rm -rf "$T"
}
trap cleanup EXIT
node_start "$T"
PORT=$(sed -n 's/^TASKD_RMQ_PORT_1=//p' "$T/rmq.env")

# The commands of docs/security.md, with the passwords filled in.
n=0
while IFS= read -r line; do
    line=${line//PRODUCER-PASSWORD/prod-pw}
    line=${line//WORKER-PASSWORD/work-pw}
    line=${line//OPERATOR-PASSWORD/op-pw}
    eval "set -- ${line#rabbitmqctl }"
    "$RMQ" ctl --dir "$T/rmq" 1 "$@" </dev/null >/dev/null 2>"$T/ctl.err" || { cat "$T/ctl.err"; bad "rabbitmqctl $1"; }
    n=$((n + 1))
done < <(grep '^rabbitmqctl ' "$SRC/docs/security.md")
check "docs/security.md gives 6 rabbitmqctl commands" 6 $n

unset TASKD_BROKER_URL TASKD_MANAGEMENT_URL
WURL=amqp://taskd-worker:work-pw@127.0.0.1:$PORT//
PURL=amqp://taskd-producer:prod-pw@127.0.0.1:$PORT//
OURL=amqp://taskd-operator:op-pw@127.0.0.1:$PORT//
export TASKD_CLIENT_DEFAULT_QUEUE=celery
LOG=$T/taskd.log
"$TASKD" --broker "$WURL" -Q celery -E --module "$MOD" 2>"$LOG" &
WPID=$!
for _ in $(seq 200); do grep -q event=worker_ready "$LOG" && break; sleep 0.05; done
grep -q event=worker_ready "$LOG" && ok "taskd starts as the worker user" ||
    { bad "taskd starts as the worker user"; cat "$LOG"; finish; exit; }

out=$("$CTL" --broker "$PURL" call test.add --args '[2,3]' 2>&1)
check "producer: call and result" 5 "$out"
t0=$(date +%s%N)
out=$("$CTL" --broker "$PURL" call test.add --args '[1,1]' --countdown 2 2>&1)
took=$((($(date +%s%N) - t0) / 1000000))
check "producer: countdown" 2 "$out"
[ $took -ge 1500 ] && ok "the countdown waited (${took} ms)" || bad "the countdown waited (${took} ms)"
out=$("$CTL" --broker "$PURL" call test.flaky --args '[2,"ConnectionError"]' --timeout 20 2>&1)
check "producer: autoretry (2 retries)" 2 "$out"
out=$("$CTL" --broker "$PURL" call test.retry --args '[2]' --timeout 20 2>&1)
check "producer: explicit retries" 2 "$out"
out=$(TASKD_BROKER_URL=$PURL "$B/tests/integration/lp_chord" 5 2>&1)
check "producer: libtask chord of 5 with a callback" "SUCCESS 20" "$out"

out=$(timeout 90 /usr/bin/python3 - "$PURL" <<'PYEOF' 2>&1
import sys
from celery import Celery, group
app = Celery("lp", broker=sys.argv[1], backend="rpc://")
app.conf.task_default_queue = "celery"
app.conf.task_routes = {"*": {"queue": "celery", "exchange": "celery", "routing_key": "celery"}}
r = [app.send_task("test.add", (20, 22)).get(timeout=20),
     app.send_task("test.add", (1, 2), countdown=1).get(timeout=20),
     app.send_task("test.flaky", (1, "TimeoutError")).get(timeout=20),
     group(app.signature("test.add", (i, i)) for i in range(4)).apply_async().get(timeout=20)]
print(r)
PYEOF
)
check "producer: Python Celery add, countdown, autoretry, group" "[42, 3, 1, [0, 2, 4, 6]]" "${out##*$'\n'}"

err=$("$CTL" --broker "$PURL" send test.add --args '[1,1]' --queue elsewhere 2>&1); rc=$?
[ $rc = 4 ] && [[ $err == *ACCESS_REFUSED* ]] && ok "producer: another queue is refused" ||
    bad "producer: another queue is refused (rc=$rc: $err)"

# The operator: remote control, events, revoke, lookups, the dead queue.
out=$("$CTL" --broker "$OURL" inspect ping --timeout 2 2>&1)
[[ $out == *pong*"1 node online"* ]] && ok "operator: inspect ping" || bad "operator: inspect ping ($out)"
out=$("$CTL" --broker "$OURL" control rate_limit test.add 1000/s --timeout 2 2>&1)
[[ $out == *"new rate limit set"* ]] && ok "operator: control rate_limit" || bad "operator: control ($out)"
id=$("$CTL" --broker "$PURL" send test.sleep --args '[30]' 2>&1)
sleep 0.5
out=$("$CTL" --broker "$OURL" revoke "$id" --terminate --timeout 3 2>&1)
[[ $out == "revoked $id (1 worker acknowledged)" ]] && ok "operator: revoke --terminate" ||
    bad "operator: revoke --terminate ($out)"
out=$("$CTL" --broker "$OURL" wait "$id" --timeout 10 2>&1)
[[ $out == *REVOKED* ]] && ok "operator: wait (a lookup) sees REVOKED" || bad "operator: wait ($out)"
id=$("$CTL" --broker "$PURL" send test.add --args '[6,7]' 2>&1)
out=$("$CTL" --broker "$OURL" wait "$id" --timeout 10 2>&1)
check "operator: wait (a lookup) for another process's task" 13 "$out"
("$CTL" --broker "$PURL" call test.add --args '[1,1]' >/dev/null 2>&1 &)
out=$("$CTL" --broker "$OURL" events --count 2 --timeout 10 2>&1); rc=$?
check "operator: events" 0 $rc
out=$("$CTL" --broker "$OURL" dead --limit 1 2>&1); rc=$?
check "operator: dead" 0 $rc

kill "$WPID"; wait "$WPID"; WPID=''
refused=$(grep -c "refused for user 'taskd-worker'" "$BLOG")
check "the broker refused the worker user nothing" 0 "$refused"
oref=$(grep -c "refused for user 'taskd-operator'" "$BLOG")
check "the broker refused the operator user nothing" 0 "$oref"
errs=$(grep -c 'level=error' "$LOG")
check "taskd logged no error" 0 "$errs"
[ "$refused" = 0 ] && [ "$errs" = 0 ] || { grep "refused for user" "$BLOG" | head -5; grep level=error "$LOG" | head -5; }
finish
