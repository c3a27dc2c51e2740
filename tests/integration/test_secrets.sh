#!/usr/bin/env bash
# test_secrets.sh - issue 18's secrets off the command line, against a real broker: taskd and
# taskctl log in with the password from broker.password_file (config file, environment), a
# wrong one is refused without being shown, a password file others can read stops taskd
# (exit 2, naming the config file and line), and a password given in a --broker URL anyway is
# gone from /proc/PID/cmdline (what ps shows) while taskd and taskctl run.
set -u
. "$(dirname "$0")/itest.sh"
Q=t_secrets_$$
# The harness's node takes guest/guest; our URLs carry the user only.
hostport=${URL#amqp://guest:guest@}
NOPW_URL="amqp://guest@$hostport"
export TASKD_CLIENT_DEFAULT_QUEUE=$Q TASKD_WORKER_DEAD_QUEUE=$Q.dead
unset TASKD_BROKER_URL
TMP=$(mktemp -d /tmp/itest-secrets.XXXXXX)
chmod 755 "$TMP"
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    for q in "$Q" "$Q.dead"; do "$CTL" --broker "$URL" purge "$q" --yes >/dev/null 2>&1; done
    rm -rf "$TMP"
}
trap cleanup EXIT
printf 'guest\n' >"$TMP/pw"
chmod 600 "$TMP/pw"
printf 'n0t-th1s\n' >"$TMP/wrong"
chmod 600 "$TMP/wrong"

# cmdline PID: the process's arguments as ps reads them (NULs as spaces).
cmdline() { tr '\0' ' ' <"/proc/$1/cmdline"; }
wait_ready() {
    for _ in $(seq 200); do grep -q event=worker_ready "$1" && return 0; sleep 0.05; done
    cat "$1"
    return 1
}

# --- taskd: password from a config file's password_file, URL without one
cat >"$TMP/taskd.conf" <<CONF
broker:
{
    urls = [ "$NOPW_URL" ];
    password_file = "$TMP/pw";
};
CONF
chmod 644 "$TMP/taskd.conf"
"$TASKD" --config "$TMP/taskd.conf" -Q "$Q" -c 1 --module "$MOD" 2>"$TMP/w1.log" &
PID=$!
wait_ready "$TMP/w1.log" && ok "taskd logs in with broker.password_file" || bad "taskd did not start"

# --- taskctl: the same file through the environment
out=$(TASKD_BROKER_PASSWORD_FILE=$TMP/pw "$CTL" --broker "$NOPW_URL" call test.add --args '[3,4]' --timeout 20); rc=$?
check "taskctl with TASKD_BROKER_PASSWORD_FILE: exit 0" 0 $rc
check "taskctl with TASKD_BROKER_PASSWORD_FILE: the result" 7 "$out"
out=$(TASKD_BROKER_PASSWORD_FILE=$TMP/pw TASKD_BROKER_URL=$NOPW_URL "$CTL" --json queues "$Q" 2>&1); rc=$?
check "taskctl queues with the password file" 0 $rc
# The management API takes the broker URL's credentials, now from the file.
if [ -n "${TASKD_RMQ_MGMT_PORT_1:-}" ]; then
    out=$(TASKD_BROKER_PASSWORD_FILE=$TMP/pw TASKD_MANAGEMENT_URL=http://127.0.0.1:$TASKD_RMQ_MGMT_PORT_1 \
        "$CTL" --broker "$NOPW_URL" queues 2>&1); rc=$?
    check "management API logs in with the password file's password" 0 $rc
    err=$(TASKD_BROKER_PASSWORD_FILE=$TMP/wrong TASKD_MANAGEMENT_URL=http://127.0.0.1:$TASKD_RMQ_MGMT_PORT_1 \
        "$CTL" --broker "$NOPW_URL" queues 2>&1 >/dev/null); rc=$?
    [[ $rc -eq 4 && $err == *401* && $err != *n0t-th1s* ]] &&
        ok "management API refuses the wrong file password (401, not shown)" || bad "mgmt: $rc '$err'"
elif [ "${TASKD_REQUIRE_MANAGEMENT:-0}" = 1 ]; then
    bad "no management API (TASKD_RMQ_MGMT_PORT_1)"
fi
err=$(TASKD_BROKER_PASSWORD_FILE=$TMP/wrong "$CTL" --broker "$NOPW_URL" queues "$Q" 2>&1 >/dev/null); rc=$?
check "a wrong password from the file: exit 4" 4 $rc
[[ -n $err && $err != *n0t-th1s* ]] && ok "the wrong password is not shown" || bad "message: '$err'"
# The file's password replaces one in the URL (the URL's is wrong here).
out=$(TASKD_BROKER_PASSWORD_FILE=$TMP/pw "$CTL" --broker "amqp://guest:bad@$hostport" call test.add --args '[1,1]' --timeout 20); rc=$?
check "the file's password replaces the URL's" "0 2" "$rc $out"
kill "$PID"; wait "$PID"; PID=
grep -q ':guest@' "$TMP/w1.log" && bad "taskd logged the password" || ok "taskd's log holds no password"

# --- a password file others could read: taskd exits 2 naming the config file and line
chmod 644 "$TMP/pw"
err=$("$TASKD" --config "$TMP/taskd.conf" -Q "$Q" --module "$MOD" 2>&1); rc=$?
check "a world-readable password file stops taskd with exit 2" 2 $rc
check "the error names file, line and option" \
    "taskd: $TMP/taskd.conf:4: broker.password_file: $TMP/pw: refused: readable by others (chmod 600 or 640)" "$err"
err=$(TASKD_BROKER_PASSWORD_FILE=$TMP/pw "$CTL" --broker "$NOPW_URL" queues "$Q" 2>&1); rc=$?
check "taskctl refuses it too (exit 4)" 4 $rc
[[ $err == *TASKD_BROKER_PASSWORD_FILE* ]] && ok "taskctl's error names the variable" || bad "'$err'"
chmod 600 "$TMP/pw"

# --- a password on the command line anyway: not in /proc/PID/cmdline while running
"$TASKD" --broker "$URL" -Q "$Q" -c 1 --module "$MOD" 2>"$TMP/w2.log" &
PID=$!
wait_ready "$TMP/w2.log" || bad "taskd with a password in --broker did not start"
args=$(cmdline "$PID")
[[ $args != *guest:guest@* && $args == *"--broker amqp://guest:***@$hostport"* ]] &&
    ok "taskd's argv shows *** for the password" || bad "taskd argv: $args"
args=$(ps -o args= -p "$PID")
[[ $args != *:guest@* ]] && ok "ps shows no password for taskd" || bad "ps: $args"
kill -HUP "$PID" # a reload rebuilds the config from the copies, not from the scrubbed argv
sleep 0.5
out=$("$CTL" --broker "$URL" call test.add --args '[5,5]' --timeout 20)
check "taskd still works after a reload" 10 "$out"
kill "$PID"; wait "$PID"; PID=
"$CTL" --broker="$URL" events --timeout 3 >/dev/null 2>&1 &
CPID=$!
args=
for _ in $(seq 40); do
    sleep 0.05
    # Scrubbed right after parsing: wait past that instant, not just for the exec.
    args=$(cmdline "$CPID" 2>/dev/null) && [[ $args == *events* && $args == *'***'* ]] && break
done
[[ $args == *"--broker=amqp://guest:***@$hostport"* && $args != *guest:guest@* ]] &&
    ok "taskctl's argv shows *** for the password (--broker=URL)" || bad "taskctl argv: $args"
wait "$CPID"
check "that taskctl still ran (events --timeout exits 0)" 0 $?

finish
