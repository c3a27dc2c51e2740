#!/usr/bin/env bash
# test_cli_usage.sh - issue 18's command line as people expect it: --help and --version on
# taskd and taskctl, `taskctl help [COMMAND]` and `COMMAND --help` for every command; taskd
# refusing to start without a task (exit 2) and finding --module NAME.so in the working
# directory (or saying where it looked); `taskctl queues` without names nor management API
# saying how to list every queue; `purge` answered "n" on a terminal exiting 0 with the
# messages kept; `events --count N` printing N events and stopping.
set -u
. "$(dirname "$0")/itest.sh"
Q=t_usage_$$
export TASKD_CLIENT_DEFAULT_QUEUE=$Q TASKD_WORKER_DEAD_QUEUE=$Q.dead
TMP=$(mktemp -d /tmp/itest-usage.XXXXXX)
chmod 755 "$TMP"
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    for q in "$Q" "$Q.dead"; do "$CTL" --broker "$URL" purge "$q" --yes >/dev/null 2>&1; done
    rm -rf "$TMP"
}
trap cleanup EXIT
VERSION=$(sed -n "s/^project('taskd', 'c', version: '\([^']*\)'.*/\1/p" \
    "${TASKD_SOURCE_ROOT:?}/meson.build")

# --- help and version
out=$("$TASKD" --help); rc=$?
[[ $rc -eq 0 && $out == "usage: taskd "* && $out == *password_file* ]] &&
    ok "taskd --help: usage on stdout, exit 0, names the password file" || bad "taskd --help: $rc"
check "taskd --version" "taskd $VERSION" "$("$TASKD" --version)"
check "taskctl --version" "taskctl $VERSION" "$("$CTL" --version)"
out=$("$CTL" --help); rc=$?
[[ $rc -eq 0 && $out == "usage: taskctl "* ]] && ok "taskctl --help exits 0" || bad "taskctl --help: $rc"
check "taskctl help is taskctl --help" "$out" "$("$CTL" help)"
"$CTL" >/dev/null 2>&1; check "taskctl with no command is a usage error" 4 $?
err=$("$CTL" frobnicate 2>&1); rc=$?
[[ $rc -eq 4 && $err == *"taskctl help"* ]] && ok "unknown command points to taskctl help" ||
    bad "unknown command: $rc '$err'"
for cmd in send call wait result workers inspect revoke events queues top purge dead help; do
    # No broker is needed for help: a dead URL proves nothing is contacted.
    out=$("$CTL" --broker amqp://127.0.0.1:1// "$cmd" --help 2>&1); rc=$?
    [[ $rc -eq 0 && $out == "usage: taskctl [global options] $cmd"* && $(wc -l <<<"$out") -ge 3 ]] &&
        ok "taskctl $cmd --help" || bad "taskctl $cmd --help: rc $rc '$out'"
    check "taskctl help $cmd = $cmd --help" "$out" "$("$CTL" help "$cmd")"
done
out=$("$CTL" --broker amqp://127.0.0.1:1// send test.add -h --args '[1]'); rc=$?
[[ $rc -eq 0 && $out == *"usage: taskctl [global options] send"* ]] &&
    ok "-h among other options shows help, sends nothing" || bad "send -h: $rc"
"$CTL" help nosuch >/dev/null 2>&1; check "taskctl help of an unknown command" 4 $?

# --- taskd on its own dead queue would quarantine its messages there for ever
err=$(timeout 20 "$TASKD" --broker "$URL" -Q "$Q,$Q.dead" --module "$MOD" 2>&1 >/dev/null)
check "taskd -Q with the dead queue (worker.dead_queue) exits 2" 2 $?
[[ $err == *"$Q.dead is the dead queue"* ]] && ok "and says why" || bad "dead queue: $err"

# --- taskd without a task, and module lookup
err=$("$TASKD" --broker "$URL" -Q "$Q" 2>&1); rc=$?
check "taskd without --module exits 2" 2 $rc
check "taskd without --module says why" "taskd: no tasks registered: pass --module PATH.so (or set worker.modules in taskd.conf)" "$err"
cp "$MOD" "$TMP/libmine.so"
chmod 644 "$TMP/libmine.so"
(cd "$TMP" && exec "$TASKD" --broker "$URL" -Q "$Q" -c 1 --module libmine.so) 2>"$TMP/w.log" &
PID=$!
for _ in $(seq 200); do grep -q event=worker_ready "$TMP/w.log" && break; sleep 0.05; done
grep -q 'event=module_loaded.*path=./libmine.so tasks=[1-9]' "$TMP/w.log" &&
    ok "--module NAME.so is loaded from the working directory" || bad "module from cwd: $(cat "$TMP/w.log")"
out=$("$CTL" --broker "$URL" call test.add --args '[20,22]' --timeout 20)
check "that worker runs tasks" 42 "$out"
err=$(cd "$TMP" && "$TASKD" --broker "$URL" -Q "$Q" --module libabsent.so 2>&1); rc=$?
check "a module in neither place exits 2" 2 $rc
[[ $err == *"libabsent.so"*"not in the working directory $TMP"*"dynamic linker"* ]] &&
    ok "the error says where it looked" || bad "module lookup message: '$err'"

# --- events --count N stops at N (the worker above sends a heartbeat at once, then every 2 s)
start=$SECONDS
out=$(timeout 30 "$CTL" --broker "$URL" events --count 2 --timeout 25); rc=$?
check "events --count 2 exits 0" 0 $rc
check "events --count 2 prints 2 events" 2 "$(printf '%s\n' "$out" | grep -c .)"
[ $((SECONDS - start)) -lt 20 ] && ok "events --count stops without waiting for --timeout" ||
    bad "events --count took $((SECONDS - start)) s"
for n in 0 -1 x 2x; do
    "$CTL" --broker "$URL" events --count "$n" --timeout 1 >/dev/null 2>&1; rc=$?
    check "events --count $n is a usage error" 4 $rc
done
kill "$PID"; wait "$PID"; PID=

# --- queues without names and without the management API says how to see every queue
err=$(TASKD_MANAGEMENT_URL='' "$CTL" --broker "$URL" queues 2>&1 >/dev/null); rc=$?
check "queues (no API, no names) exits 0" 0 $rc
[[ $err == *"to list every queue set broker.management_url (TASKD_MANAGEMENT_URL"* ]] &&
    ok "queues says how to list every queue" || bad "queues hint: '$err'"
err=$(TASKD_MANAGEMENT_URL='' "$CTL" --broker "$URL" queues "$Q" 2>&1 >/dev/null)
check "no hint when queues are named" "" "$err"

# --- purge: "n" on a terminal keeps the messages and exits 0; no terminal still needs --yes
"$CTL" --broker "$URL" send test.add --args '[1,1]' --queue "$Q" >/dev/null
"$CTL" --broker "$URL" send test.add --args '[1,1]' --queue "$Q" >/dev/null
ready() { "$CTL" --broker "$URL" --json queues "$Q" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ready"])'; }
out=$(printf 'n\n' | TASKD_MANAGEMENT_URL='' script -qec "'$CTL' --broker '$URL' purge '$Q'" /dev/null); rc=$?
check "purge answered n exits 0" 0 $rc
[[ $out == *"[y/N]"*"not purged"* ]] && ok "purge asked and said not purged" || bad "purge n: '$out'"
check "purge answered n keeps the messages" 2 "$(TASKD_MANAGEMENT_URL='' ready)"
"$CTL" --broker "$URL" purge "$Q" </dev/null >/dev/null 2>&1
check "purge without a terminal or --yes still refuses" 4 $?
out=$(printf 'y\n' | TASKD_MANAGEMENT_URL='' script -qec "'$CTL' --broker '$URL' purge '$Q'" /dev/null); rc=$?
check "purge answered y exits 0" 0 $rc
check "purge answered y purges" 0 "$(TASKD_MANAGEMENT_URL='' ready)"

finish
