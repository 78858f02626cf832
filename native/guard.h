// SIGBUS recovery for shared file mappings that another process can shrink (guest memory from a vfio-user client).
//
// Touching a page of a MAP_SHARED file mapping that lies past the file's current end raises SIGBUS. A client that
// truncates the memfd it passed with DMA_MAP would otherwise kill the whole process. Mappings registered here are
// watched by a process-wide SIGBUS handler: a fault inside one replaces the faulting page (or huge page) with an
// anonymous zero-filled page of the same protection, so the access completes, and counts the fault on the mapping.
// The caller learns about it afterwards (GuardFaults) and decides what to do; the data read from the lost page is
// zeros and what is written to it goes nowhere.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vfiod {

constexpr int kNoGuard = -1;

// Registers [addr, addr + length) (page aligned) for recovery with this protection; `granule` is the size of the
// file's pages (the page size, or the huge page size for hugetlbfs; a power of two). Installs the SIGBUS handler on
// first use. Returns the slot, or kNoGuard with `*err` set when the table is full (ENOSPC) or sigaction failed.
// Callers must serialize GuardRegister / GuardUnregister (memory.cc calls them under its mutex).
int GuardRegister(void* addr, size_t length, int prot, size_t granule, int* err);
// Stops watching the slot's range; call it before munmap(2) of the range.
void GuardUnregister(int slot);

struct GuardFaults {
  uint64_t count = 0;        // faults recovered in this mapping
  uint64_t firstOffset = 0;  // offset of the first faulting page (or huge page) from the start of the mapping
};
// Whether the slot's mapping has faulted (count > 0), and where first.
bool GuardFaultsOf(int slot, GuardFaults* out);
// Faults recovered in any mapping since the process started (never decreases).
uint64_t GuardFaultTotal();

}  // namespace vfiod
