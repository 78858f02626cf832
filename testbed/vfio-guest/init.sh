#!/bin/sh
# /init of the VFIO test guest's initramfs (busybox; built by testbed/vfio-guest.ts). Loads the virtio/9p
# modules listed in /mods/order, mounts the host's / read-only over 9p as the new root, puts tmpfs on /tmp /run
# /var/tmp /root, mounts the repository (vt.repo=, read-only) and the work dir (vt.work=, writable, uncached so the
# host sees writes at once) at their host paths, then switch_roots and runs vt.script= with /bin/sh.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /mods/order); do insmod /mods/$m.ko || echo "init: insmod $m failed"; done
SCRIPT=; WORK=; REPO=
for w in $(cat /proc/cmdline); do
  case $w in
    vt.script=*) SCRIPT=${w#vt.script=};;
    vt.work=*) WORK=${w#vt.work=};;
    vt.repo=*) REPO=${w#vt.repo=};;
  esac
done
die() { echo "init: $*"; poweroff -f; }
O=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o ro,$O,cache=loose hostroot /newroot || die "9p root mount failed"
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=755 tmpfs /newroot/run
mount -t tmpfs -o mode=1777 tmpfs /newroot/var/tmp
mount -t tmpfs -o mode=700 tmpfs /newroot/root
[ -n "$REPO" ] || die "no vt.repo="
mkdir -p /newroot$REPO 2>/dev/null
mount -t 9p -o ro,$O,cache=loose repo /newroot$REPO || die "repo share mount failed"
[ -n "$WORK" ] || die "no vt.work="
mkdir -p /newroot$WORK 2>/dev/null
mount -t 9p -o $O work /newroot$WORK || die "work share mount failed"
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
[ -n "$SCRIPT" ] || die "no vt.script="
export VT_WORK=$WORK VT_REPO=$REPO
exec switch_root /newroot /bin/sh "$SCRIPT"
