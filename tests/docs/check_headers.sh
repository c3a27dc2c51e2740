#!/usr/bin/env bash
# check_headers.sh - every public libtask header, and every taskd module header, compiles on its
# own (a user includes one header; a module includes only what it uses), in C11 with -Wall
# -Wextra -Werror, and a public header also as C++ (extern "C" guards, no C-only syntax).
set -u
S=${TASKD_SOURCE_ROOT:?}
pass=0 fail=0
JSONC=$(pkg-config --cflags json-c 2>/dev/null || echo -I/usr/include/json-c)
try() { # try LABEL COMPILER ARGS...
    local label=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass=$((pass + 1))
        echo "ok - $label"
    else
        fail=$((fail + 1))
        echo "not ok - $label: $(echo "$out" | head -3)"
    fi
}
for h in "$S"/libtask/include/task/*.h; do
    n=task/$(basename "$h")
    try "$n alone (C11)" sh -c "echo '#include <$n>' | cc -std=c11 -Wall -Wextra -Werror -fsyntax-only \
        -I'$S/libtask/include' $JSONC -x c -"
    if command -v c++ >/dev/null; then
        try "$n alone (C++)" sh -c "echo '#include <$n>' | c++ -Wall -Werror -fsyntax-only \
            -I'$S/libtask/include' $JSONC -x c++ -"
    fi
done
for h in "$S"/taskd/*.h; do
    try "taskd/$(basename "$h") alone" sh -c "echo '#include \"$(basename "$h")\"' | cc -std=c11 \
        -D_GNU_SOURCE -Wall -Wextra -Werror -fsyntax-only -I'$S/taskd' -I'$S/libtask/include' \
        -I'$S/libtask/src' $JSONC -x c -"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
