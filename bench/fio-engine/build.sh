#!/bin/sh
# Builds bench/fio-engine/build/vfiod-fio.so, the fio external I/O engine (docs/fio-engine.md), against the headers
# of the *installed* fio. fio ships no -dev package, so the matching Debian source package is fetched once with a
# private apt configuration (deb-src line under build/apt; the system's apt sources are not touched), configured and
# cached under bench/fio-engine/build/. Idempotent: does nothing when the .so is newer than its sources.
#
# Usage: bench/fio-engine/build.sh [--force] [--sanitize] [--plan]     prints the .so path on the last line of stdout
#   --plan: build nothing; print what a build would do: 'ready' (up to date), 'build' (compile only) or
#           'fetch <what>' (the fio source is not cached yet: it would be downloaded first).
#   --sanitize: build/vfiod-fio-asan.so instead, with AddressSanitizer + UndefinedBehaviorSanitizer (any UB aborts).
#               fio must run with the runtime preloaded: LD_PRELOAD=$(cc -print-file-name=libasan.so).
# Exit status: 0 built/up to date; 3 fio or its source is unavailable (callers may skip); 1 build error.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
nvme_host=$(cd "$here/../nvme-host" && pwd)
build="$here/build"
force=0 sanitize=0 plan=0
for arg in "$@"; do
  case "$arg" in
  --force) force=1 ;;
  --sanitize) sanitize=1 ;;
  --plan) plan=1 ;;
  *) echo "fio-engine build: unknown option $arg (usage: build.sh [--force] [--sanitize] [--plan])" >&2; exit 1 ;;
  esac
done
variant=""
[ $sanitize = 1 ] && variant="-asan"
so="$build/vfiod-fio$variant.so"
mkdir -p "$build"

unavailable() { echo "fio-engine build: $*" >&2; exit 3; }
die() { echo "fio-engine build: $*" >&2; exit 1; }

# One build at a time (the test and the benchmark harness may both call this).
exec 9>"$build/.lock"
flock 9

sources="$here/engine.c $here/engine.h $here/xport_vfio_user.c $here/xport_vfio.c $here/dma.c $nvme_host/nvme_queue.c \
$nvme_host/nvme_queue.h $nvme_host/vfio_user_client.c $nvme_host/vfio_user_client.h $here/build.sh"

fio_bin=$(command -v fio || true)
[ -n "$fio_bin" ] || unavailable "fio is not installed (apt-get install fio)"
fio_version=$("$fio_bin" --version 2>/dev/null || true)
case "$fio_version" in fio-*) ;; *) unavailable "'$fio_bin --version' printed '$fio_version', expected fio-<version>";; esac
deb_version=$(dpkg-query -W -f='${Version}' fio 2>/dev/null || true)
[ -n "$deb_version" ] || unavailable "fio ($fio_bin, $fio_version) is not from a Debian package: cannot fetch matching headers"
case "$(realpath "$fio_bin")" in /usr/bin/fio) ;; *) unavailable "fio on PATH is $fio_bin, not the packaged /usr/bin/fio ($deb_version)";; esac

stamp="$build/fio-version$variant"
if [ $force = 0 ] && [ -f "$so" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$fio_version $deb_version" ]; then
  fresh=1
  for f in $sources; do [ "$f" -nt "$so" ] && fresh=0; done
  if [ $fresh = 1 ]; then
    if [ $plan = 1 ]; then echo ready; else echo "$so"; fi
    exit 0
  fi
fi

# ---- matching fio source (Debian source package of exactly the installed version) ----
upstream=${deb_version%-*}
upstream=${upstream#*:}
src="$build/fio-src/fio-$upstream"
if [ $plan = 1 ]; then
  if [ -f "$src/.vfiod-ready" ]; then echo build; else echo "fetch the Debian source package of fio $deb_version from deb.debian.org"; fi
  exit 0
fi
if [ ! -f "$src/.vfiod-ready" ]; then
  command -v apt-get >/dev/null || unavailable "apt-get not found: cannot fetch the fio $deb_version source"
  command -v dpkg-source >/dev/null || unavailable "dpkg-source not found (apt-get install dpkg-dev): needed to unpack the fio source"
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || unavailable "cannot tell the Debian release from /etc/os-release"
  apt_dir="$build/apt"
  rm -rf "$build/fio-src"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$build/fio-src"
  echo "deb-src http://deb.debian.org/debian $codename main" > "$apt_dir/sources.list"
  set -- -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache" -o Debug::NoLocking=1 \
    -o APT::Sandbox::User=root
  echo "fio-engine build: fetching the Debian source of fio $deb_version (private apt lists in $apt_dir)" >&2
  apt-get "$@" -qq update >&2 || unavailable "apt-get update for deb-src $codename failed (network?)"
  (cd "$build/fio-src" && apt-get "$@" -qq source "fio=$deb_version" >&2) ||
    unavailable "apt-get source fio=$deb_version failed"
  [ -d "$src" ] || die "apt-get source did not produce $src"
  rm -rf "$apt_dir"
  touch "$src/.vfiod-ready"
fi

# The headers must be fio's own version: FIO-VERSION-GEN's default is what a release tarball reports.
src_version=$(sed -n 's/^DEF_VER=//p' "$src/FIO-VERSION-GEN")
[ "$src_version" = "$fio_version" ] ||
  die "fio source in $src is $src_version but the installed fio is $fio_version: remove $build/fio-src and rerun"

# ---- configure (once) ----
# Only config-host.h is used. The structures an engine touches (thread_data up to io_ops_data, thread_options,
# io_u up to engine_data, fio_file) do not depend on configure's feature probes on Linux; CONFIG_CUDA (which adds
# thread_data members) is off in Debian's build and here.
if [ ! -f "$src/config-host.h" ]; then
  echo "fio-engine build: configuring fio $upstream headers" >&2
  (cd "$src" && ./configure --disable-native > "$build/fio-configure.log" 2>&1) ||
    die "fio ./configure failed: see $build/fio-configure.log"
fi
grep -q '^#define CONFIG_CUDA' "$src/config-host.h" && die "$src/config-host.h enables CUDA: thread_data would not match Debian's fio"

# ---- compile ----
CC=${CC:-cc}
tmp="$so.tmp.$$"
obj="$build/obj$variant"
mkdir -p "$obj"
opt="-O2"
if [ $sanitize = 1 ]; then
  opt="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
  [ -f "$($CC -print-file-name=libasan.so)" ] || unavailable "$CC has no libasan.so (apt-get install libgcc-12-dev)"
fi
warn="-Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers -Wno-format-truncation"
# The transports and the NVMe queue layer are plain C; only engine.c sees fio's headers and configuration.
for f in "$here/xport_vfio_user.c" "$here/xport_vfio.c" "$here/dma.c" "$nvme_host/nvme_queue.c" "$nvme_host/vfio_user_client.c"; do
  $CC $opt -g $warn -std=gnu11 -fPIC -pthread -I"$nvme_host" -I"$here" -c -o "$obj/$(basename "$f" .c).o" "$f" ||
    die "compiling $f failed"
done
$CC $opt -g $warn -std=gnu11 -fPIC -pthread -D_GNU_SOURCE -D_LARGEFILE_SOURCE -D_FILE_OFFSET_BITS=64 \
  -include "$src/config-host.h" -I"$src" -I"$nvme_host" -I"$here" -DVFIOD_FIO_VERSION="\"$fio_version\"" \
  -c -o "$obj/engine.o" "$here/engine.c" || die "compiling $here/engine.c failed"
$CC $opt -shared -pthread -o "$tmp" "$obj/engine.o" "$obj/xport_vfio_user.o" "$obj/xport_vfio.o" "$obj/dma.o" \
  "$obj/nvme_queue.o" "$obj/vfio_user_client.o" || { rm -f "$tmp"; die "linking failed"; }

# Every fio symbol the engine uses must be exported by the installed fio binary (dlopen is RTLD_LAZY: a missing
# one would only fail at the first call, in the middle of a run). The sanitizer runtime comes from LD_PRELOAD.
exported="$build/fio-exports.txt"
nm -D --defined-only "$fio_bin" | awk '{print $3}' > "$exported"
# a sanitized engine links libasan, which then supplies libc's symbols (unversioned) too
[ $sanitize = 1 ] && nm -D --defined-only "$(realpath "$($CC -print-file-name=libasan.so)")" | awk '{print $3}' >> "$exported"
missing=$(nm -D --undefined-only "$tmp" | awk '{print $2}' | grep -v '@' | grep -v -x -F -f "$exported" |
  grep -v '^_\(_gmon_start\|ITM_\|_cxa_finalize\|_asan\|_ubsan\|_sanitizer\)' || true)
if [ -n "$missing" ]; then rm -f "$tmp"; die "symbols not exported by $fio_bin: $(echo $missing)"; fi
mv "$tmp" "$so"
echo "$fio_version $deb_version" > "$stamp"
echo "fio-engine build: built $so for $fio_version ($deb_version)" >&2
echo "$so"
