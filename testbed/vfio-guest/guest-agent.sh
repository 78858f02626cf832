# Guest side of test/guest/bench-in-guest.test.ts (PID 1's script in the QEMU VFIO test guest, see
# testbed/vfio-guest.ts and init.sh): brings up the NVMe namespace (/dev/nvme0n1 on the PF, nvme driver) and
# runs the QEMU guest agent on the second serial port (ttyS1; its host end is the unix socket the host test passes to
# QEMU with -chardev socket + -device isa-serial). The host then runs `vfiod bench` with an in-guest target through
# the agent and, when it is done, asks the agent to create /run/bench-done; the guest powers off then (or after
# VT_AGENT_TIMEOUT seconds, default 300). Summary in $VT_WORK/results.json.
GUEST_NAME=guest-agent
. "$VT_REPO/testbed/vfio-guest/guest-lib.sh"
modprobe nvme || fail "modprobe nvme"
i=0
while [ ! -b /dev/nvme0n1 ]; do
  i=$((i + 1)); [ $i -gt 1000 ] && fail "no /dev/nvme0n1 after 20 s"
  sleep 0.02
done
[ -e /dev/ttyS1 ] || fail "no /dev/ttyS1 (the agent's serial port)"
mkdir -p /run/qga
/usr/sbin/qemu-ga -m isa-serial -p /dev/ttyS1 -t /run/qga -l "$W/qga.log" &
agent=$!
log "qemu-ga (pid $agent) on ttyS1; namespace $(cat /sys/block/nvme0n1/size) sectors"
i=0
limit=$((${VT_AGENT_TIMEOUT:-300} * 10))
while [ ! -e /run/bench-done ]; do
  i=$((i + 1))
  if [ $i -gt $limit ]; then log "no bench-done from the host"; break; fi
  kill -0 $agent 2>/dev/null || { log "qemu-ga exited"; break; }
  sleep 0.1
done
printf '{"ok":true,"benchDone":%s,"sectors":%s}\n' "$([ -e /run/bench-done ] && echo true || echo false)" "$(cat /sys/block/nvme0n1/size)" > "$W/results.json"
kill $agent 2>/dev/null
finish
