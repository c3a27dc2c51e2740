#!/usr/bin/env bash
# test_watch_streams.sh - taskctl wait (task_watch) of a Celery-style uuid4 id keeps following
# its results stream when the stream is not there yet or the connection changes; on a node of
# its own, which starts with no results streams (long_jobs scenario A: a wait started right
# after the workers of a fresh broker came up waited out its 400 s, as the workers were still
# creating the results streams they declare without waiting).
#   late        the wait starts before any worker: the stream of the id appears later, with the
#               task's states in it; the wait returns the result
#   reconnect   the broker closes the wait's connection while the task runs; the wait
#               reconnects and returns the result
set -u
. "$(dirname "$0")/itest.sh"
SRC=${TASKD_SOURCE_ROOT:?}
RMQ=$SRC/tests/harness/rmq-node
T=$(mktemp -d /tmp/itest-watch.XXXXXX)
WPID='' CPID=''
cleanup() {
    [ -n "$CPID" ] && kill "$CPID" 2>/dev/null && wait "$CPID" 2>/dev/null
    [ -n "$WPID" ] && kill "$WPID" 2>/dev/null && wait "$WPID" 2>/dev/null
    node_stop "$T"
    rm -rf "$T"
}
trap cleanup EXIT
node_start "$T"
U=$(sed -n 's/^TASKD_RMQ_URL_1=//p' "$T/rmq.env")
Q=watch_$$
uuid4() { cat /proc/sys/kernel/random/uuid; }
now() { date +%s.%N; }
# secs_since T0 - whole seconds since T0 (now's format)
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%d", b - a }'; }
# wait_pid PID S - PID's exit status, or 124 after S seconds (PID is then killed)
wait_pid() {
    for _ in $(seq $(($2 * 10))); do
        kill -0 "$1" 2>/dev/null || { wait "$1"; return; }
        sleep 0.1
    done
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 124
}

# -- late: the watch begins on a broker with no results stream at all
id=$(uuid4)
"$CTL" --broker "$U" wait "$id" --timeout 40 >"$T/late.out" 2>"$T/late.err" &
CPID=$!
for _ in $(seq 100); do grep -q "basic.consume caused a channel exception not_found" "$BLOG" &&
    break; sleep 0.1; done
grep -q "basic.consume caused a channel exception not_found" "$BLOG" &&
    ok "late: the wait found no results stream to read" ||
    bad "late: the wait found no results stream to read (it must start before any worker)"
sleep 2 # the wait's first tries
TASKD_WORKER_DEAD_QUEUE=$Q.dead "$TASKD" --broker "$U" -Q "$Q" --module "$MOD" 2>"$T/taskd.log" &
WPID=$!
for _ in $(seq 300); do grep -q event=worker_ready "$T/taskd.log" && break; sleep 0.05; done
grep -q event=worker_ready "$T/taskd.log" ||
    { cat "$T/taskd.log"; echo "taskd did not start"; exit 1; }
t0=$(now)
"$CTL" --broker "$U" send test.add --args '[2,3]' --queue "$Q" --id "$id" >/dev/null ||
    bad "late: send"
wait_pid "$CPID" 30
rc=$?
CPID=''
took=$(secs_since "$t0")
check "late: the wait returns the result" "0 5" "$rc $(cat "$T/late.out")"
# The streams appear within a few seconds; the wait tries again at most 5 s apart.
[ "$took" -le 12 ] && ok "late: within 12 s of the send (${took} s)" ||
    bad "late: within 12 s of the send (${took} s; $(cat "$T/late.err"))"

# -- reconnect: the broker closes the wait's connection while the task runs
id=$(uuid4)
"$CTL" --broker "$U" send test.sleep --args '[6]' --queue "$Q" --id "$id" >/dev/null ||
    bad "reconnect: send"
"$CTL" --broker "$U" wait "$id" --timeout 40 >"$T/re.out" 2>"$T/re.err" &
CPID=$!
sleep 2
conn=$("$RMQ" ctl --dir "$T/rmq" 1 list_connections pid client_properties -q 2>/dev/null |
    grep '"connection_name","libtask client"' | cut -f1)
[ "$(printf '%s\n' "$conn" | grep -c .)" = 1 ] && ok "reconnect: the wait's connection found" ||
    bad "reconnect: the wait's connection found ($conn)"
"$RMQ" ctl --dir "$T/rmq" 1 close_connection "$conn" "test: closed during a watch" >/dev/null ||
    bad "reconnect: close_connection"
t0=$(now)
wait_pid "$CPID" 30
rc=$?
CPID=''
took=$(secs_since "$t0")
check "reconnect: the wait returns the result" "0 6" "$rc $(cat "$T/re.out")"
[ "$took" -le 12 ] && ok "reconnect: within 12 s of the close (${took} s)" ||
    bad "reconnect: within 12 s of the close (${took} s; $(cat "$T/re.err"))"
finish
