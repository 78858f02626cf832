# Guest side of test/guest/bench-passthrough.test.ts (runs as PID 1's script in the QEMU guest, see
# testbed/vfio-guest.ts and init.sh): `vfiod bench --smoke` with a passthrough target and an emulation target.
# Creates one NVMe VF on the SR-IOV PF, brings its secondary controller online and leaves it on no driver; the
# harness itself binds it to vfio-pci through the passthrough manager (prepare: true), runs fio with the project's
# engine over VFIO and over vfio-user (a `vfiod serve` it starts in the guest), verify on, and gives the VF back.
# Leaves the bench output in $VT_WORK/bench, a summary in $VT_WORK/results.json, and powers off.
GUEST_NAME=guest-bench
. "$VT_REPO/testbed/vfio-guest/guest-lib.sh"

log "creating the VF"
modprobe vfio-pci || fail "modprobe vfio-pci"
# 1 interrupt vector, 2 queues (admin + 1 I/O)
create_vf 1 2
before=$(driver_of "$VF")
log "VF $VF on driver '${before:-none}'"

# The claims database lives on tmpfs: SQLite's WAL needs shared memory, which 9p lacks. The repository is read-only
# here, so the engine the host built is named instead of built.
cat > "$W/bench.yaml" << EOF
name: guest-passthrough
engine: $VT_REPO/bench/fio-engine/build/vfiod-fio.so
smoke: { rw: [randwrite, randread], bs: [4k], iodepth: [1, 8], runtime: 1s, ramp: 0, size: 4M, verify: true, repetitions: 1 }
targets:
  - { name: vf, type: passthrough, bdf: '$VF', prepare: true, claims-db: /run/vfiod-claims.db }
  - { name: emu, type: emulation, namespace: 'memory:16M', completion: irq, start-timeout: 600 }
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
