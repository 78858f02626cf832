// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the NVMe/TCP header and data digest. Computed over
// Uint8Array views (guest memory, socket chunks) in place, one call per PDU segment, so digests cost no copy.
// x86-64 uses the SSE4.2 crc32 instruction when the CPU has it; elsewhere (and for cross-checking in tests) a
// slicing-by-8 table implementation.
//
// crc32c(data, seed = 0): `data` is a Uint8Array or an array of them (processed in order as one stream); `seed`
// is the result of a previous call, so a stream can be digested in pieces. Returns the finished CRC (unsigned).
#include "common.h"

#include <cstdint>
#include <cstring>
#include <mutex>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace vfiod {
namespace {

uint32_t gTable[8][256];

void BuildTable() {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    gTable[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = gTable[0][i];
    for (int t = 1; t < 8; t++) {
      c = gTable[0][c & 0xFF] ^ (c >> 8);
      gTable[t][i] = c;
    }
  }
}

// `crc` is the running (inverted) register value.
uint32_t UpdateTable(uint32_t crc, const uint8_t* p, size_t n) {
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    crc = gTable[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    n--;
  }
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);  // little endian assumed (x86-64, aarch64 LE)
    uint32_t lo = static_cast<uint32_t>(word) ^ crc;
    uint32_t hi = static_cast<uint32_t>(word >> 32);
    crc = gTable[7][lo & 0xFF] ^ gTable[6][(lo >> 8) & 0xFF] ^ gTable[5][(lo >> 16) & 0xFF] ^ gTable[4][lo >> 24] ^
          gTable[3][hi & 0xFF] ^ gTable[2][(hi >> 8) & 0xFF] ^ gTable[1][(hi >> 16) & 0xFF] ^ gTable[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) crc = gTable[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t UpdateSse42(uint32_t crc, const uint8_t* p, size_t n) {
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    crc = _mm_crc32_u8(crc, *p++);
    n--;
  }
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = _mm_crc32_u64(c, word);
    p += 8;
    n -= 8;
  }
  crc = static_cast<uint32_t>(c);
  while (n-- > 0) crc = _mm_crc32_u8(crc, *p++);
  return crc;
}
#endif

using UpdateFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

UpdateFn PickHardware() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) return UpdateSse42;
#endif
  return UpdateTable;
}

UpdateFn gHardware = UpdateTable;

bool AddView(const Napi::Env& env, const Napi::Value& value, const char* fn, const std::string& name, UpdateFn update,
             uint32_t* crc) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowTypeError(env, std::string(fn) + ": \"" + name + "\" must be a Uint8Array, got " + Describe(value));
    return false;
  }
  Napi::Uint8Array array = value.As<Napi::Uint8Array>();
  size_t length = array.ElementLength();
  if (length > 0) *crc = update(*crc, array.Data(), length);
  return true;
}

Napi::Value Compute(const Napi::CallbackInfo& info, const char* fn, UpdateFn update) {
  Napi::Env env = info.Env();
  uint32_t seed = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    int64_t v;
    if (!GetInteger(info, 1, fn, "seed", 0, 0xFFFFFFFFLL, &v)) return Napi::Value();
    seed = static_cast<uint32_t>(v);
  }
  uint32_t crc = ~seed;
  Napi::Value data = info[0];
  if (data.IsArray()) {
    Napi::Array views = data.As<Napi::Array>();
    uint32_t count = views.Length();
    for (uint32_t i = 0; i < count; i++) {
      if (!AddView(env, views.Get(i), fn, "data[" + std::to_string(i) + "]", update, &crc)) return Napi::Value();
    }
  } else if (!AddView(env, data, fn, "data", update, &crc)) {
    return Napi::Value();
  }
  return Napi::Number::New(env, static_cast<double>(~crc));
}

Napi::Value Crc32c(const Napi::CallbackInfo& info) { return Compute(info, "crc32c", gHardware); }
Napi::Value Crc32cPortable(const Napi::CallbackInfo& info) { return Compute(info, "crc32cPortable", UpdateTable); }

}  // namespace

void InitCrc32c(Napi::Env env, Napi::Object exports) {
  // Process-wide and written once, even when several environments (workers) load the addon at the same time.
  static std::once_flag once;
  std::call_once(once, [] {
    BuildTable();
    gHardware = PickHardware();
  });
  exports.Set("crc32c", Napi::Function::New(env, Crc32c, "crc32c"));
  exports.Set("crc32cPortable", Napi::Function::New(env, Crc32cPortable, "crc32cPortable"));
  exports.Set("crc32cHardware", Napi::Boolean::New(env, gHardware != UpdateTable));
}

}  // namespace vfiod
