// Registry of the mappings created by mmap(), shared with the doorbell poller.
#pragma once

#include "common.h"

#include <cstddef>
#include <cstdint>

namespace vfiod {

struct Mapping;

struct PinnedMapping {
  Mapping* mapping = nullptr;
  uint8_t* addr = nullptr;
  size_t length = 0;
  int prot = 0;  // PROT_READ / PROT_WRITE bits as passed to mmap()
};

// Pins the live mapping behind `buffer` (an ArrayBuffer returned by mmap()): until UnpinMapping, munmap() of it
// throws EBUSY and a garbage-collected / torn-down ArrayBuffer does not unmap it. Throws a JS error and returns
// false if `buffer` is not a live mapping.
bool PinMapping(Napi::Env env, const Napi::Value& buffer, const char* fn, PinnedMapping* out);
// Drops a pin; if the ArrayBuffer has already been finalized, this performs the deferred munmap.
void UnpinMapping(Mapping* mapping);
// Whether [addr, addr + length) overlaps a live mapping made by mmap() (length > 0).
bool OverlapsMapping(const void* addr, size_t length);

}  // namespace vfiod
