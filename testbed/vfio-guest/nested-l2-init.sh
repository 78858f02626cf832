#!/bin/sh
# /init of the L2 guest the nested attach test starts inside the VFIO test guest (initramfs built by
# testbed/vfio-guest.ts: static busybox, nvme modules in /mods). Reports on the serial console what the host
# test waits for: "L2: READY" once it watches for devices, then for every change in the number of NVMe PCI functions
# (class 0x010802) "L2: nvme pci count A -> B", the functions and, when one appeared, its controllers and namespaces
# ("L2: namespace nvme0n1 sectors=N"). Runs until its QEMU is stopped.
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
    fi
    seen=$n
  fi
  sleep 0.5
done
