// Shared helpers for the vfiod addon: per-environment state, argument validation and error construction.
//
// Conventions used by every entry point:
//  * Arguments are validated before any syscall. A bad argument throws a TypeError (code ERR_INVALID_ARG_TYPE)
//    or RangeError (code ERR_OUT_OF_RANGE / ERR_INVALID_ARG_VALUE), like Node's own APIs.
//  * A failed syscall throws an Error with `errno` (negative, as in Node's SystemError), `code` ('EBADF'),
//    `syscall` ('recvmsg') and a message such as "recvmsg(fd 7): Bad file descriptor".
//  * C++ exceptions are disabled in node-addon-api, so helpers return false / an empty value after scheduling
//    the JS exception, and callers return immediately.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <unordered_set>

namespace vfiod {

// Something that owns a libuv handle, a thread or N-API references and must be shut down before its
// environment (main thread or worker) goes away. Implementations register themselves in EnvState::resources.
class EnvResource {
 public:
  virtual ~EnvResource() = default;
  // Called from the env cleanup hook while N-API calls are still allowed. Must stop threads, drop references
  // and uv_close() handles (the close callbacks free the memory later; they must not touch N-API).
  virtual void ShutdownForEnvCleanup() = 0;
};

// Per-environment state (one per main thread / worker that loads the addon). Never shared across envs.
struct EnvState {
  napi_env env = nullptr;
  Napi::FunctionReference watcherClass;
  Napi::FunctionReference pollerClass;
  Napi::FunctionReference loopTurnClass;
  std::unordered_set<EnvResource*> resources;
  // fds with an open watcher in this env: libuv allows one poll handle per fd and per loop, and closing an
  // fd while it is being polled is undefined behaviour, so close() refuses those fds.
  std::unordered_set<int> watchedFds;
};

EnvState* GetEnvState(Napi::Env env);

// ---- errors ----

// Symbolic errno name ("EBADF"), never null.
const char* ErrnoName(int err);

// Throws a system error. `context` goes inside the parentheses: "recvmsg(fd 7): Bad file descriptor".
void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& context);
// Same, for conditions detected by the addon itself (e.g. EBUSY from munmap while a poller uses the mapping).
void ThrowErrnoMessage(Napi::Env env, int err, const char* syscall, const std::string& message);
void ThrowTypeError(Napi::Env env, const std::string& message);                    // ERR_INVALID_ARG_TYPE
void ThrowRangeError(Napi::Env env, const std::string& message);                   // ERR_OUT_OF_RANGE
void ThrowInvalidValue(Napi::Env env, const std::string& message);                 // ERR_INVALID_ARG_VALUE
void ThrowStateError(Napi::Env env, const std::string& message);                   // ERR_INVALID_STATE

// Re-raises a pending JS exception (thrown by a callback we invoked from a libuv callback) as an uncaught
// exception, so that it reaches process.on('uncaughtException') instead of lingering in the N-API env.
void ReportPendingException(Napi::Env env);

// Calls `callback` with `recv` as `this` from a libuv callback (not from JS), with proper async context.
void CallFromLoop(Napi::Env env, napi_async_context context, Napi::Object recv, Napi::Function callback,
                  size_t argc, const napi_value* argv);

// ---- argument validation (each returns false after throwing) ----

constexpr int64_t kMaxSafeInteger = 9007199254740991LL;  // Number.MAX_SAFE_INTEGER

// Number.isInteger(value) && min <= value <= max. `name` is used in the message ("fds[3]", "mode").
bool CheckInteger(Napi::Env env, const Napi::Value& value, const char* fn, const std::string& name, int64_t min,
                  int64_t max, int64_t* out);
bool GetInteger(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name, int64_t min,
                int64_t max, int64_t* out);
// A non-negative int.
bool GetFd(const Napi::CallbackInfo& info, size_t index, const char* fn, int* out);
bool GetBool(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name, bool* out);
// A string without NUL bytes, UTF-8 encoded, of at most maxBytes bytes.
bool GetString(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name, size_t maxBytes,
               std::string* out);
// A Uint8Array (Buffer included); data may be null when the length is 0.
bool GetUint8Array(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name,
                   uint8_t** data, size_t* length);
bool GetFunction(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name,
                 Napi::Function* out);

// "1.5", "a string", "undefined"... for error messages.
std::string Describe(const Napi::Value& value);

// ---- module parts (each adds its functions to exports) ----
void InitSocket(Napi::Env env, Napi::Object exports);
void InitWatcher(Napi::Env env, Napi::Object exports, EnvState* state);
void InitMemory(Napi::Env env, Napi::Object exports);
void InitEventfd(Napi::Env env, Napi::Object exports);
void InitPoller(Napi::Env env, Napi::Object exports, EnvState* state);
void InitFile(Napi::Env env, Napi::Object exports);
void InitCrc32c(Napi::Env env, Napi::Object exports);
void InitCopy(Napi::Env env, Napi::Object exports);
void InitVfio(Napi::Env env, Napi::Object exports);
void InitLoop(Napi::Env env, Napi::Object exports, EnvState* state);

}  // namespace vfiod
