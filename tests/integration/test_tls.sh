#!/usr/bin/env bash
# test_tls.sh - TLS to the broker (issue 19; docs/tls.md) on a private RabbitMQ node with a TLS
# listener that requires a client certificate, and a CA made here with openssl
# (tests/tls/make-certs). Works: taskd + libtask client (taskctl call) + Python Celery with
# broker_use_ssl on the same node, an IP-address SAN, kombu's ?ssl_... URL, EXTERNAL login,
# taskctl's management API over https with the same CA. Fails with one line, in bounded time:
# wrong CA, expired certificate, wrong host name, wrong IP, a plain client on the TLS port, an
# amqps client on the plain port, no client certificate, a client certificate of another CA, a
# server that never answers the handshake. ssl_cert_reqs=none connects and says so.
set -u
. "$(dirname "$0")/itest.sh"
SRC=${TASKD_SOURCE_ROOT:?}
RMQ=$SRC/tests/harness/rmq-node
PY=/usr/bin/python3
T=$(mktemp -d /tmp/itest-tls.XXXXXX)
K=$T/pki
Q=t_tls_$$
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    "$RMQ" stop --dir "$T/rmq" >/dev/null 2>&1
    rm -rf "$T"
}
trap cleanup EXIT
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

"$SRC/tests/tls/make-certs" "$K" || { echo "make-certs failed"; exit 1; }
P=$(free_port) M=$(free_port)
cat >"$T/tls.conf" <<CONF
listeners.ssl.default = $P
ssl_options.cacertfile = $K/ca.pem
ssl_options.certfile = $K/server.pem
ssl_options.keyfile = $K/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
management.ssl.port = $M
management.ssl.ip = 127.0.0.1
management.ssl.cacertfile = $K/ca.pem
management.ssl.certfile = $K/server.pem
management.ssl.keyfile = $K/server.key
CONF
"$RMQ" start --management --dir "$T/rmq" --conf "$T/tls.conf" \
    --plugin rabbitmq_auth_mechanism_ssl >"$T/rmq.env" || { echo "private TLS node did not start"; exit 1; }
PLAIN=$(sed -n 's/^TASKD_RMQ_URL_1=//p' "$T/rmq.env")
PLAINPORT=$(sed -n 's/^TASKD_RMQ_PORT_1=//p' "$T/rmq.env")
ctl() { "$RMQ" ctl --dir "$T/rmq" 1 "$@" >/dev/null; }
# EXTERNAL: the certificate's CN is the user name; it needs no password.
ctl add_user taskd-tls-client unused && ctl clear_password taskd-tls-client &&
    ctl set_permissions -p / taskd-tls-client '.*' '.*' '.*' || { echo "add_user failed"; exit 1; }

export TASKD_BROKER_SSL_CA_CERTS=$K/ca.pem TASKD_BROKER_SSL_CERTFILE=$K/client.pem
export TASKD_BROKER_SSL_KEYFILE=$K/client.key TASKD_CLIENT_DEFAULT_QUEUE=$Q
unset TASKD_BROKER_URL TASKD_MANAGEMENT_URL
TLS=amqps://guest:guest@localhost:$P//

LOG=$T/taskd.log
"$TASKD" --broker "$TLS" -Q "$Q" --module "$MOD" 2>"$LOG" &
PIDS+=($!)
for _ in $(seq 200); do grep -q event=worker_ready "$LOG" && break; sleep 0.05; done
grep -q event=worker_ready "$LOG" && ok "taskd connects over TLS with a client certificate" ||
    { bad "taskd connects over TLS with a client certificate"; cat "$LOG"; finish; exit; }

out=$("$CTL" --broker "$TLS" call test.add --args '[2,3]' 2>&1)
check "libtask client (taskctl call) over TLS, DNS name" 5 "$out"
out=$("$CTL" --broker "amqps://guest:guest@127.0.0.1:$P//" call test.add --args '[3,4]' 2>&1)
check "an IP-address SAN verifies (amqps://127.0.0.1)" 7 "$out"
out=$(env -u TASKD_BROKER_SSL_CA_CERTS -u TASKD_BROKER_SSL_CERTFILE -u TASKD_BROKER_SSL_KEYFILE \
    "$CTL" --broker "amqps://guest:guest@localhost:$P//?ssl_ca_certs=$K/ca.pem&ssl_certfile=$K/client.pem&ssl_keyfile=$K/client.key&ssl_cert_reqs=CERT_REQUIRED" \
    call test.add --args '[1,1]' 2>&1)
check "kombu's ?ssl_ca_certs=&ssl_certfile=&ssl_keyfile=&ssl_cert_reqs= URL" 2 "$out"
out=$("$CTL" --broker "amqps://localhost:$P//?login_method=EXTERNAL" call test.add --args '[5,5]' 2>&1)
check "EXTERNAL login with the client certificate" 10 "$out"
for _ in $(seq 50); do # the node writes its log a moment later
    grep -q "user 'taskd-tls-client' authenticated" "$T/rmq/n1/log/rabbit.log" && break
    sleep 0.1
done
grep -q "user 'taskd-tls-client' authenticated" "$T/rmq/n1/log/rabbit.log" &&
    ok "the broker took the user from the certificate" ||
    bad "the broker took the user from the certificate"

out=$($PY - "$P" "$K" "$Q" <<'PYEOF' 2>&1
import ssl, sys
from celery import Celery
port, k, q = sys.argv[1:]
app = Celery("tls", broker=f"amqps://guest:guest@localhost:{port}//", backend="rpc://")
app.conf.broker_use_ssl = {"ca_certs": f"{k}/ca.pem", "certfile": f"{k}/client.pem",
                           "keyfile": f"{k}/client.key", "cert_reqs": ssl.CERT_REQUIRED}
app.conf.task_default_queue = q
print(app.send_task("test.add", (20, 22)).get(timeout=20))
PYEOF
)
check "Python Celery (kombu, broker_use_ssl) calls taskd over TLS" 42 "${out##*$'\n'}"

out=$(TASKD_MANAGEMENT_URL=https://guest:guest@localhost:$M "$CTL" --broker "$TLS" queues "$Q" 2>&1)
[[ $out == *"$Q"* ]] && ok "taskctl queues: management API over https with broker.ssl_ca_certs" ||
    bad "taskctl queues: management API over https ($out)"
out=$(TASKD_MANAGEMENT_URL=https://guest:guest@localhost:$M TASKD_BROKER_SSL_CA_CERTS=$K/other-ca.pem \
    TASKD_BROKER_SSL_CERT_REQS=none "$CTL" --broker "$PLAIN" queues "$Q" 2>&1)
[[ $out == *tls_verify_off*"$Q"* ]] && ok "management https with verification off: warned" ||
    bad "management https with verification off: warned ($out)"
out=$(TASKD_MANAGEMENT_URL=https://guest:guest@localhost:$M TASKD_BROKER_SSL_CA_CERTS=$K/other-ca.pem \
    "$CTL" --broker "$PLAIN" queues "$Q" 2>&1)
[[ $out == *"management API"*"certificate"* ]] && ok "management https, wrong CA: refused" ||
    bad "management https, wrong CA: refused ($out)"

# expect_fail NAME PATTERN CMD...: exit 4, one line on stderr matching PATTERN, under 10 s.
expect_fail() {
    local name=$1 pat=$2 err rc t0 took
    shift 2
    t0=$(date +%s%N)
    err=$("$@" 2>&1 >/dev/null); rc=$?
    took=$((($(date +%s%N) - t0) / 1000000))
    if [ $rc = 4 ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] && [[ $err == *$pat* ]] &&
        [ $took -lt 10000 ]; then
        ok "$name (${took} ms): $err"
    else
        bad "$name: rc=$rc ${took} ms: $err"
    fi
}
call() { "$CTL" --broker "$1" call test.add --args '[1,2]'; }
expect_fail "wrong CA" "not signed by a CA in broker.ssl_ca_certs" \
    env TASKD_BROKER_SSL_CA_CERTS=$K/other-ca.pem "$CTL" --broker "$TLS" call test.add --args '[1,2]'
expect_fail "wrong IP address" "IP address mismatch" call "amqps://guest:guest@127.0.0.2:$P//"
expect_fail "a plain client on the TLS port" "a TLS port? then use amqps://" \
    env -u TASKD_BROKER_SSL_CA_CERTS -u TASKD_BROKER_SSL_CERTFILE -u TASKD_BROKER_SSL_KEYFILE \
    "$CTL" --broker "amqp://guest:guest@localhost:$P//" call test.add --args '[1,2]'
expect_fail "an amqps client on the plain port" "is that port TLS?" \
    call "amqps://guest:guest@localhost:$PLAINPORT//"
# TLS 1.3: the broker's alert may or may not be read before its close (both cases below);
# either line says why.
expect_fail "no client certificate: refused" "client certificate" \
    env TASKD_BROKER_SSL_CERTFILE= TASKD_BROKER_SSL_KEYFILE= "$CTL" --broker "$TLS" call test.add
expect_fail "a client certificate of another CA: refused" "client certificate it trusts" \
    env TASKD_BROKER_SSL_CERTFILE=$K/rogue.pem TASKD_BROKER_SSL_KEYFILE=$K/rogue.key \
    "$CTL" --broker "$TLS" call test.add
expect_fail "a missing CA file names the option" "broker.ssl_ca_certs $T/nope.pem" \
    env TASKD_BROKER_SSL_CA_CERTS=$T/nope.pem "$CTL" --broker "$TLS" call test.add
# TLS options with an amqp:// URL: plain text, as the URL says, but not unnoticed (outside attack:
# Celery's broker_use_ssl would have turned TLS on).
err=$("$CTL" --broker "$PLAIN" call test.add --args '[2,2]' 2>&1 >/dev/null)
[[ $err == *event=tls_options_unused* ]] && ok "TLS options with an amqp:// URL warn: plain text" ||
    bad "TLS options with an amqp:// URL warn: plain text ($err)"
# A key others can read is refused however it is named (outside attack: the URL's
# ?ssl_keyfile= and a key kept in the certificate file skipped the check).
cp "$K/client.key" "$T/open.key" && chmod 644 "$T/open.key"
cat "$K/client.pem" "$K/client.key" >"$T/combo.pem" && chmod 644 "$T/combo.pem"
expect_fail "a world-readable key in the URL's ?ssl_keyfile= is refused" "readable by others" \
    env -u TASKD_BROKER_SSL_KEYFILE -u TASKD_BROKER_SSL_CERTFILE "$CTL" --broker \
    "amqps://guest:guest@localhost:$P//?ssl_certfile=$K/client.pem&ssl_keyfile=$T/open.key" \
    call test.add
expect_fail "a world-readable certificate file holding the key is refused" "readable by others" \
    env -u TASKD_BROKER_SSL_KEYFILE TASKD_BROKER_SSL_CERTFILE=$T/combo.pem "$CTL" \
    --broker "$TLS" call test.add

# Certificates RabbitMQ would not serve side by side: openssl s_server, one per case.
serve() { # CERT KEY PORT
    openssl s_server -quiet -accept "$3" -cert "$1" -key "$2" </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null && return; sleep 0.05; done
}
E=$(free_port); serve "$K/expired.pem" "$K/expired.key" "$E"
expect_fail "expired certificate" "certificate has expired" call "amqps://guest:guest@localhost:$E//"
W=$(free_port); serve "$K/elsewhere.pem" "$K/elsewhere.key" "$W"
expect_fail "wrong host name" "hostname mismatch" call "amqps://guest:guest@localhost:$W//"
S=$(free_port)
$PY -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); time.sleep(120)' "$S" &
PIDS+=($!)
sleep 0.3
expect_fail "a server that never answers the handshake: bounded by connect_timeout" "timed out" \
    env TASKD_BROKER_CONNECT_TIMEOUT=1 "$CTL" --broker "amqps://guest:guest@localhost:$S//" call test.add

err=$(TASKD_BROKER_SSL_CA_CERTS=$K/other-ca.pem "$CTL" \
    --broker "amqps://guest:guest@localhost:$P//?ssl_cert_reqs=CERT_NONE" call test.add --args '[4,4]' 2>&1 >"$T/out")
check "ssl_cert_reqs=none connects despite the wrong CA" 8 "$(cat "$T/out")"
[[ $err == *"level=warn event=tls_verify_off"* ]] && ok "ssl_cert_reqs=none is logged" ||
    bad "ssl_cert_reqs=none is logged ($err)"

# taskd itself: a refused certificate is one log line per attempt, and taskd keeps trying.
LOG2=$T/taskd-badca.log
TASKD_BROKER_SSL_CA_CERTS=$K/other-ca.pem "$TASKD" --broker "$TLS" -Q "$Q" --module "$MOD" 2>"$LOG2" &
BADPID=$!
PIDS+=($BADPID)
for _ in $(seq 100); do grep -q broker_connect_failed "$LOG2" && break; sleep 0.05; done
line=$(grep -m1 broker_connect_failed "$LOG2")
[[ $line == *"not signed by a CA in broker.ssl_ca_certs"* ]] &&
    ok "taskd: wrong CA is one clear log line" || bad "taskd: wrong CA is one clear log line ($(head -3 "$LOG2"))"
finish
