#!/bin/sh
# /init of the L2 guest the nested attach test starts inside the VFIO test guest (initramfs built by
# testbed/vfio-guest.ts: static busybox, nvme modules in /mods). Reports on the serial console what the host
# test waits for: "L2: READY" once it watches for devices, then for every change in the number of NVMe PCI functions
# (class 0x010802) "L2: nvme pci count A -> B", the functions and, when one appeared, its controllers and namespaces
# ("L2: namespace nvme0n1 sectors=N"). On each new namespace it then writes a random pattern (IO_BYTES) at a
# different offset each time (1 MiB, then 9 MiB, ...: clear of the boot sector), drops the page cache, reads it back
# and reports both SHA-256s ("L2: io nvme0n1 offset=O bytes=B wrote=<sha> read=<sha>"); the L1 program checks the
# same range through its own nvme driver once the VF is back. Runs until its QEMU is stopped.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
up() { cut -d' ' -f1 /proc/uptime; }
pcilist() { for d in /sys/bus/pci/devices/*; do echo "L2:   $(basename $d) $(cat $d/vendor):$(cat $d/device) class=$(cat $d/class) driver=$(basename "$(readlink $d/driver)" 2>/dev/null)"; done; }
echo "L2: booted at t=$(up)s"
for m in $(cat /mods/order 2>/dev/null); do insmod /mods/$m.ko 2>/dev/null || echo "L2: insmod $m failed"; done
echo "L2: kernel $(uname -r)"
pcilist
echo "L2: READY t=$(up)s"
IO_BYTES=4194304
io_round=0
io() { # io <block device>: the pattern round trip on it
  off=$((1048576 + io_round * 8388608)); io_round=$((io_round + 1))
  dd if=/dev/urandom of=/tmp/pattern bs=65536 count=$((IO_BYTES / 65536)) 2>/dev/null
  wrote=$(sha256sum /tmp/pattern | cut -d' ' -f1)
  dd if=/tmp/pattern of=/dev/$1 bs=65536 seek=$((off / 65536)) conv=fsync 2>/dev/null || echo "L2: io $1 write failed"
  echo 3 > /proc/sys/vm/drop_caches
  read=$(dd if=/dev/$1 bs=65536 skip=$((off / 65536)) count=$((IO_BYTES / 65536)) 2>/dev/null | sha256sum | cut -d' ' -f1)
  echo "L2: io $1 offset=$off bytes=$IO_BYTES wrote=$wrote read=$read at t=$(up)s"
}
seen=0
while :; do
  n=$(cat /sys/bus/pci/devices/*/class 2>/dev/null | grep -c 0x010802)
  if [ "$n" != "$seen" ]; then
    echo "L2: nvme pci count $seen -> $n at t=$(up)s"
    pcilist
    if [ "$n" -gt "$seen" ]; then
      for i in $(seq 1 60); do ls /sys/block | grep -q '^nvme' && break; sleep 0.5; done
      for c in /sys/class/nvme/*; do [ -e "$c" ] && echo "L2: controller $(basename $c) state=$(cat $c/state) model=$(cat $c/model | tr -s ' ')"; done
      for b in /sys/block/nvme*; do [ -e "$b" ] && echo "L2: namespace $(basename $b) sectors=$(cat $b/size)"; done
      for b in /sys/block/nvme*; do [ -e "$b" ] && io "$(basename $b)"; done
    fi
    seen=$n
  fi
  sleep 0.5
done
