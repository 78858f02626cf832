# PID 1's script in the vfio-user test VMs (testbed/vfio-user-vm.ts), run by testbed/vfio-guest/init.sh after
# switch_root onto the host's / (9p, read-only; tmpfs on /tmp /run /var/tmp /root; the VM's work dir writable at its
# host path). Loads the NVMe and virtio-console drivers, starts the QEMU guest agent on its virtio-serial port (the
# host runs every command through it) and keeps it running. Prints "vm: agent up (boot N)" on the serial console.
# The host's /sbin/poweroff is systemd's and does nothing here: busybox powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
log() { echo "[t=$(cut -d' ' -f1 /proc/uptime)s] vm: $*"; }
# Kernel messages from here on reach the console log (nvme resets, hot-plug, errors).
dmesg -n 7
modprobe -a nvme virtio_console || log "modprobe failed"
port=
i=0
while [ -z "$port" ]; do
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/$(basename "$p")
  done
  i=$((i + 1))
  if [ $i -gt 3000 ]; then log "FAIL: no guest agent port"; sync; /bin/busybox poweroff -f; fi
  [ -n "$port" ] || sleep 0.1
done
mkdir -p /run/qga
boot=$(cat /proc/sys/kernel/random/boot_id)
n=0
while :; do
  n=$((n + 1))
  log "agent up (boot $boot, start $n) on $port"
  /usr/sbin/qemu-ga -m virtio-serial -p "$port" -t /run/qga -l /run/qga/qga.log
  log "qemu-ga exited with $?; restarting"
  sleep 1
done
