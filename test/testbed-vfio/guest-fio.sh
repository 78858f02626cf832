# Guest side of the VFIO part of test/fio-engine.test.ts (runs as PID 1's script in the QEMU guest, see
# test/helpers/vfio-guest.ts and init.sh). Creates one NVMe VF on the SR-IOV PF and brings its secondary controller
# online (2 VI: MSI-X vectors 0 and 1, the most QEMU gives one of 2 VFs; 3 VQ: admin + 2 I/O queue pairs), binds it
# to vfio-pci, then runs the host's fio with the engine built on the host (bench/fio-engine/build/vfiod-fio.so, seen
# through the repository mount) over the vfio transport, with verify on. Leaves fio's JSON and stderr in $VT_WORK, a summary in $VT_WORK/results.json, and
# powers off. The host's /sbin/poweroff is systemd's and does nothing here: use busybox.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
W=$VT_WORK
SYS=/sys/bus/pci/devices
ENGINE=$VT_REPO/bench/fio-engine/build/vfiod-fio.so

log() { echo "[t=$(cut -d' ' -f1 /proc/uptime)s] guest-fio: $*"; }
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
wait_for() { # wait_for <what> <shell test>
  i=0
  while ! eval "$2"; do
    i=$((i + 1))
    [ $i -gt 750 ] && fail "timeout waiting for $1"
    sleep 0.02
  done
}
driver_of() { basename "$(readlink "$SYS/$1/driver" 2>/dev/null)" 2>/dev/null; }

[ -f "$ENGINE" ] || fail "engine $ENGINE not built"
log "creating the VF"
modprobe nvme || fail "modprobe nvme"
wait_for /dev/nvme0 '[ -e /dev/nvme0 ]'
PF=$(basename "$(readlink -f /sys/class/nvme/nvme0/device)")
# take the flexible resources from the primary controller, FLR the PF so it takes effect
nvme virt-mgmt /dev/nvme0 -c 0 -r 1 -a 1 -n 0 > /dev/null || fail "virt-mgmt primary VI"
nvme virt-mgmt /dev/nvme0 -c 0 -r 0 -a 1 -n 0 > /dev/null || fail "virt-mgmt primary VQ"
echo 1 > "$SYS/$PF/reset"
wait_for "PF live after reset" '[ "$(cat /sys/class/nvme/nvme0/state 2>/dev/null)" = live ]'
echo 0 > "$SYS/$PF/sriov_drivers_autoprobe"
echo 1 > "$SYS/$PF/sriov_numvfs" || fail "sriov_numvfs"
# secondary controller 1: 2 VI (vector 1 serves I/O queue 1 with vfiod_completion=irq), 3 VQ, online
nvme virt-mgmt /dev/nvme0 -c 1 -r 1 -a 8 -n 2 > /dev/null || fail "virt-mgmt VF VI"
nvme virt-mgmt /dev/nvme0 -c 1 -r 0 -a 8 -n 3 > /dev/null || fail "virt-mgmt VF VQ"
nvme virt-mgmt /dev/nvme0 -c 1 -r 0 -a 9 -n 0 > /dev/null || fail "virt-mgmt VF online"
VF=$(basename "$(readlink -f "$SYS/$PF/virtfn0")")
GROUP=$(basename "$(readlink "$SYS/$VF/iommu_group")")
log "VF $VF (IOMMU group $GROUP): binding to vfio-pci"
modprobe vfio-pci || fail "modprobe vfio-pci"
echo vfio-pci > "$SYS/$VF/driver_override"
echo "$VF" > /sys/bus/pci/drivers_probe
wait_for "$VF bound to vfio-pci" '[ "$(driver_of "$VF")" = vfio-pci ]'

# The PF is still on the nvme driver: the engine must refuse it with a clear message.
fio --name=pf --ioengine="external:$ENGINE" --thread --vfiod_transport=vfio --vfiod_bdf="$PF" --rw=read --size=1M \
  > /dev/null 2> "$W/fio-pf.err"
echo $? > "$W/fio-pf.status"

cat > /tmp/vfio.fio << EOF
[global]
ioengine=external:$ENGINE
thread=1
verify_state_save=0
vfiod_transport=vfio
vfiod_bdf=$VF
[verify]
rw=randwrite
bs=4k
iodepth=16
size=4M
numjobs=2
offset_increment=4M
verify=crc32c
do_verify=1
[bigblocks]
stonewall
rw=write
bs=128k
iodepth=4
offset=16M
size=4M
verify=crc32c
do_verify=1
[trim]
stonewall
rw=trim
bs=1M
offset=16M
size=2M
[randread]
stonewall
rw=randread
bs=4k
iodepth=32
number_ios=4000
[irq]
stonewall
vfiod_completion=irq
rw=randwrite
bs=4k
iodepth=8
size=4M
offset=24M
verify=crc32c
do_verify=1
EOF
log "running fio with the vfio transport"
cd /tmp # writable (the root is read-only 9p)
fio --output-format=json --output="$W/fio.json" /tmp/vfio.fio 2> "$W/fio.err"
status=$?
log "fio exit $status"
printf '{"ok":true,"pf":"%s","vf":"%s","vfGroup":"%s","vfDriver":"%s","fioStatus":%d,"pfFioStatus":%s}\n' \
  "$PF" "$VF" "$GROUP" "$(driver_of "$VF")" "$status" "$(cat "$W/fio-pf.status")" > "$W/results.json"
finish
