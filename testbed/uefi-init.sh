#!/bin/sh
# /init of the UEFI boot test's guest (test/guest/uefi-boot.test.ts): OVMF loaded systemd-boot from the ESP on the
# vfiod namespace, systemd-boot this kernel and initramfs. Everything it finds goes to the serial console as
# "uefi-guest: <key> <value>" lines; the test compares them with what it wrote and with the host file afterwards.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "uefi-guest: $*"; }
fail() { say "FAILED $*"; poweroff -f; }
say "init started"
[ -d /sys/firmware/efi ] && say "efi yes" || say "efi no"
for m in $(cat /mods/order); do insmod "/mods/$m.ko" 2> /dev/null || say "insmod $m failed"; done
say "cmdline $(cat /proc/cmdline)"

# systemd-boot records the partition it was started from (LoaderDevicePartUUID: 4 attribute bytes, then UTF-16LE).
if mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2> /dev/null; then
  v=/sys/firmware/efi/efivars/LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
  [ -r "$v" ] && say "loader-partuuid $(tail -c +5 "$v" | tr -d '\000' | tr 'A-F' 'a-f')"
fi

# The namespace: the same controller OVMF booted from, now driven by Linux's nvme driver. Partition 2 is data.
i=0
while [ ! -b /dev/nvme0n1p2 ]; do
  i=$((i + 1))
  [ $i -gt 3000 ] && fail "no /dev/nvme0n1p2 after 300 s"
  sleep 0.1
done
c=/sys/class/nvme/nvme0
say "controller $(cat $c/model | xargs) serial $(cat $c/serial | xargs) pci $(basename "$(readlink $c/device)") vendor $(cat $c/device/vendor)"
say "namespace $(cat /sys/block/nvme0n1/size) sectors"

# The host's marker: one line at the start of partition 2.
host=$(dd if=/dev/nvme0n1p2 bs=512 count=1 2> /dev/null | tr -d '\000' | head -n 1)
say "host-marker $host"

# Our marker, 4 KiB into partition 2, padded to a sector, written through (fsync = NVMe Flush), then read back
# bypassing the page cache.
mine="guest $(cat /proc/sys/kernel/random/uuid) read [$host]"
printf '%s\n' "$mine" | dd of=/dev/nvme0n1p2 bs=512 seek=8 conv=sync,fsync 2> /dev/null || fail "write failed"
sync
back=$(dd if=/dev/nvme0n1p2 bs=512 skip=8 count=1 iflag=direct 2> /dev/null | tr -d '\000' | head -n 1)
[ "$back" = "$mine" ] || fail "read back [$back], wrote [$mine]"
say "guest-marker $mine"
dmesg | grep -i nvme | sed 's/^/uefi-guest: dmesg /'
say "done"
poweroff -f
