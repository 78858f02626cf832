# Shared by the shell guest programs of the VFIO test guest (guest-fio.sh, guest-bench.sh, guest-agent.sh): sourced
# after setting GUEST_NAME. Provides log, finish (dmesg to the work dir, power off), fail (writes
# {"ok":false,...} to results.json, then finish), wait_for, driver_of, and create_vf, the SR-IOV sequence QEMU's
# NVMe needs. The host's /sbin/poweroff is systemd's and does nothing in the guest: busybox powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
W=$VT_WORK
SYS=/sys/bus/pci/devices

log() { echo "[t=$(cut -d' ' -f1 /proc/uptime)s] $GUEST_NAME: $*"; }
finish() {
  dmesg > "$W/dmesg.txt"
  log done
  sync
  /bin/busybox poweroff -f
}
fail() {
  log "FAIL: $*"
  printf '{"ok":false,"error":"%s"}\n' "$(echo "$*" | tr '"\\' "''")" > "$W/results.json"
  finish
}
wait_for() { # wait_for <what> <shell test>: 15 s at most
  i=0
  while ! eval "$2"; do
    i=$((i + 1))
    [ $i -gt 750 ] && fail "timeout waiting for $1"
    sleep 0.02
  done
}
driver_of() { basename "$(readlink "$SYS/$1/driver" 2>/dev/null)" 2>/dev/null; }

# create_vf <interrupt vectors> <queues incl. admin>: one VF on the PF behind /dev/nvme0, kept off host drivers
# (sriov_drivers_autoprobe=0), its secondary controller given the resources and onlined. Sets PF and VF.
create_vf() {
  modprobe nvme || fail "modprobe nvme"
  wait_for /dev/nvme0 '[ -e /dev/nvme0 ]'
  PF=$(basename "$(readlink -f /sys/class/nvme/nvme0/device)")
  # Flexible resources move from the primary controller to the secondary one; an FLR of the PF makes that take effect.
  nvme virt-mgmt /dev/nvme0 -c 0 -r 1 -a 1 -n 0 > /dev/null || fail "virt-mgmt primary VI"
  nvme virt-mgmt /dev/nvme0 -c 0 -r 0 -a 1 -n 0 > /dev/null || fail "virt-mgmt primary VQ"
  echo 1 > "$SYS/$PF/reset"
  wait_for "PF live after reset" '[ "$(cat /sys/class/nvme/nvme0/state 2>/dev/null)" = live ]'
  echo 0 > "$SYS/$PF/sriov_drivers_autoprobe"
  echo 1 > "$SYS/$PF/sriov_numvfs" || fail "sriov_numvfs"
  nvme virt-mgmt /dev/nvme0 -c 1 -r 1 -a 8 -n "$1" > /dev/null || fail "virt-mgmt VF VI"
  nvme virt-mgmt /dev/nvme0 -c 1 -r 0 -a 8 -n "$2" > /dev/null || fail "virt-mgmt VF VQ"
  nvme virt-mgmt /dev/nvme0 -c 1 -r 0 -a 9 -n 0 > /dev/null || fail "virt-mgmt VF online"
  VF=$(basename "$(readlink -f "$SYS/$PF/virtfn0")")
}
