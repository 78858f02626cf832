#!/bin/sh
# Builds bench/nvme-host/build/nvme-bench and wake-cost (libc only). Usage: bench/nvme-host/build.sh [extra cc flags]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$here/build"
CC=${CC:-cc}
$CC -O2 -g -Wall -Wextra -std=gnu11 "$@" -o "$here/build/nvme-bench.tmp" \
  "$here/nvme_bench.c" "$here/nvme_queue.c" "$here/vfio_user_client.c" "$here/loopback_dev.c"
mv "$here/build/nvme-bench.tmp" "$here/build/nvme-bench"
$CC -O2 -g -Wall -Wextra -std=gnu11 "$@" -pthread -o "$here/build/wake-cost.tmp" "$here/wake_cost.c"
mv "$here/build/wake-cost.tmp" "$here/build/wake-cost"
echo "built $here/build/nvme-bench and $here/build/wake-cost"
