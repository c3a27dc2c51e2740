#!/usr/bin/env bash
# check_man.sh - the man pages render without a warning (groff -ww, man --warnings), name what
# the code has (every taskd flag, taskctl command, config option and public libtask function),
# and config/taskd.service passes systemd-analyze verify (with ExecStart pointing at the built
# taskd and the pages on MANPATH for its Documentation= lines).
set -u
S=${TASKD_SOURCE_ROOT:?}
B=${TASKD_BUILD_ROOT:?}
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "not ok - $1"; }
PAGES=(man/taskd.8 man/taskctl.1 man/taskd.conf.5 man/libtask.3)
TMP=$(mktemp -d /tmp/check-man.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

for p in "${PAGES[@]}"; do
    out=$(groff -ww -z -man "$S/$p" 2>&1)
    [ -z "$out" ] && ok "$p: groff -ww is silent" || bad "$p: groff: $out"
    out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$S/$p" 2>&1 >"$TMP/page")
    [[ -z $out && $(wc -l <"$TMP/page") -gt 20 ]] && ok "$p: man --warnings renders it" ||
        bad "$p: man: $out"
done

# What the code has, each named in its page (roff writes '-' as '\-').
missing=
for o in $(grep -o '{"[a-z-]*", [a-z_]*_argument' "$S/taskd/main.c" | cut -d'"' -f2); do
    grep -q -- "\\\\-\\\\-${o//-/\\\\-}" "$S/man/taskd.8" || missing+=" --$o"
done
[ -z "$missing" ] && ok "taskd.8 documents every flag" || bad "taskd.8 lacks:$missing"
missing=
for c in $(grep -o '^    {"[a-z]*", ' "$S/taskctl/main.c" | cut -d'"' -f2); do
    grep -q "^\\\\fB$c\\\\fR\|^\\.BI\\? \"\\?$c\|^\\.BR \"\\?$c\|^\\\\fB$c " "$S/man/taskctl.1" || missing+=" $c"
done
[ -z "$missing" ] && ok "taskctl.1 documents every command" || bad "taskctl.1 lacks:$missing"
missing=
for o in $(grep -o '{"[a-z_]*\.[a-z_]*", OPT_' "$S/libtask/src/config_opts.c" | cut -d'"' -f2); do
    grep -q "^\\.BR ${o#*.} " "$S/man/taskd.conf.5" || missing+=" $o"
done
[ -z "$missing" ] && ok "taskd.conf.5 documents every option" || bad "taskd.conf.5 lacks:$missing"
missing=
for f in $(grep -ho '^TASK_API [^(]*(' "$S"/libtask/include/task/*.h | sed 's/($//; s/.*[ *]//'); do
    grep -q "$f" "$S/man/libtask.3" || missing+=" $f"
done
[ -z "$missing" ] && ok "libtask.3 names every public function" || bad "libtask.3 lacks:$missing"

if command -v systemd-analyze >/dev/null; then
    mkdir -p "$TMP/man/man8" "$TMP/man/man5"
    cp "$S/man/taskd.8" "$TMP/man/man8/"
    cp "$S/man/taskd.conf.5" "$TMP/man/man5/"
    sed "s|^ExecStart=/usr/sbin/taskd|ExecStart=$B/taskd/taskd|" "$S/config/taskd.service" \
        >"$TMP/taskd.service"
    grep -q "^ExecStart=$B/taskd/taskd " "$TMP/taskd.service" ||
        bad "taskd.service: ExecStart is not /usr/sbin/taskd"
    out=$(MANPATH=$TMP/man systemd-analyze verify "$TMP/taskd.service" 2>&1)
    [ -z "$out" ] && ok "systemd-analyze verify taskd.service is silent" ||
        bad "systemd-analyze: $out"
else
    echo "# systemd-analyze not installed: unit not verified"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
