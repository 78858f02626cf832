#!/bin/sh
# Runs one QEMU for the test bed (testbed/nvmet-target.ts, testbed/vfio-guest.ts, tests that boot a VM) and
# makes sure it never outlives the process that started it.
# usage: qemu-launch.sh <hard-timeout-seconds> <qemu binary> [qemu args...]
# QEMU is stopped (SIGTERM, then SIGKILL 5 s later) when
#   - this script's stdin reaches EOF: the test process closed the pipe, or died (even by SIGKILL),
#   - the hard timeout passes,
#   - this script gets SIGTERM/SIGINT/SIGHUP.
# QEMU's stdin is /dev/null; its stdout/stderr are this script's. The exit status is QEMU's (124: timed out).
tmo=$1; shift
exec 3<&0   # asynchronous lists get /dev/null as stdin: keep the real one as fd 3
timeout --foreground -k 5 "$tmo" "$@" < /dev/null 3<&- &
q=$!
trap 'kill $q 2>/dev/null' TERM INT HUP
# watchdog: a builtin-only subshell (no child to leave behind) that waits for EOF on stdin
{ while read -r _; do :; done; kill $q 2>/dev/null; } <&3 &
exec 3<&-
w=$!
wait $q; rc=$?
# wait returns early (>128) when a trapped signal arrives: wait again for QEMU itself
while kill -0 $q 2>/dev/null; do wait $q; rc=$?; done
kill $w 2>/dev/null
exit $rc
