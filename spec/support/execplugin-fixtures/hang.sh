#!/bin/sh
# Starts a grandchild (sleep 300, its pid in $FIXTURE_OUT) and never
# answers: the timeout must kill both.
sleep 300 &
echo "$!" >"${FIXTURE_OUT:-/dev/null}"
exec sleep 300
