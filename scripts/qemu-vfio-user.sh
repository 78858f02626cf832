#!/usr/bin/env bash
# A QEMU with the vfio-user client (`-device vfio-user-pci`, QEMU >= 10.1) on Debian 12, built once and cached.
#
# Debian 12 ships QEMU 7.2, which has no vfio-user client. Debian 13's backports suite has QEMU 11.x built with it;
# its binaries need trixie's C library, so they are unpacked into a small trixie tree (mmdebstrap, ~260 MB, ~40 s) and
# started through that tree's own dynamic loader. The archive is the one this machine's apt already uses.
#
# Usage: scripts/qemu-vfio-user.sh [--refresh] [--quiet]
#   Prints the path of a wrapper that runs like qemu-system-x86_64 (trixie's firmware directories are on its -L
#   search path; OVMF is at <cache>/root/usr/share/OVMF). --refresh rebuilds the tree.
# Cache: ${VFIOD_CACHE:-/var/cache/vfiod}/qemu-vfio-user (a new tree only when --refresh is given or it is missing).
set -euo pipefail

cache_root=${VFIOD_CACHE:-/var/cache/vfiod}
dir="$cache_root/qemu-vfio-user"
wrapper="$dir/bin/qemu-system-x86_64"
refresh=0
quiet=0
for arg in "$@"; do
  case "$arg" in
    --refresh) refresh=1 ;;
    --quiet) quiet=1 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "qemu-vfio-user: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
say() { [ "$quiet" = 1 ] || echo "qemu-vfio-user: $*" >&2; }
die() { echo "qemu-vfio-user: $*" >&2; exit 1; }

if [ "$refresh" = 0 ] && [ -x "$wrapper" ] && "$wrapper" -device vfio-user-pci,help > /dev/null 2>&1; then
  echo "$wrapper"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "building the QEMU tree needs root (mmdebstrap --mode=root); run as root or set VFIOD_CACHE to a tree built before"

# The Debian archive apt uses here, from deb822 sources (URIs:) or a classic sources.list line. No host is hard-coded.
archive_uri() {
  local file uri
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -r "$file" ] || continue
    # The first stanza that carries a bookworm suite (not bookworm-security, which lives on another path).
    uri=$(awk '
      /^[[:space:]]*$/ { if (u != "" && s) { print u; exit } u = ""; s = 0; next }
      /^URIs:/ { u = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm" || $i == "bookworm-updates") s = 1 }
      END { if (u != "" && s) print u }
    ' "$file" | head -1)
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$file" ] || continue
    uri=$(awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { print $i; exit } }' "$file")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  return 1
}
mirror=$(archive_uri) || die "no Debian bookworm archive found in /etc/apt/sources.list{,.d}"

if ! command -v mmdebstrap > /dev/null; then
  say "installing mmdebstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends mmdebstrap > /dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends mmdebstrap > /dev/null; } ||
    die "could not install mmdebstrap"
fi

mkdir -p "$cache_root"
work="$dir.new.$$"
trap 'rm -rf "$work"' EXIT
rm -rf "$work"
mkdir -p "$work"
say "building a trixie tree with qemu-system-x86 from trixie-backports ($mirror) in $dir"
started=$SECONDS
mmdebstrap --quiet --variant=essential --mode=root \
  --include=qemu-system-x86,ovmf,seabios,ipxe-qemu \
  --aptopt='APT::Default-Release "trixie-backports"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  trixie "$work/root" "deb $mirror trixie main" "deb $mirror trixie-backports main" > "$work/mmdebstrap.log" 2>&1 ||
  { tail -20 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }

mkdir -p "$work/bin"
# The wrapper locates the tree relative to itself, so the cache directory can be moved as a whole.
cat > "$work/bin/qemu-system-x86_64" << 'EOF'
#!/bin/sh
# Runs trixie's qemu-system-x86_64 through trixie's own loader and libraries (scripts/qemu-vfio-user.sh).
root="$(cd "$(dirname "$0")/.." && pwd)/root"
# QEMU's module directory is compiled in as an absolute path, which on this host holds QEMU 7.2's modules.
export QEMU_MODULE_DIR="$root/usr/lib/x86_64-linux-gnu/qemu"
exec "$root/lib64/ld-linux-x86-64.so.2" \
  --library-path "$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" \
  "$root/usr/bin/qemu-system-x86_64" -L "$root/usr/share/qemu" -L "$root/usr/share/seabios" "$@"
EOF
chmod 755 "$work/bin/qemu-system-x86_64"
"$work/bin/qemu-system-x86_64" -device vfio-user-pci,help > /dev/null 2>&1 ||
  die "the built QEMU has no vfio-user-pci device: $("$work/bin/qemu-system-x86_64" --version 2>&1 | head -1)"
"$work/bin/qemu-system-x86_64" --version | head -1 > "$work/VERSION"
rm -f "$work/mmdebstrap.log"

rm -rf "$dir.old"
[ -e "$dir" ] && mv "$dir" "$dir.old"
mv "$work" "$dir"
trap - EXIT
rm -rf "$dir.old"
say "$(cat "$dir/VERSION") ready in $((SECONDS - started)) s"
echo "$wrapper"
