#!/usr/bin/env bash
# check_readme.sh - the README's examples work as shown: the blocks marked
# `<!-- readme-test: NAME -->` are extracted; the C task module and client compile (as shown, and
# again with -Wall -Wextra -Werror) against the built library through its uninstalled
# pkg-config file, and, with a broker (TASKD_BROKER_URL), the shell block runs: the built
# taskd loads the module, the client prints "SUCCESS 5" and taskctl prints "5". The quick-start
# commands it names must exist.
set -u
S=${TASKD_SOURCE_ROOT:?}
B=${TASKD_BUILD_ROOT:?}
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; }
TMP=$(mktemp -d /tmp/check-readme.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# Each marked block into $TMP/NAME.
awk -v dir="$TMP" '
    /^<!-- readme-test: [^ ]+ -->$/ { name = $3; next }
    name != "" && /^```/ { if (inside) { inside = 0; name = "" } else inside = 1; next }
    inside { print > (dir "/" name) }
' "$S/README.md"
for f in mytasks.c client.c run; do
    [ -s "$TMP/$f" ] && ok "README has the $f block" || bad "README lacks the $f block"
done
for cmd in ./demo tests/run; do
    grep -q "^${cmd} " "$S/README.md" && [ -x "$S/$cmd" ] && ok "quick start: $cmd exists" ||
        bad "quick start: $cmd missing"
done

export PKG_CONFIG_PATH=$B/meson-uninstalled LD_LIBRARY_PATH=$B/libtask
export PATH=$B/taskd:$B/taskctl:$PATH
cd "$TMP" || exit 1
# The compile lines exactly as shown, then once more with every warning an error.
grep '^cc ' run >compile
if bash -e compile 2>compile.err && [ -f libmytasks.so ] && [ -x client ]; then
    ok "the README's cc lines build libmytasks.so and client"
else
    bad "README compile: $(cat compile.err)"
fi
flags=$(pkg-config --cflags --libs libtask)
# shellcheck disable=SC2086
if cc -Wall -Wextra -Werror -shared -fPIC -o w.so mytasks.c $flags 2>w.err &&
   cc -Wall -Wextra -Werror -o w client.c $flags 2>>w.err; then
    ok "both examples are -Wall -Wextra -Werror clean"
else
    bad "warnings: $(cat w.err)"
fi

# A sanitizer build's library needs the sanitizer runtime in the programs that load it: the
# shell block's cc lines (as shown) get the same -fsanitize flags through a cc on PATH.
if ldd "$B/libtask/libtask.so" 2>/dev/null | grep -q libasan; then
    mkdir -p san
    printf '#!/bin/sh\nexec %s -fsanitize=address,undefined "$@"\n' "$(command -v cc)" >san/cc
    chmod +x san/cc
    export PATH=$TMP/san:$PATH ASAN_OPTIONS=detect_leaks=0
fi

if [ -z "${TASKD_BROKER_URL:-}" ]; then
    echo "# no TASKD_BROKER_URL: the shell block is not run"
    [ "${TASKD_REQUIRE_BROKER:-0}" = 1 ] && bad "no broker"
else
    Q=readme_$$
    rm -f libmytasks.so client
    out=$(TASKD_CLIENT_DEFAULT_QUEUE=$Q TASKD_WORKER_QUEUES=$Q TASKD_WORKER_DEAD_QUEUE=$Q.dead \
        timeout 60 bash -c "$(cat run)
wait" 2>run.err); rc=$?
    [ $rc -eq 0 ] && ok "the shell block runs (exit 0)" || bad "shell block exit $rc: $(tail -5 run.err)"
    [ "$(printf '%s\n' "$out" | sed -n 1p)" = "SUCCESS 5" ] && ok "./client prints SUCCESS 5" ||
        bad "client output: '$out'"
    [ "$(printf '%s\n' "$out" | sed -n 2p)" = "5" ] && ok "taskctl call prints 5" ||
        bad "taskctl output: '$out'"
    grep -q 'event=module_loaded.*path=./libmytasks.so tasks=1' run.err &&
        ok "taskd found libmytasks.so in the working directory" || bad "taskd log: $(cat run.err)"
    taskctl purge "$Q.dead" --yes >/dev/null 2>&1
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
