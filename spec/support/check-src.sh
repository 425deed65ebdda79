#!/bin/sh
# check-src.sh - bans C functions that overflow buffers or hide errors.
#
#   sh spec/support/check-src.sh        (make check-src)
#
# Fails (exit 1) naming file:line for each use in src/*.c and tools/*.c of sprintf(,
# vsprintf(, strcpy(, strcat(, atoi(, atol(, gets( or strtok( ; prints
# nothing and exits 0 when clean. Use snprintf, memcpy with lengths,
# strtol/strtoul with an end pointer, fgets, strtok_r or a hand-written
# scanner instead. Comments and string literals count too: say "sprintf"
# without the parenthesis there. Names that merely end in a banned one
# (snprintf(, vsnprintf(, my_strcat() are fine: the match needs a
# non-identifier character (or the line start) before the name.
set -u
cd "$(dirname "$0")/../.." || exit 2
found=0
for f in src/*.c tools/*.c; do
    [ -f "$f" ] || continue
    # -n: file:line; the class before the name keeps snprintf( and friends out
    hits=$(grep -nE '(^|[^A-Za-z0-9_])(sprintf|vsprintf|strcpy|strcat|atoi|atol|gets|strtok)[[:space:]]*\(' "$f")
    if [ -n "$hits" ]; then
        printf '%s\n' "$hits" | sed "s|^|$f:|"
        found=1
    fi
done
exit $found
