// Module initialisation, per-environment state and the shared error / argument helpers.
//
// The module is context-aware (N-API modules always are): Init runs once per environment (main thread and each
// worker_threads Worker). Everything that refers to JS objects or to a libuv loop lives in that env's EnvState;
// the only process-wide state is the registry of mappings in memory.cc, which is mutex-protected and holds no
// JS handles.
#include "common.h"

#include <dlfcn.h>
#include <uv.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

namespace vfiod {

// ---------------------------------------------------------------------------------------------------------------
// Environment state and teardown

EnvState* GetEnvState(Napi::Env env) { return env.GetInstanceData<EnvState>(); }

// Runs when the environment is torn down (worker exit, or main thread exit). Registered at module init, i.e.
// after N-API's own per-env teardown hook, so it runs before N-API finalizes the remaining wrapped objects: at
// this point references can still be deleted and handles closed.
static void EnvCleanupHook(void* arg) {
  auto* state = static_cast<EnvState*>(arg);
  Napi::Env env(state->env);
  Napi::HandleScope scope(env);
  // Shutdown removes the resource from the set, so iterate over a copy.
  std::vector<EnvResource*> resources(state->resources.begin(), state->resources.end());
  for (EnvResource* resource : resources) resource->ShutdownForEnvCleanup();
  state->resources.clear();
  state->watcherClass.Reset();
  state->pollerClass.Reset();
  state->loopTurnClass.Reset();
  napi_set_instance_data(state->env, nullptr, nullptr, nullptr);
  delete state;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

const char* ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* name = strerrorname_np(err)) return name;
#endif
  // libuv knows the common POSIX names on every platform; it returns "Unknown system error" for others.
  return uv_err_name(-err);
}

static std::string ErrnoText(int err) {
  char buf[128];
  // GNU strerror_r (g++ defines _GNU_SOURCE): thread-safe, unlike strerror, which matters with Workers.
  return std::string(strerror_r(err, buf, sizeof buf));
}

void ThrowErrnoMessage(Napi::Env env, int err, const char* syscall, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  obj.Set("errno", Napi::Number::New(env, -err));  // Node convention: util.getSystemErrorName(err.errno) works
  obj.Set("code", Napi::String::New(env, ErrnoName(err)));
  obj.Set("syscall", Napi::String::New(env, syscall));
  error.ThrowAsJavaScriptException();
}

void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& context) {
  ThrowErrnoMessage(env, err, syscall, std::string(syscall) + "(" + context + "): " + ErrnoText(err));
}

static void ThrowWithCode(Napi::Error error, const char* code) {
  error.Value().Set("code", Napi::String::New(error.Env(), code));
  error.ThrowAsJavaScriptException();
}

void ThrowTypeError(Napi::Env env, const std::string& message) {
  ThrowWithCode(Napi::TypeError::New(env, message), "ERR_INVALID_ARG_TYPE");
}
void ThrowRangeError(Napi::Env env, const std::string& message) {
  ThrowWithCode(Napi::RangeError::New(env, message), "ERR_OUT_OF_RANGE");
}
void ThrowInvalidValue(Napi::Env env, const std::string& message) {
  ThrowWithCode(Napi::TypeError::New(env, message), "ERR_INVALID_ARG_VALUE");
}
void ThrowStateError(Napi::Env env, const std::string& message) {
  ThrowWithCode(Napi::Error::New(env, message), "ERR_INVALID_STATE");
}

void ReportPendingException(Napi::Env env) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
  napi_value error;
  if (napi_get_and_clear_last_exception(env, &error) != napi_ok) return;
  napi_fatal_exception(env, error);
}

void CallFromLoop(Napi::Env env, napi_async_context context, Napi::Object recv, Napi::Function callback,
                  size_t argc, const napi_value* argv) {
  napi_value result;
  // napi_make_callback (rather than napi_call_function) sets up the async context and runs the microtask /
  // nextTick queues afterwards, like any other callback coming from the event loop.
  if (napi_make_callback(env, context, recv, callback, argc, argv, &result) != napi_ok) {
    ReportPendingException(env);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Argument validation

std::string Describe(const Napi::Value& value) {
  switch (value.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return value.As<Napi::Boolean>().Value() ? "true" : "false";
    case napi_number: {
      Napi::String s = value.ToString();  // JS formatting: 1.5, NaN, -Infinity, 1e+21
      return s.IsEmpty() ? "a number" : s.Utf8Value();
    }
    case napi_string: {
      std::string s = value.As<Napi::String>().Utf8Value();
      if (s.size() > 40) s = s.substr(0, 40) + "...";
      return "string '" + s + "'";
    }
    case napi_symbol: return "a symbol";
    case napi_function: return "a function";
    case napi_bigint: return "a bigint";
    case napi_external: return "an external";
    case napi_object:
      if (value.IsArray()) return "an array";
      if (value.IsTypedArray()) return "a typed array";
      if (value.IsArrayBuffer()) return "an ArrayBuffer";
      return "an object";
  }
  return "a value";
}

bool CheckInteger(Napi::Env env, const Napi::Value& value, const char* fn, const std::string& name, int64_t min,
                  int64_t max, int64_t* out) {
  if (!value.IsNumber()) {
    ThrowTypeError(env, std::string(fn) + ": \"" + name + "\" must be an integer, got " + Describe(value));
    return false;
  }
  double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < static_cast<double>(min) || d > static_cast<double>(max)) {
    ThrowRangeError(env, std::string(fn) + ": \"" + name + "\" must be an integer in [" + std::to_string(min) +
                             ", " + std::to_string(max) + "], got " + Describe(value));
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

bool GetInteger(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name, int64_t min,
                int64_t max, int64_t* out) {
  return CheckInteger(info.Env(), info[index], fn, name, min, max, out);
}

bool GetFd(const Napi::CallbackInfo& info, size_t index, const char* fn, int* out) {
  int64_t v;
  if (!CheckInteger(info.Env(), info[index], fn, "fd", 0, INT_MAX, &v)) return false;
  *out = static_cast<int>(v);
  return true;
}

bool GetBool(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name, bool* out) {
  Napi::Value value = info[index];
  if (!value.IsBoolean()) {
    ThrowTypeError(info.Env(), std::string(fn) + ": \"" + name + "\" must be a boolean, got " + Describe(value));
    return false;
  }
  *out = value.As<Napi::Boolean>().Value();
  return true;
}

bool GetString(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name, size_t maxBytes,
               std::string* out) {
  Napi::Value value = info[index];
  if (!value.IsString()) {
    ThrowTypeError(info.Env(), std::string(fn) + ": \"" + name + "\" must be a string, got " + Describe(value));
    return false;
  }
  std::string s = value.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) {
    ThrowInvalidValue(info.Env(), std::string(fn) + ": \"" + name + "\" must not contain NUL characters");
    return false;
  }
  if (s.size() > maxBytes) {
    ThrowRangeError(info.Env(), std::string(fn) + ": \"" + name + "\" is " + std::to_string(s.size()) +
                                    " bytes long (UTF-8); at most " + std::to_string(maxBytes) + " are allowed");
    return false;
  }
  *out = std::move(s);
  return true;
}

bool GetUint8Array(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name,
                   uint8_t** data, size_t* length) {
  Napi::Value value = info[index];
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowTypeError(info.Env(),
                   std::string(fn) + ": \"" + name + "\" must be a Uint8Array, got " + Describe(value));
    return false;
  }
  Napi::Uint8Array array = value.As<Napi::Uint8Array>();
  *length = array.ElementLength();
  *data = *length ? array.Data() : nullptr;
  return true;
}

bool GetFunction(const Napi::CallbackInfo& info, size_t index, const char* fn, const char* name,
                 Napi::Function* out) {
  Napi::Value value = info[index];
  if (!value.IsFunction()) {
    ThrowTypeError(info.Env(), std::string(fn) + ": \"" + name + "\" must be a function, got " + Describe(value));
    return false;
  }
  *out = value.As<Napi::Function>();
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Module init

// Node unloads (dlclose) an addon when the last environment that loaded it goes away, e.g. when the only Worker
// using it exits. But the uv_close callbacks of our handles run in the worker's final loop turns, and ArrayBuffer
// finalizers may run late as well: both are code (and globals) of this library. Re-opening ourselves with
// RTLD_NODELETE keeps the library mapped for the life of the process, which makes those late calls safe.
static void PinLibraryInMemory() {
  static std::once_flag once;
  std::call_once(once, [] {
    Dl_info self;
    if (dladdr(reinterpret_cast<void*>(&PinLibraryInMemory), &self) != 0 && self.dli_fname != nullptr) {
      // The handle is deliberately never closed.
      dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    }
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  PinLibraryInMemory();
  auto* state = new EnvState();
  state->env = env;
  // No finalizer: the cleanup hook owns and deletes the state (it must outlive nothing but this env's resources).
  if (napi_set_instance_data(env, state, nullptr, nullptr) != napi_ok ||
      napi_add_env_cleanup_hook(env, EnvCleanupHook, state) != napi_ok) {
    delete state;
    Napi::Error::New(env, "vfiod_native: could not set up per-environment state").ThrowAsJavaScriptException();
    return exports;
  }
  InitSocket(env, exports);
  InitWatcher(env, exports, state);
  InitMemory(env, exports);
  InitEventfd(env, exports);
  InitPoller(env, exports, state);
  InitFile(env, exports);
  InitCrc32c(env, exports);
  InitCopy(env, exports);
  InitVfio(env, exports);
  InitLoop(env, exports, state);
  return exports;
}

}  // namespace vfiod

static Napi::Object InitVfiod(Napi::Env env, Napi::Object exports) { return vfiod::Init(env, exports); }
NODE_API_MODULE(vfiod_native, InitVfiod)
