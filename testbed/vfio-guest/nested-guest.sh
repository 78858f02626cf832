# Runs in the VFIO test guest (L1) as PID 1's script for test/guest/attach-nested.test.ts: runs nested-main.ts with tsx
# (it starts L2 QEMU guests and writes $VT_WORK/results.json), keeps the L2 serial logs, then powers off with busybox
# (the host's /sbin/poweroff is systemd's and does nothing here).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
echo "[t=$(cut -d' ' -f1 /proc/uptime)s] L1: starting nested-main.ts"
cd "$VT_REPO"
node --import tsx "$VT_REPO/testbed/vfio-guest/nested-main.ts" > "$VT_WORK/nested-main.out" 2>&1
echo "nested-main exit $?" >> "$VT_WORK/nested-main.out"
cat "$VT_WORK/nested-main.out"
cp /tmp/l2-*.log "$VT_WORK/" 2>/dev/null
dmesg > "$VT_WORK/dmesg.txt"
echo "[t=$(cut -d' ' -f1 /proc/uptime)s] L1: done"
sync
/bin/busybox poweroff -f
