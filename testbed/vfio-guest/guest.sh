# Runs in the VFIO test guest as PID 1 after switch_root (see init.sh): runs guest-main.ts with tsx from the
# repository, which writes $VT_WORK/results.json, then powers off. The host's /sbin/poweroff is systemd's and does
# nothing here: use busybox.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
# VT_PROGRAM (from the kernel command line, see runVfioGuest's `program`) picks another guest program
PROGRAM="${VT_PROGRAM:-$VT_REPO/testbed/vfio-guest/guest-main.ts}"
echo "[t=$(cut -d' ' -f1 /proc/uptime)s] guest: starting $PROGRAM"
cd "$VT_REPO"
# mkdir on the read-only 9p root fails: the repository and /tmp are the only places tsx needs
node --import tsx "$PROGRAM" > "$VT_WORK/guest-main.out" 2>&1
echo "guest-main exit $?" >> "$VT_WORK/guest-main.out"
cat "$VT_WORK/guest-main.out"
dmesg > "$VT_WORK/dmesg.txt"
echo "[t=$(cut -d' ' -f1 /proc/uptime)s] guest: done"
sync
/bin/busybox poweroff -f
