#!/usr/bin/env bash
# test_daemon_edges.sh - issue 15's daemon edges against a real broker and a real taskd: exit
# codes (taskd 0 after a warm shutdown, 3 after a cold one, whether a second signal or the grace
# period ends it; taskctl result 1 for FAILURE and REVOKED), taskctl --args/--kwargs strict JSON
# only, taskd ignoring ./taskd.conf, and modules or config files others could change refused.
set -u
. "$(dirname "$0")/itest.sh"
Q=t_edges_$$
export TASKD_CLIENT_DEFAULT_QUEUE=$Q TASKD_WORKER_DEAD_QUEUE=$Q.dead
TMP=$(mktemp -d /tmp/itest-edges.XXXXXX)
chmod 755 "$TMP"
PID=
cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    "$CTL" --broker "$URL" purge "$Q" --yes >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT

# start_taskd LOG [ARGS...]: a worker on our queue; waits for worker_ready.
start_taskd() {
    local log=$1
    shift
    "$TASKD" --broker "$URL" -Q "$Q" -c 1 --module "$MOD" "$@" 2>"$log" &
    PID=$!
    for _ in $(seq 200); do grep -q event=worker_ready "$log" && return 0; sleep 0.05; done
    cat "$log"
    return 1
}
# stop_taskd: wait for the worker to exit; its exit code in RC (not in $(...): a subshell
# cannot wait for our child).
stop_taskd() {
    wait "$PID"
    RC=$?
    PID=
}
# wait_active ID: until the worker reports the task running (inspect active), at most 10 s.
wait_active() {
    for _ in $(seq 50); do
        "$CTL" --broker "$URL" --json inspect active --timeout 0.5 2>/dev/null | grep -q "$1" &&
            return 0
        sleep 0.2
    done
    return 1
}

# --- taskctl --args/--kwargs: strict JSON only (parsed before any broker is contacted)
for bad_json in '[1] x' '[NaN]' '[Infinity]' "['a']" '[1,]' '[1] /* c */' '[1 // c
]'; do
    err=$("$CTL" --broker "$URL" send test.add --args "$bad_json" 2>&1 >/dev/null); rc=$?
    [[ $rc -eq 4 && $err == "taskctl: --args: "* && $(printf '%s\n' "$err" | wc -l) -eq 1 ]] &&
        ok "--args '$bad_json' is a usage error" || bad "--args '$bad_json': rc $rc, '$err'"
done
err=$("$CTL" --broker "$URL" call test.add --args '[1,2]' --kwargs '{"a":1,}' 2>&1); rc=$?
[[ $rc -eq 4 && $err == "taskctl: --kwargs: "* ]] && ok "--kwargs with a trailing comma" ||
    bad "--kwargs: rc $rc, '$err'"

# --- modules and config files others could change are refused (exit 2, one line)
cp "$MOD" "$TMP/libmod.so"
chmod 666 "$TMP/libmod.so"
err=$("$TASKD" --broker "$URL" -Q "$Q" --module "$TMP/libmod.so" 2>&1); rc=$?
check "a group/world-writable module stops taskd with exit 2" 2 $rc
[[ $(printf '%s\n' "$err" | wc -l) -eq 1 && $err == *"$TMP/libmod.so: refused: writable by group or others"* ]] &&
    ok "one line names the module and why" || bad "module refusal: '$err'"
chmod 644 "$TMP/libmod.so"
chmod 777 "$TMP"
err=$("$TASKD" --broker "$URL" -Q "$Q" --module "$TMP/libmod.so" 2>&1); rc=$?
[[ $rc -eq 2 && $err == *"its directory is writable by group or others"* ]] &&
    ok "a module in a directory others may write is refused" || bad "dir: rc $rc, '$err'"
chmod 755 "$TMP"
printf 'worker: { pool_size = 1; };\n' >"$TMP/open.conf"
chmod 646 "$TMP/open.conf"
err=$("$TASKD" --broker "$URL" -Q "$Q" --config "$TMP/open.conf" --module "$MOD" 2>&1); rc=$?
[[ $rc -eq 2 && $err == "taskd: $TMP/open.conf: refused: writable by group or others" ]] &&
    ok "a world-writable --config file is refused" || bad "config: rc $rc, '$err'"
chmod 666 "$TMP/libmod.so"
LOG=$TMP/insecure.log
if start_taskd "$LOG" --config "$TMP/open.conf" --module "$TMP/libmod.so" --allow-insecure-files; then
    ok "--allow-insecure-files loads them anyway"
    kill -TERM "$PID"
    stop_taskd
    check "... and it stops warm" 0 $RC
else
    bad "--allow-insecure-files: taskd did not start"
fi
rm -f "$TMP/libmod.so"

# --- taskd does not read ./taskd.conf (a file planted there could add a module)
printf 'worker: { modules = [ "%s/planted.so" ]; };\n' "$TMP" >"$TMP/taskd.conf"
chmod 644 "$TMP/taskd.conf"
LOG=$TMP/cwd.log
(cd "$TMP" && exec "$TASKD" --broker "$URL" -Q "$Q" -c 1 --module "$MOD") 2>"$LOG" &
PID=$!
for _ in $(seq 200); do grep -q -e event=worker_ready -e taskd: "$LOG" && break; sleep 0.05; done
if grep -q event=worker_ready "$LOG"; then
    ok "taskd starts in a directory whose taskd.conf it must not read"
    kill -TERM "$PID"
    stop_taskd
    check "... and it stops warm" 0 $RC
else
    bad "taskd read ./taskd.conf: $(cat "$LOG")"
fi
rm -f "$TMP/taskd.conf"

# --- taskctl result: exit 1 for FAILURE and REVOKED, naming the state on stderr
LOG=$TMP/result.log
start_taskd "$LOG" || { echo "taskd did not start"; exit 1; }
id=$("$CTL" --broker "$URL" send test.fail --args '["bad thing"]')
"$CTL" --broker "$URL" wait "$id" --timeout 10 >/dev/null 2>&1
err=$("$CTL" --broker "$URL" result "$id" 2>&1 >/dev/null); rc=$?
check "result exits 1 for a FAILURE" 1 $rc
[[ $err == *"$id"*FAILURE*"bad thing"* ]] && ok "result names the failure on stderr" ||
    bad "result stderr: '$err'"
"$CTL" --broker "$URL" --json result "$id" >/dev/null 2>&1; rc=$?
check "result --json exits 1 for a FAILURE too" 1 $rc
id=$("$CTL" --broker "$URL" send test.sleep --args '[30]')
wait_active "$id" || bad "test.sleep never ran"
"$CTL" --broker "$URL" revoke "$id" --terminate >/dev/null
"$CTL" --broker "$URL" wait "$id" --timeout 10 >/dev/null 2>&1
err=$("$CTL" --broker "$URL" result "$id" 2>&1 >/dev/null); rc=$?
check "result exits 1 for a REVOKED task" 1 $rc
[[ $err == *REVOKED* ]] && ok "result names REVOKED on stderr" || bad "revoked stderr: '$err'"
id=$("$CTL" --broker "$URL" send test.add --args '[1,2]')
"$CTL" --broker "$URL" wait "$id" --timeout 10 >/dev/null 2>&1
"$CTL" --broker "$URL" result "$id" >/dev/null 2>&1; rc=$?
check "result exits 0 for a SUCCESS" 0 $rc

# --- taskd: warm shutdown exits 0 after the running task finished
id=$("$CTL" --broker "$URL" send test.sleep --args '[1]')
wait_active "$id" || bad "test.sleep 1 never ran"
kill -TERM "$PID"
stop_taskd
check "taskd exits 0 after a warm shutdown" 0 $RC
out=$("$CTL" --broker "$URL" result "$id" 2>/dev/null | head -1)
check "the running task finished during the warm shutdown" SUCCESS "$out"

# --- taskd: a second signal makes it cold: exit 3
LOG=$TMP/cold.log
start_taskd "$LOG" || { echo "taskd did not start"; exit 1; }
id=$("$CTL" --broker "$URL" send test.sleep --args '[30]')
wait_active "$id" || bad "test.sleep 30 never ran"
kill -TERM "$PID"
for _ in $(seq 100); do grep -q event=worker_draining "$LOG" && break; sleep 0.05; done
kill -TERM "$PID"
stop_taskd
check "taskd exits 3 after a second SIGTERM (cold)" 3 $RC
grep -q 'event=shutdown_cold reason="*second signal' "$LOG" && ok "it logged the cold shutdown" ||
    bad "no shutdown_cold line: $(grep shutdown "$LOG")"

# --- taskd: the grace period running out makes it cold too: exit 3
LOG=$TMP/grace.log
TASKD_WORKER_SHUTDOWN_GRACE=1 start_taskd "$LOG" || { echo "taskd did not start"; exit 1; }
# The task the cold stop above killed went back to the queue: it runs again here.
wait_active "$id" || bad "the requeued test.sleep never ran"
start=$(date +%s.%N)
kill -TERM "$PID"
stop_taskd
rc=$RC
took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
check "taskd exits 3 when worker.shutdown_grace runs out" 3 "$rc"
awk -v t="$took" 'BEGIN { exit !(t < 10) }' && ok "it stopped after the grace period (${took}s)" ||
    bad "slow grace stop: ${took}s"
grep -q 'event=shutdown_cold reason="*grace period over' "$LOG" && ok "it logged why" ||
    bad "no grace shutdown_cold line: $(grep shutdown "$LOG")"

"$CTL" --broker "$URL" purge "$Q" --yes >/dev/null 2>&1
finish
