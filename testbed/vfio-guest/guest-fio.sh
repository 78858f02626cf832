# Guest side of the VFIO part of test/guest/fio-engine.test.ts (runs as PID 1's script in the QEMU guest, see
# testbed/vfio-guest.ts and init.sh). Creates one NVMe VF on the SR-IOV PF and brings its secondary controller
# online (2 VI: MSI-X vectors 0 and 1, the most QEMU gives one of 2 VFs; 3 VQ: admin + 2 I/O queue pairs), binds it
# to vfio-pci, then runs the host's fio with the engine built on the host (bench/fio-engine/build/vfiod-fio.so, seen
# through the repository mount) over the vfio transport, with verify on. Leaves fio's JSON and stderr in $VT_WORK, a summary in $VT_WORK/results.json, and
# powers off. The host's /sbin/poweroff is systemd's and does nothing here: use busybox.
GUEST_NAME=guest-fio
. "$VT_REPO/testbed/vfio-guest/guest-lib.sh"
ENGINE=$VT_REPO/bench/fio-engine/build/vfiod-fio.so

[ -f "$ENGINE" ] || fail "engine $ENGINE not built"
log "creating the VF"
# 2 interrupt vectors (vector 1 serves I/O queue 1 with vfiod_completion=irq; the most QEMU gives one of 2 VFs),
# 3 queues (admin + 2 I/O queue pairs)
create_vf 2 3
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
