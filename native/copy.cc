// copyRuns: a list of byte copies between Uint8Arrays in one call, with the next runs' sources prefetched while
// the current one is copied.
//
// Why native: a 4 KiB read from a memory namespace copies a page that is cold in the cache. Copied one command at a
// time from JS, the fetch of each source waits for the per-command work before it; here a pass's copies are issued
// back to back, and the prefetch of the next sources overlaps the copy of the current one. No policy: the caller
// decides what to copy; this only checks that every run lies inside its arrays.
//
// copyRuns(arrays, runs, count): `arrays` is an Array of Uint8Arrays; `runs` a Uint32Array of `count` records of
// kRunWords words (source array index, source index, target array index, target index, length, flags). Every run is
// checked first (array indexes, ranges inside the arrays, computed in 64 bits), so a bad run throws a RangeError
// before anything is copied. Overlapping runs within one array are copied as memmove does.
//
// Flag kStreamTarget: the caller does not expect the target to be read soon (a Write's data going into a memory
// namespace), so it is written with non-temporal stores. An ordinary store into a line that is not cached first
// reads the line from memory (read for ownership), which for a 4 KiB copy into a cold page doubles the memory
// traffic; a streaming store does not.
#include "common.h"

#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace vfiod {
namespace {

constexpr uint32_t kRunWords = 6;
constexpr uint32_t kStreamTarget = 1;
// Runs whose sources are prefetched ahead of the one being copied.
constexpr uint32_t kPrefetchRuns = 2;
// Of each prefetched source, its first cache lines only: they start the hardware prefetcher on the page, which
// fetches the rest. Prefetching a whole 4 KiB page stalls the copy instead: a software prefetch that misses takes a
// line fill buffer, and with all of them busy the next prefetch waits (measured: 64 lines cost ~80 ns per I/O more
// than 4 in bench/micro/hot-path.ts).
constexpr size_t kPrefetchBytes = 256;
constexpr size_t kCacheLine = 64;

struct View {
  uint8_t* data;
  size_t length;
  bool resolved;
};

// Copies with non-temporal stores where the CPU has them (x86-64: SSE2 is part of the baseline), else memmove.
// Source and target must not overlap.
void CopyStreaming(uint8_t* target, const uint8_t* source, size_t length) {
#if defined(__x86_64__)
  size_t head = (16 - (reinterpret_cast<uintptr_t>(target) & 15)) & 15;
  if (head > length) head = length;
  std::memcpy(target, source, head);
  target += head;
  source += head;
  length -= head;
  size_t body = length & ~static_cast<size_t>(63);
  for (size_t offset = 0; offset < body; offset += 64) {
    const auto* from = reinterpret_cast<const __m128i*>(source + offset);
    auto* to = reinterpret_cast<__m128i*>(target + offset);
    __m128i a = _mm_loadu_si128(from), b = _mm_loadu_si128(from + 1);
    __m128i c = _mm_loadu_si128(from + 2), d = _mm_loadu_si128(from + 3);
    _mm_stream_si128(to, a);
    _mm_stream_si128(to + 1, b);
    _mm_stream_si128(to + 2, c);
    _mm_stream_si128(to + 3, d);
  }
  std::memcpy(target + body, source + body, length - body);
#else
  std::memmove(target, source, length);
#endif
}

void PrefetchSource(const uint8_t* source, size_t length) {
  size_t bytes = length < kPrefetchBytes ? length : kPrefetchBytes;
  for (size_t offset = 0; offset < bytes; offset += kCacheLine) __builtin_prefetch(source + offset, 0, 3);
}

// Raw N-API calls in the per-call path (one napi_get_element and one napi_get_typedarray_info per array named):
// this call is made once per batch of I/O commands, and each wrapper call costs tens of nanoseconds.
bool GetView(napi_env env, napi_value value, napi_typedarray_type want, void** data, size_t* length) {
  bool isTypedArray = false;
  if (napi_is_typedarray(env, value, &isTypedArray) != napi_ok || !isTypedArray) return false;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, value, &type, length, data, nullptr, nullptr) != napi_ok) return false;
  return type == want;
}

Napi::Value CopyRuns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "copyRuns";
  bool isArray = false;
  if (napi_is_array(env, info[0], &isArray) != napi_ok || !isArray) {
    ThrowTypeError(env, std::string(fn) + ": \"arrays\" must be an Array of Uint8Arrays, got " + Describe(info[0]));
    return Napi::Value();
  }
  void* runsData = nullptr;
  size_t runsLength = 0;
  if (!GetView(env, info[1], napi_uint32_array, &runsData, &runsLength)) {
    ThrowTypeError(env, std::string(fn) + ": \"runs\" must be a Uint32Array, got " + Describe(info[1]));
    return Napi::Value();
  }
  int64_t count;
  if (!GetInteger(info, 2, fn, "count", 0, static_cast<int64_t>(runsLength / kRunWords), &count)) return Napi::Value();
  const uint32_t* runs = static_cast<const uint32_t*>(runsData);

  // Only the arrays a run names are looked up (the caller may pass a longer list), each once per call.
  napi_value list = info[0];
  uint32_t arrayCount = 0;
  napi_get_array_length(env, list, &arrayCount);
  // Reused between calls on this thread: no allocation per call once it has grown.
  thread_local std::vector<View> views;
  views.assign(arrayCount, View{nullptr, 0, false});
  auto resolve = [&](uint32_t index) -> bool {
    View& view = views[index];
    if (view.resolved) return true;
    napi_value value = nullptr;
    void* data = nullptr;
    size_t length = 0;
    if (napi_get_element(env, list, index, &value) != napi_ok || !GetView(env, value, napi_uint8_array, &data, &length)) {
      ThrowTypeError(env, std::string(fn) + ": \"arrays[" + std::to_string(index) + "]\" must be a Uint8Array, got " +
                              (value != nullptr ? Describe(Napi::Value(env, value)) : std::string("nothing")));
      return false;
    }
    view = View{static_cast<uint8_t*>(data), length, true};
    return true;
  };

  for (int64_t run = 0; run < count; run++) {
    const uint32_t* r = runs + run * kRunWords;
    uint32_t source = r[0], target = r[2];
    bool named = source < arrayCount && target < arrayCount;
    if (named && (!resolve(source) || !resolve(target))) return Napi::Value();
    uint64_t sourceEnd = static_cast<uint64_t>(r[1]) + r[4];
    uint64_t targetEnd = static_cast<uint64_t>(r[3]) + r[4];
    if (!named || sourceEnd > views[source].length || targetEnd > views[target].length) {
      ThrowRangeError(env, std::string(fn) + ": run " + std::to_string(run) + " (" + std::to_string(r[4]) +
                               " bytes from arrays[" + std::to_string(source) + "] at " + std::to_string(r[1]) +
                               " to arrays[" + std::to_string(target) + "] at " + std::to_string(r[3]) +
                               ") is outside its arrays (" + std::to_string(arrayCount) + " given)");
      return Napi::Value();
    }
  }

  bool streamed = false;
  for (int64_t run = 0; run < count && run < kPrefetchRuns; run++) {
    const uint32_t* r = runs + run * kRunWords;
    PrefetchSource(views[r[0]].data + r[1], r[4]);
  }
  for (int64_t run = 0; run < count; run++) {
    if (run + kPrefetchRuns < count) {
      const uint32_t* ahead = runs + (run + kPrefetchRuns) * kRunWords;
      PrefetchSource(views[ahead[0]].data + ahead[1], ahead[4]);
    }
    const uint32_t* r = runs + run * kRunWords;
    if (r[4] == 0) continue;
    uint8_t* target = views[r[2]].data + r[3];
    const uint8_t* source = views[r[0]].data + r[1];
    bool disjoint = target + r[4] <= source || source + r[4] <= target;
    if ((r[5] & kStreamTarget) != 0 && disjoint) {
      CopyStreaming(target, source, r[4]);
      streamed = true;
    } else {
      std::memmove(target, source, r[4]);
    }
  }
#if defined(__x86_64__)
  // Streaming stores are weakly ordered: make them visible before anything the caller stores next.
  if (streamed) _mm_sfence();
#endif
  return Napi::Value();
}


}  // namespace

void InitCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("copyRuns", Napi::Function::New(env, CopyRuns, "copyRuns"));
  exports.Set("copyRunWords", Napi::Number::New(env, kRunWords));
  exports.Set("copyStreamTarget", Napi::Number::New(env, kStreamTarget));
}

}  // namespace vfiod
