#!/bin/sh
# /init of the quickstart guest (docs/quickstart.md, built by testbed/make-disk.ts): shows the vfiod namespace
# as a Linux guest sees it, writes one line into partition 2, flushes it and powers off.
export PATH=/bin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /mods/order); do insmod "/mods/$m.ko" 2> /dev/null; done
i=0
while [ ! -b /dev/nvme0n1p2 ] && [ $i -lt 3000 ]; do i=$((i + 1)); sleep 0.1; done
echo "== lsblk"
lsblk /dev/nvme0n1
echo "== nvme list"
nvme list
echo "== dmesg"
dmesg | grep -i nvme
echo "== write"
echo "hello from the guest, $(date -u +%Y-%m-%dT%H:%M:%SZ)" | dd of=/dev/nvme0n1p2 bs=512 conv=sync,fsync 2> /dev/null &&
  echo "wrote 512 bytes at the start of /dev/nvme0n1p2 (flushed)"
poweroff -f
