#!/bin/sh
# Runs dmapingpong-selftest on a LAVA device and reports each KTAP test point
# as a LAVA test case (lava-test-case NAME --result pass|fail|skip), and the
# self-test's exit status as the case selftest-exit. POSIX sh and busybox: it
# runs in the image's own shell. (The lab tests, scripts/lab, check more:
# the engine, the kernel log, ping-pong by hand, a clean power-off.)
out=/tmp/dmapingpong-selftest.ktap
case_result() { # name pass|fail|skip
	if command -v lava-test-case >/dev/null; then
		lava-test-case "$1" --result "$2"
	else
		echo "$1: $2"
	fi
}

test -c /dev/dmapingpong || modprobe dmapingpong
RUST_LOG_STYLE=never dmapingpong-selftest >"$out"
status=$?
cat "$out"
# "ok N name", "not ok N name # reason", "ok N name # SKIP reason" (top level).
sed -n 's/^\(not \)\{0,1\}ok [0-9][0-9]* \([^ #]*\).*$/\1|\2|&/p' "$out" | while IFS='|' read -r not name line; do
	case $not$line in
	not\ *) case_result "$name" fail ;;
	*"# SKIP"*) case_result "$name" skip ;;
	*) case_result "$name" pass ;;
	esac
done
[ "$status" = 0 ] && case_result selftest-exit pass || case_result selftest-exit fail

exit 0
