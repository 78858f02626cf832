// SIGBUS recovery for shrinkable shared mappings (see guard.h).
//
// The handler runs on whatever thread touched the page (a controller's worker thread, the main thread), at any
// point of its execution, possibly while that thread holds a lock in malloc or in memory.cc. So it takes no lock,
// allocates nothing and calls only async-signal-safe functions (mmap, sigaction, raise: system calls). Ranges live
// in a fixed table of slots that writers (serialized by the caller) update under a per-slot sequence counter and
// the handler reads with atomic loads, retrying nothing: a slot being rewritten is skipped (its memory is not in
// use by the guest yet, or not any more).
#include "guard.h"

#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>

namespace vfiod {
namespace {

// A DMA_MAP is one mapping; a client may make at most max_dma_maps (1024 by default), and only unsealed files are
// registered (QEMU seals its guest memory). 16 Ki slots cost ~640 KiB of zero-initialised memory, touched as used.
constexpr size_t kSlots = 16384;

struct Slot {
  // Odd while the writer rewrites the slot; the handler uses the slot only if it reads the same even value before
  // and after reading the fields.
  std::atomic<uint32_t> sequence{0};
  std::atomic<int> prot{0};
  std::atomic<uintptr_t> base{0};  // 0: free
  std::atomic<uintptr_t> length{0};
  std::atomic<uintptr_t> granule{0};
  std::atomic<uint64_t> faults{0};
  std::atomic<uint64_t> firstOffsetPlusOne{0};  // 0: no fault yet (keeps the table in .bss)
};

static_assert(std::atomic<uintptr_t>::is_always_lock_free, "the SIGBUS handler needs lock-free atomics");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "the SIGBUS handler needs lock-free atomics");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "the SIGBUS handler needs lock-free atomics");

Slot g_slots[kSlots];
std::atomic<size_t> g_used{0};  // slots [0, g_used) may be in use
std::atomic<uint64_t> g_total{0};
bool g_installed = false;  // writers only (serialized)
struct sigaction g_previous;  // written once before the handler is installed, read-only afterwards

// Replaces the page (granule) holding `address` in a registered mapping with anonymous zero memory. Returns false
// when the address is in no registered mapping or the replacement failed.
bool Recover(uintptr_t address) {
  size_t used = g_used.load(std::memory_order_acquire);
  for (size_t index = 0; index < used; index++) {
    Slot& slot = g_slots[index];
    uint32_t before = slot.sequence.load(std::memory_order_acquire);
    if ((before & 1) != 0) continue;
    uintptr_t base = slot.base.load(std::memory_order_relaxed);
    uintptr_t length = slot.length.load(std::memory_order_relaxed);
    uintptr_t granule = slot.granule.load(std::memory_order_relaxed);
    int prot = slot.prot.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (slot.sequence.load(std::memory_order_relaxed) != before) continue;
    if (base == 0 || address < base || address - base >= length || granule == 0) continue;
    uintptr_t offset = (address - base) & ~(granule - 1);
    uintptr_t size = length - offset < granule ? length - offset : granule;
    void* replaced = mmap(reinterpret_cast<void*>(base + offset), size, prot,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (replaced == MAP_FAILED) return false;
    uint64_t none = 0;
    slot.firstOffsetPlusOne.compare_exchange_strong(none, offset + 1, std::memory_order_relaxed);
    slot.faults.fetch_add(1, std::memory_order_release);
    g_total.fetch_add(1, std::memory_order_release);
    return true;
  }
  return false;
}

void OnSigbus(int sig, siginfo_t* info, void* context) {
  int savedErrno = errno;
  // BUS_ADRERR from the kernel (si_code > 0) is what an access past the end of a mapped file raises. Hardware
  // memory errors (BUS_MCEERR_*), alignment faults and SIGBUS sent with kill(2) are not ours to hide.
  if (info != nullptr && info->si_code == BUS_ADRERR && Recover(reinterpret_cast<uintptr_t>(info->si_addr))) {
    errno = savedErrno;
    return;  // the faulting instruction runs again, now on the replacement page
  }
  errno = savedErrno;
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
    return;
  }
  // Nobody else handles it: the default action (core dump). SIGBUS is blocked while this handler runs, so the
  // raised signal is delivered, with the default disposition, as soon as the handler returns.
  struct sigaction defaults = {};
  defaults.sa_handler = SIG_DFL;
  sigemptyset(&defaults.sa_mask);
  sigaction(SIGBUS, &defaults, nullptr);
  raise(SIGBUS);
}

bool Install(int* err) {
  if (g_installed) return true;
  struct sigaction action = {};
  action.sa_sigaction = OnSigbus;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGBUS, &action, &g_previous) < 0) {
    *err = errno;
    return false;
  }
  g_installed = true;
  return true;
}

}  // namespace

int GuardRegister(void* addr, size_t length, int prot, size_t granule, int* err) {
  if (!Install(err)) return kNoGuard;
  size_t used = g_used.load(std::memory_order_relaxed);
  size_t index = 0;
  while (index < used && g_slots[index].base.load(std::memory_order_relaxed) != 0) index++;
  if (index == kSlots) {
    *err = ENOSPC;
    return kNoGuard;
  }
  Slot& slot = g_slots[index];
  uint32_t sequence = slot.sequence.load(std::memory_order_relaxed);
  slot.sequence.store(sequence + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  slot.prot.store(prot, std::memory_order_relaxed);
  slot.length.store(length, std::memory_order_relaxed);
  slot.granule.store(granule, std::memory_order_relaxed);
  slot.faults.store(0, std::memory_order_relaxed);
  slot.firstOffsetPlusOne.store(0, std::memory_order_relaxed);
  slot.base.store(reinterpret_cast<uintptr_t>(addr), std::memory_order_relaxed);
  slot.sequence.store(sequence + 2, std::memory_order_release);
  if (index == used) g_used.store(used + 1, std::memory_order_release);
  return static_cast<int>(index);
}

void GuardUnregister(int slot) {
  if (slot < 0 || static_cast<size_t>(slot) >= kSlots) return;
  Slot& s = g_slots[slot];
  uint32_t sequence = s.sequence.load(std::memory_order_relaxed);
  s.sequence.store(sequence + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  s.base.store(0, std::memory_order_relaxed);
  s.sequence.store(sequence + 2, std::memory_order_release);
}

bool GuardFaultsOf(int slot, GuardFaults* out) {
  if (slot < 0 || static_cast<size_t>(slot) >= kSlots) return false;
  const Slot& s = g_slots[slot];
  out->count = s.faults.load(std::memory_order_acquire);
  if (out->count == 0) return false;
  uint64_t plusOne = s.firstOffsetPlusOne.load(std::memory_order_relaxed);
  out->firstOffset = plusOne == 0 ? 0 : plusOne - 1;
  return true;
}

uint64_t GuardFaultTotal() { return g_total.load(std::memory_order_acquire); }

}  // namespace vfiod
