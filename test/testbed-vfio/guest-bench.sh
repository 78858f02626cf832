# Guest side of test/bench-passthrough.test.ts (runs as PID 1's script in the QEMU guest, see
# test/helpers/vfio-guest.ts and init.sh): `vfiod bench --smoke` with a passthrough target and an emulation target.
# Creates one NVMe VF on the SR-IOV PF, brings its secondary controller online and leaves it on no driver; the
# harness itself binds it to vfio-pci through the passthrough manager (prepare: true), runs fio with the project's
# engine over VFIO and over vfio-user (a `vfiod serve` it starts in the guest), verify on, and gives the VF back.
# Leaves the bench output in $VT_WORK/bench, a summary in $VT_WORK/results.json, and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
W=$VT_WORK
SYS=/sys/bus/pci/devices

log() { echo "[t=$(cut -d' ' -f1 /proc/uptime)s] guest-bench: $*"; }
finish() {
  dmesg > "$W/dmesg.txt"
  log done
  sync
  /bin/busybox poweroff -f # the host's /sbin/poweroff is systemd's and does nothing here
}
fail() {
  log "FAIL: $*"
  printf '{"ok":false,"error":"%s"}\n' "$(echo "$*" | tr '"\\' "''")" > "$W/results.json"
  finish
}
wait_for() { # wait_for <what> <shell test>
  i=0
  while ! eval "$2"; do
    i=$((i + 1))
    [ $i -gt 750 ] && fail "timeout waiting for $1"
    sleep 0.02
  done
}
driver_of() { basename "$(readlink "$SYS/$1/driver" 2>/dev/null)" 2>/dev/null; }

log "creating the VF"
modprobe nvme || fail "modprobe nvme"
modprobe vfio-pci || fail "modprobe vfio-pci"
wait_for /dev/nvme0 '[ -e /dev/nvme0 ]'
PF=$(basename "$(readlink -f /sys/class/nvme/nvme0/device)")
# Flexible resources move from the primary controller to the VF's secondary controller: 1 VI, 2 VQ (admin + 1 I/O).
nvme virt-mgmt /dev/nvme0 -c 0 -r 1 -a 1 -n 0 > /dev/null || fail "virt-mgmt primary VI"
nvme virt-mgmt /dev/nvme0 -c 0 -r 0 -a 1 -n 0 > /dev/null || fail "virt-mgmt primary VQ"
echo 1 > "$SYS/$PF/reset"
wait_for "PF live after reset" '[ "$(cat /sys/class/nvme/nvme0/state 2>/dev/null)" = live ]'
echo 0 > "$SYS/$PF/sriov_drivers_autoprobe"
echo 1 > "$SYS/$PF/sriov_numvfs" || fail "sriov_numvfs"
nvme virt-mgmt /dev/nvme0 -c 1 -r 1 -a 8 -n 1 > /dev/null || fail "virt-mgmt VF VI"
nvme virt-mgmt /dev/nvme0 -c 1 -r 0 -a 8 -n 2 > /dev/null || fail "virt-mgmt VF VQ"
nvme virt-mgmt /dev/nvme0 -c 1 -r 0 -a 9 -n 0 > /dev/null || fail "virt-mgmt VF online"
VF=$(basename "$(readlink -f "$SYS/$PF/virtfn0")")
before=$(driver_of "$VF")
log "VF $VF on driver '${before:-none}'"

# The claims database lives on tmpfs: SQLite's WAL needs shared memory, which 9p lacks. The repository is read-only
# here, so the engine the host built is named instead of built.
cat > "$W/bench.yaml" << EOF
name: guest-passthrough
engine: $VT_REPO/bench/fio-engine/build/vfiod-fio.so
smoke: { rw: [randwrite, randread], bs: [4k], iodepth: [1, 8], runtime: 1s, ramp: 0, size: 4M, verify: true }
targets:
  - { name: vf, type: passthrough, bdf: '$VF', prepare: true, claims-db: /run/vfiod-claims.db }
  - { name: emu, type: emulation, namespace: 'memory:16M', completion: irq }
EOF
log "running vfiod bench"
cd /tmp # writable (the root is read-only 9p)
node "$VT_REPO/bin/vfiod.js" bench --config "$W/bench.yaml" --smoke --out "$W/bench" > "$W/bench.stdout" 2> "$W/bench.stderr"
status=$?
after=$(driver_of "$VF")
log "vfiod bench exit $status; VF driver afterwards '${after:-none}'"
printf '{"ok":true,"pf":"%s","vf":"%s","driverBefore":"%s","driverAfter":"%s","benchStatus":%d}\n' \
  "$PF" "$VF" "$before" "$after" "$status" > "$W/results.json"
finish
