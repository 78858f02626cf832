#!/bin/sh
# /init of the NVMe/TCP target guest (busybox sh, PID 1). testbed/nvmet-target.ts packs this file into a
# per-target initramfs together with a static busybox, the kernel modules listed in /mods/order and
# /etc/target.conf (shell variables, below). Nothing from the host is mounted: the guest is self-contained.
#
#   1. loads the modules (virtio-pci/net/blk/console, configfs, nvmet, nvmet-tcp, crc32c),
#   2. brings up eth0 as 10.0.2.15/24 (QEMU slirp; the host reaches the guest only through hostfwd),
#   3. optionally writes /prefill.bin into the disk at PREFILL_OFFSET (proof that guest writes reach the host file),
#   4. exports /dev/vda (virtio-blk, backed by a host file) as namespace 1 of subsystem NQN through nvmet,
#      listening on 0.0.0.0:BASE_PORT .. BASE_PORT+PORTS-1,
#   5. serves the control channel: a virtio-serial port named "vfiod.ctl" (a unix socket on the host).
#      Requests are lines "<id> <command> [arg]", replies "<id> ok [info]" or "<id> error <message>":
#        ping             -> ok            (answered only once step 4 is done: this is the readiness signal)
#        restart <ms>     -> ok            every port is removed (all connections drop, listeners close),
#                                          <ms> later the ports come back, same subsystem and namespace
#        poweroff         -> (no reply)    powers the guest off
# /etc/target.conf: NQN, PORTS, BASE_PORT, SERIAL, PREFILL_OFFSET (only with /prefill.bin).
# Everything this script prints goes to the serial console (the console.log file of the target).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
log() { echo "target-init: [t=$(cut -d' ' -f1 /proc/uptime)s] $*"; }
die() { log "FAILED: $*"; sync; poweroff -f; sleep 10; }
. /etc/target.conf || die "no /etc/target.conf"

for m in $(cat /mods/order); do
  insmod "/mods/$m.ko" 2>/dev/null || log "insmod $m failed (ignored)"
done

ip link set lo up
ip link set eth0 up || die "no eth0 (virtio-net)"
ip addr add 10.0.2.15/24 dev eth0 || die "cannot set the address of eth0"

i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1)); [ $i -gt 100 ] && die "no /dev/vda (virtio-blk)"; usleep 50000
done

if [ -f /prefill.bin ]; then
  if [ $((PREFILL_OFFSET % 512)) = 0 ]; then
    dd if=/prefill.bin of=/dev/vda bs=512 seek=$((PREFILL_OFFSET / 512)) conv=notrunc,fsync 2>/dev/null
  else
    dd if=/prefill.bin of=/dev/vda bs=1 seek="$PREFILL_OFFSET" conv=notrunc,fsync 2>/dev/null
  fi || die "prefill write failed"
  log "prefilled $(wc -c < /prefill.bin) bytes at offset $PREFILL_OFFSET"
fi

mount -t configfs none /sys/kernel/config || die "cannot mount configfs"
C=/sys/kernel/config/nvmet
[ -d $C ] || die "nvmet is not loaded"
S=$C/subsystems/$NQN
mkdir "$S" || die "cannot create subsystem $NQN"
echo 1 > "$S/attr_allow_any_host"
echo "$SERIAL" > "$S/attr_serial"
[ -e "$S/attr_model" ] && echo "vfiod test target" > "$S/attr_model"
mkdir "$S/namespaces/1"
echo -n /dev/vda > "$S/namespaces/1/device_path"
echo 1 > "$S/namespaces/1/enable" || die "cannot enable namespace 1 (/dev/vda)"

ports_up() {
  n=1
  while [ $n -le "$PORTS" ]; do
    P=$C/ports/$n
    mkdir "$P" || return 1
    echo tcp > "$P/addr_trtype"; echo ipv4 > "$P/addr_adrfam"
    echo 0.0.0.0 > "$P/addr_traddr"; echo $((BASE_PORT + n - 1)) > "$P/addr_trsvcid"
    ln -s "$S" "$P/subsystems/$NQN" || return 1
    n=$((n + 1))
  done
}
# Unlinking the subsystem deletes its controllers (their sockets are shut down); removing the port closes the
# listener and the connections that have no controller yet.
ports_down() {
  for P in $C/ports/*; do
    [ -d "$P" ] || continue
    rm -f "$P/subsystems/"* 2>/dev/null
    rmdir "$P" || return 1
  done
}
ports_up || die "cannot create the nvmet ports"
dmesg -n 7
log "nvmet-tcp target ready: $NQN on $PORTS port(s) from $BASE_PORT, /dev/vda $(cat /sys/block/vda/size) sectors"

CTL=
for d in /sys/class/virtio-ports/*; do
  [ "$(cat "$d/name" 2>/dev/null)" = vfiod.ctl ] && CTL=/dev/${d##*/}
done
[ -n "$CTL" ] || die "no virtio-serial port named vfiod.ctl"
while :; do
  # read returns EOF while the host side of the port is not connected: wait and reopen
  exec 3<>"$CTL" || die "cannot open $CTL"
  while read -r id cmd arg <&3; do
    case $cmd in
      ping) echo "$id ok" >&3;;
      restart)
        log "restart: ports down for ${arg:-0} ms"
        if ports_down; then
          [ "${arg:-0}" -gt 0 ] && usleep $((arg * 1000))
          if ports_up; then log "restart: ports up"; echo "$id ok" >&3
          else echo "$id error cannot re-create the ports" >&3; fi
        else
          echo "$id error cannot remove the ports" >&3
        fi;;
      poweroff) log "poweroff"; sync; poweroff -f;;
      *) echo "$id error unknown command $cmd" >&3;;
    esac
  done
  exec 3<&-
  usleep 200000
done
