#!/usr/bin/env bash
# Builds the guest kernel of test/guest/vfio-iommufd.test.ts: Linux 6.12 from Debian's linux-source-6.12 package with
# tinyconfig + kernel-iommufd.config (IOMMUFD and VFIO cdev built in). Debian's own kernels do
# not enable CONFIG_IOMMUFD, so there is no package to install instead.
#
# Output (the harness looks here): $VFIOD_TESTBED_IOMMUFD_KERNEL_DIR (default /var/cache/vfiod/guest-kernel)/
#   vmlinux   ELF kernel (PVH boot)      config   its .config      release   `uname -r` in the guest
#   stamp     source version + fragment hash: a rebuild happens only when one of them changes
# Needs: apt-get (to download the source), gcc, make, flex, bison, bc, libelf-dev, xz. Takes 10-30 min on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
fragment="$here/kernel-iommufd.config"
out="${VFIOD_TESTBED_IOMMUFD_KERNEL_DIR:-/var/cache/vfiod/guest-kernel}"
jobs="${VFIOD_TESTBED_KERNEL_JOBS:-$(nproc)}"
log() { echo "build-kernel: $*" >&2; }

mkdir -p "$out/src"
cd "$out/src"

# The source package: the newest linux-source-6.12 apt offers (bookworm carries it), downloaded once.
deb=$(ls -1 linux-source-6.12_*.deb 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$deb" ]; then
  log "downloading linux-source-6.12"
  apt-get download linux-source-6.12 >/dev/null 2>&1 || { apt-get update -qq && apt-get download linux-source-6.12 >/dev/null; }
  deb=$(ls -1 linux-source-6.12_*.deb | sort -V | tail -1)
fi
version=$(dpkg-deb -f "$deb" Version)
stamp="$version $(sha256sum "$fragment" | cut -c1-16)"
if [ -f "$out/vmlinux" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  log "up to date: $(cat "$out/release") ($stamp)"
  exit 0
fi

tree="$out/src/linux"
if [ "$(cat "$tree/.vfiod-source" 2>/dev/null)" != "$version" ]; then
  log "extracting $deb"
  rm -rf "$tree"
  mkdir -p "$tree"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/src/linux-source-6.12.tar.xz | xz -dc |
    tar -x -C "$tree" --strip-components=1
  echo "$version" > "$tree/.vfiod-source"
fi

cd "$tree"
log "configuring $version"
make -s ARCH=x86_64 tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
make -s ARCH=x86_64 olddefconfig >/dev/null
# Kconfig silently drops options whose dependencies are missing: refuse a kernel without what the test needs.
missing=$(grep -E '^CONFIG_[A-Z0-9_]+=y$' "$fragment" | while read -r line; do grep -qx "$line" .config || echo "$line"; done)
if [ -n "$missing" ]; then
  log "options not set after olddefconfig: $(echo $missing)"
  exit 1
fi
if grep -qx 'CONFIG_IOMMUFD_VFIO_CONTAINER=y' .config; then log "CONFIG_IOMMUFD_VFIO_CONTAINER must stay off"; exit 1; fi

log "building vmlinux with $jobs jobs"
started=$(date +%s)
make -s ARCH=x86_64 -j"$jobs" vmlinux
release=$(make -s ARCH=x86_64 kernelrelease)
cp vmlinux "$out/vmlinux.tmp" && mv "$out/vmlinux.tmp" "$out/vmlinux"
cp .config "$out/config"
echo "$release" > "$out/release"
echo "$stamp" > "$out/stamp"
log "built $release in $(( $(date +%s) - started )) s: $out/vmlinux"
