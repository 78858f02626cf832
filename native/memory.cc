// Shared memory: memfd_create and mmap'd ArrayBuffers.
//
// Guest memory (vfio-user DMA regions), BARs and doorbell pages are fds that must be mapped MAP_SHARED; Node
// cannot map files, so mappings are exposed as external ArrayBuffers whose memory is the mapping itself.
//
// Lifetime rules (the dangerous part):
//  * A Mapping record exists per mmap() call and lives in a process-wide registry (keyed by base address)
//    while the memory is mapped. It is process-wide (not per env) because ArrayBuffer finalizers are not tied
//    to our env teardown order; a mutex makes that safe.
//  * munmap(buffer) detaches the ArrayBuffer first (every view over it then has length 0, so no JS can reach
//    the memory any more) and only then unmaps. While a doorbell poller or a DMA mapping pins it, munmap throws EBUSY.
//  * If the ArrayBuffer is collected (or its env torn down) without munmap(), the finalizer unmaps, unless a
//    poller still pins the mapping, in which case the last UnpinMapping() unmaps. Each mapping is unmapped
//    exactly once (the `unmapped` flag, under the mutex).
//  * The record itself is freed once the ArrayBuffer has been finalized and nothing pins it.
//  * A MAP_SHARED mapping of a regular file that can still shrink (not sealed with F_SEAL_SHRINK) is registered with
//    the SIGBUS guard (guard.h) from mmap() until just before munmap(2).
#include "memory.h"

#include "guard.h"

#include <fcntl.h>

#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

namespace vfiod {

struct Mapping {
  uint8_t* addr = nullptr;
  size_t length = 0;
  int prot = 0;
  unsigned pins = 0;       // doorbell pollers and DMA mappings (VFIO container or IOAS) using the memory
  bool unmapped = false;   // munmap(2) done
  bool finalized = false;  // the ArrayBuffer's finalizer ran: no JS object refers to the record any more
  bool held = false;       // mmap()/munmap() is in the middle of an N-API call that may run the finalizer
  int guard = kNoGuard;    // SIGBUS guard slot (guard.h) while mapped, for files that can shrink
};

namespace {

std::mutex g_mutex;
std::unordered_map<uintptr_t, Mapping*> g_live;  // still-mapped mappings by base address

constexpr size_t kMaxMemfdName = 249;  // MFD_NAME_MAX_LEN

size_t PageSize() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

// Caller holds g_mutex.
int UnmapLocked(Mapping* m) {
  if (m->unmapped) return 0;
  m->unmapped = true;
  g_live.erase(reinterpret_cast<uintptr_t>(m->addr));
  // Unguard first: once the range is unmapped another mmap may reuse it. Nothing touches the memory in between
  // (the ArrayBuffer is detached or collected, and no poller or DMA mapping pins it).
  GuardUnregister(m->guard);
  m->guard = kNoGuard;
  return ::munmap(m->addr, m->length) < 0 ? errno : 0;
}

// Caller holds g_mutex. Frees the record when nothing can reach it any more; unmaps first if needed.
void MaybeFreeLocked(Mapping* m) {
  if (!m->finalized || m->pins != 0 || m->held) return;
  UnmapLocked(m);
  delete m;
}

// Caller holds g_mutex. The live mapping whose memory `data`/`length` describe, or null.
Mapping* LookupLocked(void* data, size_t length) {
  if (data == nullptr) return nullptr;
  auto it = g_live.find(reinterpret_cast<uintptr_t>(data));
  if (it == g_live.end() || it->second->length != length) return nullptr;
  return it->second;
}

// The external ArrayBuffer's finalizer: runs on the env's thread when the buffer is collected, when the env is
// torn down, or (harmlessly) after munmap() detached it. Must not call N-API: the env may be half torn down.
void FinalizeMapping(napi_env /*env*/, void* /*data*/, void* hint) {
  auto* m = static_cast<Mapping*>(hint);
  std::lock_guard<std::mutex> lock(g_mutex);
  m->finalized = true;
  MaybeFreeLocked(m);  // unmaps now unless a poller pins it (then UnpinMapping will)
}

// Fetches data/length of an ArrayBuffer argument; `detached` is set for detached buffers.
bool GetArrayBuffer(Napi::Env env, const Napi::Value& value, const char* fn, void** data, size_t* length,
                    bool* detached) {
  if (!value.IsArrayBuffer()) {
    ThrowTypeError(env, std::string(fn) + ": expected an ArrayBuffer returned by mmap(), got " + Describe(value));
    return false;
  }
  *detached = false;
  if (napi_is_detached_arraybuffer(env, value, detached) != napi_ok) return false;
  if (*detached) {
    *data = nullptr;
    *length = 0;
    return true;
  }
  Napi::ArrayBuffer ab = value.As<Napi::ArrayBuffer>();
  *data = ab.Data();
  *length = ab.ByteLength();
  return true;
}

void ThrowNotMapped(Napi::Env env, const char* fn, const char* syscall) {
  ThrowErrnoMessage(env, EINVAL, syscall,
                    std::string(fn) + ": the ArrayBuffer is not a live mapping from mmap() (already unmapped?)");
}

// mmap(fd, offset, length, prot) -> ArrayBuffer
Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t offset, length, prot;
  if (!GetFd(info, 0, "mmap", &fd) || !GetInteger(info, 1, "mmap", "offset", 0, kMaxSafeInteger, &offset) ||
      !GetInteger(info, 2, "mmap", "length", 0, kMaxSafeInteger, &length) ||
      !GetInteger(info, 3, "mmap", "prot", 1, PROT_READ | PROT_WRITE, &prot)) {
    return Napi::Value();
  }
  std::string what = "fd " + std::to_string(fd) + ", offset " + std::to_string(offset) + ", length " +
                     std::to_string(length);
  // Shape errors are reported as the EINVAL the kernel would give, with a message saying what is wrong.
  if (length == 0) {
    ThrowErrnoMessage(env, EINVAL, "mmap", "mmap(" + what + "): length must be greater than 0");
    return Napi::Value();
  }
  if (static_cast<size_t>(offset) % PageSize() != 0) {
    ThrowErrnoMessage(env, EINVAL, "mmap",
                      "mmap(" + what + "): offset must be a multiple of the page size (" +
                          std::to_string(PageSize()) + ")");
    return Napi::Value();
  }
  // Touching a page past the end of a file raises SIGBUS, which would kill the process from plain JS code, so
  // refuse ranges past EOF for regular files (memfds included). Device fds (VFIO regions) report size 0 and are
  // checked by their driver instead. A file shrunk later by another process can still cause SIGBUS.
  // (If fstat fails, mmap below fails the same way and reports it.)
  struct stat st;
  bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  if (regular && offset + length > static_cast<int64_t>(st.st_size)) {
    ThrowErrnoMessage(env, EINVAL, "mmap",
                      "mmap(" + what + "): range ends past the end of the file (size " +
                          std::to_string(st.st_size) + ")");
    return Napi::Value();
  }
  // A regular file that may still shrink (whoever else holds it can ftruncate it) gets the SIGBUS guard; a memfd
  // sealed with F_SEAL_SHRINK never can. hugetlbfs files fault in huge pages, which the guard replaces whole.
  bool guarded = false;
  size_t granule = PageSize();
  if (regular) {
    int seals = fcntl(fd, F_GET_SEALS);
    guarded = seals < 0 || (seals & F_SEAL_SHRINK) == 0;
    struct statfs fs;
    if (guarded && fstatfs(fd, &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC && st.st_blksize > 0 &&
        (st.st_blksize & (st.st_blksize - 1)) == 0 && static_cast<size_t>(st.st_blksize) > granule) {
      granule = static_cast<size_t>(st.st_blksize);
    }
  }

  void* addr = ::mmap(nullptr, static_cast<size_t>(length), static_cast<int>(prot), MAP_SHARED, fd,
                      static_cast<off_t>(offset));
  if (addr == MAP_FAILED) {
    ThrowErrno(env, errno, "mmap", what);
    return Napi::Value();
  }
  auto* m = new Mapping();
  m->addr = static_cast<uint8_t*>(addr);
  m->length = static_cast<size_t>(length);
  m->prot = static_cast<int>(prot);
  m->held = true;
  int guardErr = 0;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (guarded) m->guard = GuardRegister(addr, m->length, m->prot, granule, &guardErr);
    if (!guarded || m->guard != kNoGuard) g_live[reinterpret_cast<uintptr_t>(addr)] = m;
  }
  if (guarded && m->guard == kNoGuard) {
    ::munmap(addr, m->length);
    delete m;
    ThrowErrnoMessage(env, guardErr, "mmap",
                      "mmap(" + what + "): cannot guard the mapping against the file shrinking (" +
                          (guardErr == ENOSPC ? std::string("too many guarded mappings") : ErrnoName(guardErr)) +
                          ")");
    return Napi::Value();
  }
  napi_value buffer = nullptr;
  napi_status status = napi_create_external_arraybuffer(env, addr, m->length, FinalizeMapping, m, &buffer);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    m->held = false;
    if (status != napi_ok) {
      // Node may or may not have invoked (or queued) the finalizer; the flags make both cases safe. If it
      // never runs, only the small record leaks, never the mapping.
      UnmapLocked(m);
      MaybeFreeLocked(m);
    }
  }
  if (status != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      // Typically Node's ERR_BUFFER_TOO_LARGE (mappings are limited to buffer.constants.MAX_LENGTH): keep the
      // error, add which mapping it was about.
      Napi::Error error = env.GetAndClearPendingException();
      Napi::Value message = error.Value().Get("message");
      if (message.IsString()) {
        error.Value().Set("message", "mmap(" + what + "): " + message.As<Napi::String>().Utf8Value());
      }
      error.ThrowAsJavaScriptException();
    } else {
      ThrowErrnoMessage(env, ENOMEM, "mmap", "mmap(" + what + "): could not create an ArrayBuffer over the mapping");
    }
    return Napi::Value();
  }
  return Napi::Value(env, buffer);
}

// munmap(buffer)
Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  void* data;
  size_t length;
  bool detached;
  if (!GetArrayBuffer(env, info[0], "munmap", &data, &length, &detached)) return Napi::Value();
  Mapping* m;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    m = detached ? nullptr : LookupLocked(data, length);
    if (m == nullptr || m->held) {
      ThrowNotMapped(env, "munmap", "munmap");
      return Napi::Value();
    }
    if (m->pins != 0) {
      ThrowErrnoMessage(env, EBUSY, "munmap",
                        "munmap: the mapping is in use by " + std::to_string(m->pins) +
                            " pin(s) (a doorbell poller or a VFIO/iommufd DMA mapping); close or unmap them first");
      return Napi::Value();
    }
    m->held = true;  // the detach below may run the finalizer synchronously: keep the record alive
  }
  // Detach before unmapping: afterwards every TypedArray/DataView over the buffer has length 0, so no JS can
  // touch the memory once it is gone.
  napi_status status = napi_detach_arraybuffer(env, info[0]);
  int err = 0;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    m->held = false;
    if (status == napi_ok) err = UnmapLocked(m);
    MaybeFreeLocked(m);
  }
  if (status != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) ThrowStateError(env, "munmap: the ArrayBuffer could not be detached; the mapping was kept");
    return Napi::Value();
  }
  if (err != 0) {
    ThrowErrno(env, err, "munmap", "length " + std::to_string(length));
    return Napi::Value();
  }
  return env.Undefined();
}

// isMapped(buffer) -> boolean
Napi::Value IsMapped(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  void* data;
  size_t length;
  bool detached;
  if (!GetArrayBuffer(env, info[0], "isMapped", &data, &length, &detached)) return Napi::Value();
  std::lock_guard<std::mutex> lock(g_mutex);
  Mapping* m = detached ? nullptr : LookupLocked(data, length);
  return Napi::Boolean::New(env, m != nullptr && !m->held);
}

// mappingFault(buffer) -> { count, offset } | null: whether the SIGBUS guard recovered faults in this mapping
// (the file shrank under it): how many, and the offset of the first lost page. Null for a mapping without faults,
// without a guard (sealed memfds, devices), and for anything that is not a live mapping (e.g. unmapped).
Napi::Value MappingFault(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  void* data;
  size_t length;
  bool detached;
  if (!GetArrayBuffer(env, info[0], "mappingFault", &data, &length, &detached)) return Napi::Value();
  GuardFaults faults;
  bool faulted = false;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    Mapping* m = detached ? nullptr : LookupLocked(data, length);
    faulted = m != nullptr && !m->held && GuardFaultsOf(m->guard, &faults);
  }
  if (!faulted) return env.Null();
  Napi::Object result = Napi::Object::New(env);
  result.Set("count", Napi::Number::New(env, static_cast<double>(faults.count)));
  result.Set("offset", Napi::Number::New(env, static_cast<double>(faults.firstOffset)));
  return result;
}

// memoryFaultCount() -> number: faults the SIGBUS guard recovered in any mapping of the process (never decreases).
// Cheap: callers poll it after touching guest memory and look at their mappings only when it moved.
Napi::Value MemoryFaultCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(GuardFaultTotal()));
}

// fileSeals(fd) -> number | null: the F_GET_SEALS bits, or null for a file that does not support seals.
Napi::Value FileSeals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "fileSeals", &fd)) return Napi::Value();
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    if (errno == EINVAL) return env.Null();
    ThrowErrno(env, errno, "fcntl", "fd " + std::to_string(fd) + ", F_GET_SEALS");
    return Napi::Value();
  }
  return Napi::Number::New(env, seals);
}

// memfdCreate(name, size) -> fd
// memfdCreate(name, size, sealSize = false) -> fd. With sealSize the file's size is sealed (no shrink, no grow,
// no further seals): an fd handed to an untrusted peer cannot be truncated under our own mappings (SIGBUS).
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  int64_t size;
  if (!GetString(info, 0, "memfdCreate", "name", kMaxMemfdName, &name) ||
      !GetInteger(info, 1, "memfdCreate", "size", 0, kMaxSafeInteger, &size)) {
    return Napi::Value();
  }
  bool sealSize = false;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsBoolean()) {
      ThrowTypeError(env, "memfdCreate: \"sealSize\" must be a boolean, got " + Describe(info[2]));
      return Napi::Value();
    }
    sealSize = info[2].As<Napi::Boolean>().Value();
  }
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | (sealSize ? MFD_ALLOW_SEALING : 0));
  if (fd < 0) {
    ThrowErrno(env, errno, "memfd_create", name);
    return Napi::Value();
  }
  if (ftruncate(fd, static_cast<off_t>(size)) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "ftruncate", "memfd '" + name + "', size " + std::to_string(size));
    return Napi::Value();
  }
  if (sealSize && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "fcntl", "memfd '" + name + "': F_ADD_SEALS");
    return Napi::Value();
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

bool PinMapping(Napi::Env env, const Napi::Value& buffer, const char* fn, PinnedMapping* out) {
  void* data;
  size_t length;
  bool detached;
  if (!GetArrayBuffer(env, buffer, fn, &data, &length, &detached)) return false;
  std::lock_guard<std::mutex> lock(g_mutex);
  Mapping* m = detached ? nullptr : LookupLocked(data, length);
  if (m == nullptr || m->held) {
    ThrowNotMapped(env, fn, "mmap");
    return false;
  }
  m->pins++;
  out->mapping = m;
  out->addr = m->addr;
  out->length = m->length;
  out->prot = m->prot;
  return true;
}

void UnpinMapping(Mapping* m) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (m->pins > 0) m->pins--;
  MaybeFreeLocked(m);
}

bool OverlapsMapping(const void* addr, size_t length) {
  auto begin = reinterpret_cast<uintptr_t>(addr);
  std::lock_guard<std::mutex> lock(g_mutex);
  for (const auto& [base, m] : g_live) {
    if (begin < base + m->length && base < begin + length) return true;
  }
  return false;
}


// allocateZeroed(length, hugePages) -> ArrayBuffer: private anonymous memory (zeroed by the kernel, committed page by
// page as it is first written), freed when the ArrayBuffer is collected. With hugePages the range is 2 MiB-aligned
// and marked MADV_HUGEPAGE, so the kernel may back it with transparent huge pages (THP `madvise` or `always`): a
// random 4 KiB access over a large store then rarely misses the TLB. Such buffers are kept in their own registry
// (not g_live: munmap() refuses them) so that discard() can tell them from any other memory.
constexpr size_t kHugePage = 2 * 1024 * 1024;
// The largest ArrayBuffer every supported Node accepts (Node 20: buffer.constants.MAX_LENGTH). Checked before mmap:
// past it the engine refuses the buffer (and frees it through the finalizer at once).
constexpr int64_t kMaxAnonymousBytes = int64_t{1} << 32;

struct AnonymousBuffer {
  uint8_t* base = nullptr;
  size_t size = 0;    // bytes mapped (length rounded up to pages)
  size_t length = 0;  // the ArrayBuffer's length
  bool finalized = false;
  bool creating = true;  // AllocateZeroed is still inside napi_create_external_arraybuffer
};

std::unordered_map<uintptr_t, AnonymousBuffer*> g_anonymous;  // allocateZeroed buffers by base address

// Caller holds g_mutex. Unregisters and unmaps the buffer's memory (once).
void ReleaseAnonymousLocked(AnonymousBuffer* buffer) {
  if (buffer->finalized) return;
  buffer->finalized = true;
  auto it = g_anonymous.find(reinterpret_cast<uintptr_t>(buffer->base));
  if (it != g_anonymous.end() && it->second == buffer) g_anonymous.erase(it);
  ::munmap(buffer->base, buffer->size);
}

// May run while AllocateZeroed is still creating the buffer (when the engine refuses it); the record is then freed
// there, else here.
void FinalizeAnonymous(napi_env /*env*/, void* /*data*/, void* hint) {
  auto* buffer = static_cast<AnonymousBuffer*>(hint);
  std::lock_guard<std::mutex> lock(g_mutex);
  ReleaseAnonymousLocked(buffer);
  if (!buffer->creating) delete buffer;
}

Napi::Value AllocateZeroed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t length;
  if (!GetInteger(info, 0, "allocateZeroed", "length", 1, kMaxAnonymousBytes, &length)) return Napi::Value();
  bool hugePages = info.Length() > 1 && info[1].ToBoolean().Value();
  size_t size = (static_cast<size_t>(length) + PageSize() - 1) & ~(PageSize() - 1);
  size_t reserve = hugePages ? size + kHugePage : size;
  void* raw = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    ThrowErrno(env, errno, "mmap", "allocateZeroed(" + std::to_string(length) + " bytes)");
    return Napi::Value();
  }
  auto* base = static_cast<uint8_t*>(raw);
  if (hugePages) {
    // Keep a 2 MiB-aligned range of `size` bytes of the reservation.
    uintptr_t start = reinterpret_cast<uintptr_t>(base);
    uintptr_t aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
    size_t head = aligned - start;
    size_t tail = reserve - head - size;
    if (head > 0) ::munmap(base, head);
    if (tail > 0) ::munmap(reinterpret_cast<uint8_t*>(aligned) + size, tail);
    base = reinterpret_cast<uint8_t*>(aligned);
    // Advice only: where THP is off the memory is just as good, in 4 KiB pages.
    ::madvise(base, size, MADV_HUGEPAGE);
  }
  auto* record = new AnonymousBuffer{base, size, static_cast<size_t>(length), false, true};
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_anonymous[reinterpret_cast<uintptr_t>(base)] = record;
  }
  napi_value buffer;
  napi_status status = napi_create_external_arraybuffer(env, base, record->length, FinalizeAnonymous, record, &buffer);
  bool finalized;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    record->creating = false;
    finalized = record->finalized;
    if (status == napi_ok && !finalized) return Napi::Value(env, buffer);
    if (!finalized) {
      // Refused without running the finalizer. Should it still run later, it unmaps and frees the record; until then
      // the memory stays mapped (a leak, never a second unmap). discard() no longer accepts it.
      auto it = g_anonymous.find(reinterpret_cast<uintptr_t>(base));
      if (it != g_anonymous.end() && it->second == record) g_anonymous.erase(it);
    }
  }
  // Refused, and the finalizer already ran (Node frees a buffer it cannot create at once): only the record is left.
  if (finalized) delete record;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) ThrowErrnoMessage(env, ENOMEM, "mmap", "allocateZeroed: could not create an ArrayBuffer over the memory");
  return Napi::Value();
}

// discard(buffer, offset, length): zeroes [offset, offset + length) of an allocateZeroed buffer and gives the whole
// pages inside it back to the kernel (MADV_DONTNEED: they read as zeroes and cost nothing until written again); the
// partial pages at either end are zero-filled.
Napi::Value Discard(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "discard";
  void* data = nullptr;
  size_t length = 0;
  bool detached = false;
  int64_t offset, count;
  if (!GetArrayBuffer(env, info[0], fn, &data, &length, &detached) ||
      !GetInteger(info, 1, fn, "offset", 0, kMaxSafeInteger, &offset) ||
      !GetInteger(info, 2, fn, "length", 0, kMaxSafeInteger, &count)) {
    return Napi::Value();
  }
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = detached ? g_anonymous.end() : g_anonymous.find(reinterpret_cast<uintptr_t>(data));
    if (it == g_anonymous.end() || it->second->length != length) {
      ThrowTypeError(env, std::string(fn) + ": the ArrayBuffer is not one allocateZeroed() returned");
      return Napi::Value();
    }
  }
  if (static_cast<uint64_t>(offset) + static_cast<uint64_t>(count) > length) {
    ThrowRangeError(env, std::string(fn) + ": " + std::to_string(count) + " bytes at " + std::to_string(offset) +
                             " are outside the buffer (" + std::to_string(length) + " bytes)");
    return Napi::Value();
  }
  auto* bytes = static_cast<uint8_t*>(data);
  size_t start = static_cast<size_t>(offset);
  size_t end = start + static_cast<size_t>(count);
  size_t page = PageSize();
  size_t firstWhole = (start + page - 1) & ~(page - 1);
  size_t endWhole = end & ~(page - 1);
  if (firstWhole < endWhole) {
    std::memset(bytes + start, 0, firstWhole - start);
    if (::madvise(bytes + firstWhole, endWhole - firstWhole, MADV_DONTNEED) < 0) {
      std::memset(bytes + firstWhole, 0, endWhole - firstWhole);  // cannot fail for private anonymous memory
    }
    std::memset(bytes + endWhole, 0, end - endWhole);
  } else {
    std::memset(bytes + start, 0, end - start);
  }
  return Napi::Value();
}

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("allocateZeroed", Napi::Function::New(env, AllocateZeroed, "allocateZeroed"));
  exports.Set("discard", Napi::Function::New(env, Discard, "discard"));
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("isMapped", Napi::Function::New(env, IsMapped, "isMapped"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("mappingFault", Napi::Function::New(env, MappingFault, "mappingFault"));
  exports.Set("memoryFaultCount", Napi::Function::New(env, MemoryFaultCount, "memoryFaultCount"));
  exports.Set("fileSeals", Napi::Function::New(env, FileSeals, "fileSeals"));
}

}  // namespace vfiod
