#!/usr/bin/env bash
# test_taskctl_top.sh - `taskctl top` on a real terminal (tmux, 120x40) with a real taskd running
# a long task: the screen shows the queue, the worker's node name and the running task; `q`,
# Ctrl-C and SIGTERM each end it with exit 0 and the terminal restored (line mode, echo, the
# shell's screen back). Not a terminal: one plain snapshot; --json: the same data as JSON.
# And `taskctl wait`/`call` on a terminal draw test.progress's PROGRESS states as one live line.
set -u
. "$(dirname "$0")/itest.sh"
if ! command -v tmux >/dev/null; then
    echo "tmux is not installed (scripts/install-deps installs it)" >&2
    [ "${TASKD_REQUIRE_BROKER:-0}" = 1 ] && exit 1
    exit 77
fi
PY=/usr/bin/python3
MGMT=''
[ -n "${TASKD_RMQ_MGMT_PORT_1:-}" ] && MGMT=http://127.0.0.1:$TASKD_RMQ_MGMT_PORT_1
if [ -z "$MGMT" ] && [ "${TASKD_REQUIRE_MANAGEMENT:-0}" = 1 ]; then
    echo "no TASKD_RMQ_MGMT_PORT_1: start the broker with --management" >&2
    exit 1
fi
Q=t_top_$$
NODE=toptest$$@localhost

D=$(mktemp -d /tmp/itest-top.XXXXXX)
TM=(tmux -L "taskd-top-$$" -f /dev/null)
TASKD_PID=''
cleanup() {
    "${TM[@]}" kill-server 2>/dev/null
    [ -n "$TASKD_PID" ] && kill "$TASKD_PID" 2>/dev/null && wait "$TASKD_PID" 2>/dev/null
    TASKD_MANAGEMENT_URL='' "$CTL" --broker "$URL" purge "$Q" --yes >/dev/null 2>&1
    rm -rf "$D"
}
trap cleanup EXIT

TASKD_WORKER_HOSTNAME=$NODE TASKD_WORKER_SHUTDOWN_GRACE=1 "$B/taskd/taskd" --broker "$URL" \
    -Q "$Q" -c 2 --module "$B/tests/tasks/libtesttasks.so" 2>"$D/taskd.log" &
TASKD_PID=$!
for _ in $(seq 200); do grep -q event=worker_ready "$D/taskd.log" && break; sleep 0.05; done
grep -q event=worker_ready "$D/taskd.log" || { cat "$D/taskd.log"; echo "taskd did not start"; exit 1; }
id=$("$CTL" --broker "$URL" send test.sleep --args '[120]' --queue "$Q")
for _ in $(seq 40); do
    "$CTL" --broker "$URL" --json inspect active --timeout 0.5 2>/dev/null | grep -q "$id" && break
done

"${TM[@]}" new-session -d -s t -x 120 -y 40 "env PS1='$ ' bash --norc --noprofile" ||
    { echo "tmux did not start"; exit 1; }
screen() { "${TM[@]}" capture-pane -p -t t; }
# run CMD in the pane; when it ends the shell writes its status to $D/rc and stty -a to $D/stty
run_in_pane() {
    rm -f "$D/rc" "$D/stty"
    "${TM[@]}" send-keys -t t "clear; $1; echo \$? >$D/rc; stty -a >$D/stty; echo SHELL-BACK" Enter
}
# wait_screen TIMEOUT NEEDLE... : true once the screen shows every needle
wait_screen() {
    local t=$1 deadline
    shift
    deadline=$(($(date +%s%N) / 1000000 + t * 1000))
    while [ $(($(date +%s%N) / 1000000)) -lt $deadline ]; do
        local s all=1
        s=$(screen)
        for n in "$@"; do [[ $s == *"$n"* ]] || all=0; done
        [ $all = 1 ] && return 0
        sleep 0.2
    done
    return 1
}
wait_rc() { for _ in $(seq 100); do [ -s "$D/rc" ] && [ -s "$D/stty" ] && return 0; sleep 0.1; done; return 1; }
# the terminal is back in line mode with echo, and the shell's screen is shown again
restored() { # restored HOW
    check "$1: exit status" 0 "$(cat "$D/rc" 2>/dev/null)"
    local flags
    flags=$(tr ' ;' '\n\n' <"$D/stty" | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\n' ' ')
    check "$1: terminal back in line mode with echo" "icanon echo " "$flags"
    wait_screen 3 SHELL-BACK && ok "$1: the shell's screen is back" || bad "$1: screen: $(screen)"
    [[ $(screen) != *"RUNNING TASK"* ]] && ok "$1: the alternate screen is gone" ||
        bad "$1: top still on screen"
}

# 1. With the management API; quit with q.
run_in_pane "TASKD_MANAGEMENT_URL=$MGMT $CTL --broker '$URL' top $Q"
if wait_screen 20 "taskctl top" "$Q" "$NODE" "$id" "test.sleep" "RUNNING TASK"; then
    ok "top shows the queue, the worker's node name and the running task"
else
    bad "top screen: $(screen)"
fi
s=$(screen)
[[ $(printf '%s\n' "$s" | head -1) == "taskctl top"* ]] && ok "title on the first line" || bad "first line: $s"
[[ $s != *SHELL-BACK* && $s != *"echo \$?"* ]] && ok "full screen: the command line is hidden" ||
    bad "not full screen: $s"
printf '%s\n' "$s" | grep -E "^$NODE +[0-9]+ +1 " >/dev/null && ok "the worker runs 1 task" ||
    bad "worker row: $s"
if [ -n "$MGMT" ]; then
    [[ $s == *"management API $MGMT"* ]] && ok "queues from the management API" || bad "source: $s"
    wait_screen 15 "$(printf '%-40s' "$Q")" && printf '%s\n' "$(screen)" |
        grep -E "^$Q +[0-9-]+ +[0-9-]+ +[0-9-]+ +[0-9]+\.[0-9]{2} +[0-9]+\.[0-9]{2}" >/dev/null &&
        ok "queue row with numeric rates" || bad "queue row: $(screen)"
fi
# a refresh happens every second: the task's runtime moves
r1=$(screen | grep -F "$id" | awk '{print $(NF-1)}')
sleep 2.2
r2=$(screen | grep -F "$id" | awk '{print $(NF-1)}')
[ -n "$r1" ] && [ "$r1" != "$r2" ] && ok "the view refreshes ($r1 -> $r2)" || bad "no refresh: '$r1' '$r2'"
"${TM[@]}" send-keys -t t q
wait_rc && ok "q ends top" || bad "q did not end top: $(screen)"
restored "q"

# 2. Without the management API (passive declares); quit with Ctrl-C.
run_in_pane "TASKD_MANAGEMENT_URL= $CTL --broker '$URL' top $Q"
if wait_screen 20 "$NODE" "$id" "passive declares"; then
    ok "fallback: top shows the worker and the task"
else
    bad "fallback screen: $(screen)"
fi
printf '%s\n' "$(screen)" | grep -E "^$Q +0 +- +1 +- +-" >/dev/null &&
    ok "fallback: queue row (ready 0, 1 consumer, no rates)" || bad "fallback row: $(screen)"
"${TM[@]}" send-keys -t t C-c
wait_rc && ok "Ctrl-C ends top" || bad "Ctrl-C did not end top: $(screen)"
restored "Ctrl-C"

# 3. SIGTERM to the taskctl process (the pane shell's child).
run_in_pane "$CTL --broker '$URL' top $Q"
wait_screen 20 "$NODE" "$id" || bad "top did not start: $(screen)"
shell_pid=$("${TM[@]}" display-message -p -t t '#{pane_pid}')
top_pid=$(ps -o pid= --ppid "$shell_pid" | head -1 | tr -d ' ')
if [ -n "$top_pid" ]; then kill -TERM "$top_pid"; fi
wait_rc && ok "SIGTERM ends top" || bad "SIGTERM did not end top: $(screen)"
restored "SIGTERM"

# 4. Not a terminal: one snapshot, plain text, then exit.
start=$(date +%s.%N)
out=$(TASKD_MANAGEMENT_URL=$MGMT "$CTL" --broker "$URL" top "$Q"); rc=$?
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
check "snapshot exits 0" 0 $rc
[[ $out == *"$Q"* && $out == *"$NODE"* && $out == *"$id"* ]] &&
    ok "snapshot shows queue, worker and task" || bad "snapshot: $out"
[[ $out != *$'\033'* ]] && ok "snapshot has no escape sequences" || bad "escapes in the snapshot"
awk -v t="$took" 'BEGIN { exit !(t < 5) }' && ok "snapshot returns at once ($took s)" || bad "slow: $took s"
out=$(TASKD_MANAGEMENT_URL=$MGMT "$CTL" --broker "$URL" top "$Q" --json); rc=$?
check "top --json exits 0" 0 $rc
printf '%s' "$out" | $PY -c '
import json, sys
d = json.load(sys.stdin)
q, node, tid = sys.argv[1:4]
assert [r["name"] for r in d["queues"]] == [q], d["queues"]
assert node in d["workers"], d["workers"]
assert [t["id"] for t in d["active"][node]] == [tid], d["active"]' "$Q" "$NODE" "$id" &&
    ok "top --json: queue, worker stats and active task" || bad "top --json: $out"
err=$(TASKD_MANAGEMENT_URL=http://guest:wr0ngpw@127.0.0.1:${TASKD_RMQ_MGMT_PORT_1:-1} \
    "$CTL" --broker "$URL" top --once "$Q" 2>&1 >/dev/null); rc=$?
check "snapshot with a wrong management password exits 4" 4 $rc
check "  with one line" 1 "$(printf '%s\n' "$err" | wc -l)"

# 5. taskctl wait and call on a terminal: PROGRESS as one line rewritten in place, cleared at
# the end, then the result.
progress_in_pane() { # progress_in_pane WHAT CMD: CMD runs test.progress with 16 steps
    run_in_pane "$2"
    local seen_mid=0 most_lines=0 s n
    for _ in $(seq 80); do
        s=$(screen)
        n=$(printf '%s\n' "$s" | grep -c PROGRESS)
        [ "$n" -gt "$most_lines" ] && most_lines=$n
        printf '%s\n' "$s" | grep -Eq '^PROGRESS ([1-9]|1[0-5])/16 \[[#.]{30}\] +[0-9]+%$' && seen_mid=1
        [ -s "$D/rc" ] && break
        sleep 0.1
    done
    wait_rc
    check "$1: a live PROGRESS n/16 bar was shown" 1 $seen_mid
    check "$1: the progress stays on one line" 1 $most_lines
    check "$1: exit 0" 0 "$(cat "$D/rc" 2>/dev/null)"
    s=$(screen)
    printf '%s\n' "$s" | grep -qx 16 && ok "$1: the result is printed" || bad "$1 screen: $s"
    [[ $s != *PROGRESS* ]] && ok "$1: the progress line is cleared" || bad "$1 screen: $s"
}
pid_id=$("$CTL" --broker "$URL" send test.progress --args '[16, 0.25]' --queue "$Q")
progress_in_pane wait "$CTL --broker '$URL' wait $pid_id"
progress_in_pane call "$CTL --broker '$URL' call test.progress --args '[16, 0.2]' --queue $Q"

finish
