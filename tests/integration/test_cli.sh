#!/usr/bin/env bash
# test_cli.sh - taskctl's command-line contract (docs/operations.md, exit codes; taskctl(1))
# against a real broker and a real taskd: output, exit codes, global options anywhere, Celery-style URLs, and one-line
# errors for a wrong password or a broker that is down.
set -u
. "$(dirname "$0")/itest.sh"
Q=t_cli_$$

LOG=$(mktemp /tmp/itest-cli-taskd.XXXXXX)
TASKD_WORKER_DEAD_QUEUE=$Q.dead "$B/taskd/taskd" --broker "$URL" -Q "$Q" -E \
    --module "$B/tests/tasks/libtesttasks.so" 2>"$LOG" &
TASKD_PID=$!
trap 'kill $TASKD_PID 2>/dev/null; wait $TASKD_PID 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 200); do grep -q event=worker_ready "$LOG" && break; sleep 0.05; done
grep -q event=worker_ready "$LOG" || { cat "$LOG"; echo "taskd did not start"; exit 1; }
export TASKD_CLIENT_DEFAULT_QUEUE=$Q

out=$("$CTL" --broker "$URL" call test.add --args '[2,3]'); rc=$?
check "call prints the result" 5 "$out"; check "call exits 0 on SUCCESS" 0 $rc
out=$("$CTL" call test.add --args '[4,5]' --broker "$URL"); check "--broker after the command" 9 "$out"
out=$(TASKD_BROKER_URL=$URL "$CTL" call test.echo --args '["x"]' --kwargs '{"k":1}')
check "TASKD_BROKER_URL and echo" '[["x"],{"k":1}]' "$out"

hostport=${URL#amqp://guest:guest@}; hostport=${hostport%%/*}
for suffix in "" "/" "//" "/%2F"; do
    out=$("$CTL" --broker "amqp://guest:guest@$hostport$suffix" call test.add --args '[1,1]' 2>&1)
    check "URL form '$suffix' means vhost /" 2 "$out"
done

id=$("$CTL" --broker "$URL" send test.add --args '[10,20]'); rc=$?
check "send exits 0" 0 $rc
[[ $id =~ ^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] &&
    ok "send prints a UUIDv7 id" || bad "send prints a UUIDv7 id ($id)"
out=$("$CTL" --broker "$URL" wait "$id" --timeout 10); rc=$?
check "wait from another process prints the result" 30 "$out"; check "wait exits 0" 0 $rc
out=$("$CTL" --broker "$URL" result "$id"); rc=$?
check "result prints state and value" "SUCCESS
30" "$out"; check "result exits 0 when found" 0 $rc
out=$("$CTL" --broker "$URL" --json result "$id")
check "result --json" "{\"id\":\"$id\",\"state\":\"SUCCESS\",\"result\":30}" "$out"

err=$("$CTL" --broker "$URL" call test.fail --args '["bad thing"]' 2>&1 >/dev/null); rc=$?
check "call exits 1 on FAILURE" 1 $rc
[[ $err == *FAILURE*ValueError*"bad thing"* ]] && ok "stderr names state, type and message" ||
    bad "stderr names state, type and message ($err)"

id=$("$CTL" --broker "$URL" send test.sleep --args '[3]')
"$CTL" --broker "$URL" wait "$id" --timeout 0.5 >/dev/null 2>&1; rc=$?
check "wait exits 2 on timeout" 2 $rc
# An id of now that nobody sent (UUIDv7: the first 48 bits are the time in ms).
ms=$(printf '%012x' "$(date +%s%3N)")
unknown="${ms:0:8}-${ms:8:4}-7abc-8def-0123456789ab"
"$CTL" --broker "$URL" result "$unknown" >/dev/null; rc=$?
check "result exits 3 for an unknown id" 3 $rc

start=$(date +%s.%N)
err=$("$CTL" --broker "amqp://guest:s3cr3tpw@$hostport//" call test.add --args '[1,1]' 2>&1); rc=$?
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
check "wrong password exits 4" 4 $rc
check "wrong password: one line" 1 "$(printf '%s\n' "$err" | wc -l)"
[[ $err != *s3cr3tpw* ]] && ok "password not in the message" || bad "password leaked: $err"
[[ $err == *refused* || $err == *ACCESS_REFUSED* ]] && ok "message says refused" || bad "message: $err"
awk -v t="$took" 'BEGIN { exit !(t < 5) }' && ok "wrong password fails fast ($took s)" || bad "slow: $took s"

start=$(date +%s.%N)
err=$("$CTL" --broker "amqp://guest:guest@127.0.0.1:1//" call test.add 2>&1); rc=$?
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
check "broker down exits 4" 4 $rc
check "broker down: one line" 1 "$(printf '%s\n' "$err" | wc -l)"
awk -v t="$took" 'BEGIN { exit !(t < 7) }' && ok "broker down fails fast ($took s)" || bad "slow: $took s"

# Operator commands.
out=$("$CTL" --broker "$URL" workers --timeout 1); rc=$?
[[ $rc -eq 0 && $out == *pong* ]] && ok "workers lists the running worker" || bad "workers: $rc $out"
out=$("$CTL" --broker "$URL" --json inspect registered --timeout 1)
[[ $out == *'"test.add"'* && $out == *'"test.segv"'* ]] && ok "inspect registered" || bad "inspect: $out"
id=$("$CTL" --broker "$URL" send test.sleep --args '[5]')
sleep 0.5
out=$("$CTL" --broker "$URL" --json inspect active --timeout 1)
[[ $out == *"$id"* ]] && ok "inspect active shows the running task" || bad "active: $out"
"$CTL" --broker "$URL" revoke "$id" --terminate >/dev/null
err=$("$CTL" --broker "$URL" wait "$id" --timeout 10 2>&1 >/dev/null); rc=$?
[[ $rc -eq 1 && $err == *REVOKED*terminated* ]] && ok "revoke --terminate ends it REVOKED" || bad "revoke: $rc $err"
ev=$("$CTL" --broker "$URL" events --count 1 --timeout 5)
[[ $ev == *worker-heartbeat* ]] && ok "events tails worker heartbeats" || bad "events: $ev"
out=$("$CTL" --broker "$URL" --json queues "$Q")
[[ $out == *"\"name\":\"$Q\""*'"consumers":1'* ]] && ok "queues shows ready and consumers" || bad "queues: $out"
"$CTL" --broker "$URL" queues no.such.queue.$$ >/dev/null 2>&1; rc=$?
check "queues exits 3 for a missing queue" 3 $rc
"$CTL" --broker "$URL" call no.such.task >/dev/null 2>&1
out=$("$CTL" --broker "$URL" --json dead --queue "$Q.dead")
[[ $out == *'"reason":"unknown-task: no task named'*'"queue":"'"$Q"'"'* ]] &&
    ok "dead lists quarantined messages with reason and origin" || bad "dead: $out"
before=$(grep -c event=message_quarantined "$LOG")
out=$("$CTL" --broker "$URL" dead --queue "$Q.dead" --republish all)
[[ $out == *"re-published"* ]] && ok "dead --republish sends them back" || bad "republish: $out"
for _ in $(seq 100); do [ "$(grep -c event=message_quarantined "$LOG")" -gt "$before" ] && break; sleep 0.05; done
[ "$(grep -c event=message_quarantined "$LOG")" -gt "$before" ] &&
    ok "the worker received the re-published message again" || bad "not received again"
"$CTL" --broker "$URL" purge "$Q.dead" </dev/null >/dev/null 2>&1; rc=$?
check "purge without --yes and no terminal refuses" 4 $rc
out=$("$CTL" --broker "$URL" purge "$Q.dead" --yes); rc=$?
[[ $rc -eq 0 && $out == purged* ]] && ok "purge --yes purges" || bad "purge: $rc $out"

# Text that came from outside never reaches the terminal raw (an id with an escape sequence).
err=$("$CTL" --broker "$URL" wait $'evil\e]0;pwned\a\e[2J' --timeout 0.2 2>&1 >/dev/null)
[[ $err == *"evil?]0;pwned??[2J"* && $err != *$'\e'* ]] &&
    ok "wait scrubs control bytes from the id it echoes" || bad "scrub: $(printf %q "$err")"
"$CTL" --broker "$URL" send test.add --args '[1,2]' --countdown nan >/dev/null 2>&1; rc=$?
check "send --countdown nan is a usage error" 4 $rc

kill -TERM $TASKD_PID; wait $TASKD_PID; rc=$?
check "taskd exits 0 after a warm shutdown" 0 $rc
trap 'rm -f "$LOG"' EXIT
finish
