// fd readiness watcher: a uv_poll_t on the calling environment's own libuv loop.
//
// Node offers no way to wait for readiness of an arbitrary fd (net.Socket would take the fd over and read from
// it itself, losing SCM_RIGHTS), so the addon exposes libuv's poll handle directly.
//
// Lifetimes: the JS object (Watcher, an ObjectWrap) and the libuv handle (WatcherCore) are separate because a
// uv handle must stay allocated until its close callback runs, which is after close() returns and possibly
// after the JS object is collected. While started, the core holds a strong reference to the JS object (as Node
// handles do), so an active watcher is never collected; a stopped, unreachable watcher is closed by its
// finalizer. The env cleanup hook closes whatever is left when a Worker (or the process) exits.
#include "common.h"

#include <uv.h>

#include <cerrno>

namespace vfiod {
namespace {

class Watcher;

constexpr int kReadable = 1;
constexpr int kWritable = 2;

struct WatcherCore final : EnvResource {
  uv_poll_t handle;
  napi_env env = nullptr;
  EnvState* state = nullptr;
  int fd = -1;
  Watcher* wrap = nullptr;  // null once closed
  Napi::FunctionReference callback;
  napi_async_context asyncContext = nullptr;
  bool active = false;
  bool closed = false;
  bool inCallback = false;

  void Close();
  void ShutdownForEnvCleanup() override { Close(); }
  static void OnPoll(uv_poll_t* handle, int status, int events);
};

class Watcher : public Napi::ObjectWrap<Watcher> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<Watcher>::DefineClass(env, "FdWatcher",
                                           {
                                               InstanceMethod<&Watcher::Start>("start"),
                                               InstanceMethod<&Watcher::Stop>("stop"),
                                               InstanceMethod<&Watcher::CloseMethod>("close"),
                                           });
  }

  // new FdWatcher(fd, callback): only reachable through createWatcher (the class is not exported).
  explicit Watcher(const Napi::CallbackInfo& info) : ObjectWrap<Watcher>(info) {
    Napi::Env env = info.Env();
    int fd;
    Napi::Function callback;
    if (!GetFd(info, 0, "createWatcher", &fd) || !GetFunction(info, 1, "createWatcher", "callback", &callback)) {
      return;
    }
    EnvState* state = GetEnvState(env);
    if (state->watchedFds.count(fd) != 0) {
      // libuv supports a single poll handle per fd and loop; a second one would silently steal the events.
      ThrowErrnoMessage(env, EEXIST, "uv_poll_init",
                        "createWatcher(fd " + std::to_string(fd) + "): this fd already has an open watcher");
      return;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ThrowStateError(env, "createWatcher: no libuv loop for this environment");
      return;
    }
    auto* core = new WatcherCore();
    // Note: uv_poll_init puts the fd in non-blocking mode.
    int rc = uv_poll_init(loop, &core->handle, fd);
    if (rc < 0) {
      delete core;  // nothing registered with the loop yet, so no uv_close needed
      ThrowErrno(env, -rc, "uv_poll_init", "fd " + std::to_string(fd));
      return;
    }
    core->handle.data = core;
    core->env = env;
    core->state = state;
    core->fd = fd;
    core->wrap = this;
    core->callback = Napi::Persistent(callback);
    napi_async_init(env, info.This(), Napi::String::New(env, "vfiod:FdWatcher"), &core->asyncContext);
    state->resources.insert(core);
    state->watchedFds.insert(fd);
    core_ = core;
  }

  ~Watcher() override {
    // Finalized (collected while stopped, or at env teardown after the cleanup hook already closed the core).
    if (core_ != nullptr) {
      core_->wrap = nullptr;  // this object is going away: the core must not Unref() it
      core_->Close();
    }
  }

  void DetachCore() { core_ = nullptr; }

 private:
  friend struct WatcherCore;

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t events;
    if (!GetInteger(info, 0, "FdWatcher.start", "events", 1, kReadable | kWritable, &events)) return Napi::Value();
    if (core_ == nullptr) {
      ThrowStateError(env, "FdWatcher.start: the watcher is closed");
      return Napi::Value();
    }
    int uvEvents = ((events & kReadable) ? UV_READABLE : 0) | ((events & kWritable) ? UV_WRITABLE : 0);
    // uv_poll_start on an active handle just changes the event mask.
    int rc = uv_poll_start(&core_->handle, uvEvents, WatcherCore::OnPoll);
    if (rc < 0) {
      ThrowErrno(env, -rc, "uv_poll_start", "fd " + std::to_string(core_->fd));
      return Napi::Value();
    }
    if (!core_->active) {
      core_->active = true;
      Ref();  // an active watcher must not be collected, or nothing could ever stop it
    }
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (core_ != nullptr && core_->active) {
      uv_poll_stop(&core_->handle);
      core_->active = false;
      Unref();
    }
    return info.Env().Undefined();
  }

  Napi::Value CloseMethod(const Napi::CallbackInfo& info) {
    if (core_ != nullptr) core_->Close();  // safe twice, and from inside the callback
    return info.Env().Undefined();
  }

  WatcherCore* core_ = nullptr;
};

void WatcherCore::Close() {
  if (closed) return;
  closed = true;
  uv_poll_stop(&handle);
  if (wrap != nullptr) {
    if (active) wrap->Unref();
    wrap->DetachCore();
    wrap = nullptr;
  }
  active = false;
  callback.Reset();
  // If we are inside the JS callback, napi_make_callback is still using the async context: OnPoll destroys it
  // once the callback has returned.
  if (!inCallback && asyncContext != nullptr) {
    napi_async_destroy(env, asyncContext);
    asyncContext = nullptr;
  }
  state->resources.erase(this);
  state->watchedFds.erase(fd);
  // The memory is released in the close callback, which never touches N-API (the env may be gone by then).
  uv_close(reinterpret_cast<uv_handle_t*>(&handle),
           [](uv_handle_t* h) { delete static_cast<WatcherCore*>(h->data); });
}

void WatcherCore::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* core = static_cast<WatcherCore*>(handle->data);
  if (core->closed || core->wrap == nullptr) return;
  int arg = status;  // negative uv error code (= -errno on Unix)
  if (status >= 0) {
    arg = ((events & UV_READABLE) ? kReadable : 0) | ((events & UV_WRITABLE) ? kWritable : 0);
    if (arg == 0) return;
  }
  Napi::Env env(core->env);
  Napi::HandleScope scope(env);
  napi_value argv[] = {Napi::Number::New(env, arg)};
  core->inCallback = true;
  CallFromLoop(env, core->asyncContext, core->wrap->Value(), core->callback.Value(), 1, argv);
  core->inCallback = false;
  // The callback may have closed the watcher; the core itself stays allocated until the uv close callback,
  // which runs later in this loop iteration.
  if (core->closed && core->asyncContext != nullptr) {
    napi_async_destroy(env, core->asyncContext);
    core->asyncContext = nullptr;
  }
}

// createWatcher(fd, callback) -> FdWatcher
Napi::Value CreateWatcher(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnvState* state = GetEnvState(env);
  return state->watcherClass.New({info[0], info[1]});
}

}  // namespace

void InitWatcher(Napi::Env env, Napi::Object exports, EnvState* state) {
  state->watcherClass = Napi::Persistent(Watcher::DefineClass(env));
  exports.Set("createWatcher", Napi::Function::New(env, CreateWatcher, "createWatcher"));
}

}  // namespace vfiod
