// The event loop as seen from a worker that polls doorbells itself: whether the loop has anything to do right now,
// and a way to give it exactly one turn.
//
// Such a worker keeps the loop waiting while it scans, and has to let it run now and then for the controller's
// socket, timers and messages. A full turn out of JavaScript and back costs ~9 µs here, and a doorbell written during
// it waits that long, which is most of the QD1 tail. eventLoopHasWork() costs one poll(2) of the loop's epoll fd and
// a clock read, so the worker can ask often and give the loop a turn only when it has work.
//
// What it sees: any fd libuv watches that is ready (sockets, the async handles behind worker messages and the
// doorbell poller's wake-ups, the thread pool's completions), a timer that is due, and anything libuv runs without
// waiting (pending callbacks, idle handles such as the one behind Node's setImmediate queue, closing handles), and
// watchers started since its last turn (libuv 1.46's uv_backend_timeout is 0 until it has registered them). What it
// does not see: JavaScript's own queues (microtasks, process.nextTick); a caller still gives the loop a turn every
// few milliseconds for those. Asked from inside a timer callback it misses due timers (Node stops its timer handle while
// it runs them), and asked from inside a setImmediate callback it always says yes (Node keeps its idle handle
// started until the immediates have run). So the worker continues through a LoopTurn instead: a uv_idle handle of
// its own, stopped before the callback runs, so the loop looks the same to the callback as to anyone else.
#include "common.h"

#include <poll.h>
#include <uv.h>

namespace vfiod {
namespace {

class LoopTurn;

struct LoopTurnCore final : EnvResource {
  uv_idle_t handle;
  napi_env env = nullptr;
  EnvState* state = nullptr;
  LoopTurn* wrap = nullptr;  // null once closed
  Napi::FunctionReference callback;
  napi_async_context asyncContext = nullptr;
  bool requested = false;
  bool closed = false;
  bool inCallback = false;

  void Close();
  void ShutdownForEnvCleanup() override { Close(); }
  static void OnIdle(uv_idle_t* handle);
};

// The JS object (LoopTurn, an ObjectWrap) and the uv handle (LoopTurnCore) are separate, as for FdWatcher: the handle
// stays allocated until its close callback, which may come after the object is collected. While a turn is
// requested the core holds a strong reference to the object, as a pending setImmediate would.
class LoopTurn : public Napi::ObjectWrap<LoopTurn> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<LoopTurn>::DefineClass(env, "LoopTurn",
                                            {
                                                InstanceMethod<&LoopTurn::Request>("request"),
                                                InstanceMethod<&LoopTurn::CloseMethod>("close"),
                                            });
  }

  // new LoopTurn(callback): only reachable through createLoopTurn.
  explicit LoopTurn(const Napi::CallbackInfo& info) : ObjectWrap<LoopTurn>(info) {
    Napi::Env env = info.Env();
    Napi::Function callback;
    if (!GetFunction(info, 0, "createLoopTurn", "callback", &callback)) return;
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ThrowStateError(env, "createLoopTurn: no libuv loop for this environment");
      return;
    }
    auto* core = new LoopTurnCore();
    int rc = uv_idle_init(loop, &core->handle);
    if (rc < 0) {
      delete core;
      ThrowErrno(env, -rc, "uv_idle_init", "loop turn");
      return;
    }
    EnvState* state = GetEnvState(env);
    core->handle.data = core;
    core->env = env;
    core->state = state;
    core->wrap = this;
    core->callback = Napi::Persistent(callback);
    napi_async_init(env, info.This(), Napi::String::New(env, "vfiod:LoopTurn"), &core->asyncContext);
    state->resources.insert(core);
    core_ = core;
  }

  ~LoopTurn() override {
    if (core_ != nullptr) {
      core_->wrap = nullptr;
      core_->Close();
    }
  }

  void DetachCore() { core_ = nullptr; }

 private:
  friend struct LoopTurnCore;

  // request(): the callback runs once, in the loop's next idle phase (after timers and pending callbacks, before it
  // polls for I/O without blocking). Requests before that are one.
  Napi::Value Request(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (core_ == nullptr) {
      ThrowStateError(env, "LoopTurn.request: the loop turn is closed");
      return Napi::Value();
    }
    if (core_->requested) return env.Undefined();
    int rc = uv_idle_start(&core_->handle, LoopTurnCore::OnIdle);
    if (rc < 0) {
      ThrowErrno(env, -rc, "uv_idle_start", "loop turn");
      return Napi::Value();
    }
    core_->requested = true;
    Ref();
    return env.Undefined();
  }

  Napi::Value CloseMethod(const Napi::CallbackInfo& info) {
    if (core_ != nullptr) core_->Close();  // safe twice, and from inside the callback
    return info.Env().Undefined();
  }

  LoopTurnCore* core_ = nullptr;
};

void LoopTurnCore::Close() {
  if (closed) return;
  closed = true;
  uv_idle_stop(&handle);
  if (wrap != nullptr) {
    if (requested) wrap->Unref();
    wrap->DetachCore();
    wrap = nullptr;
  }
  requested = false;
  callback.Reset();
  if (!inCallback && asyncContext != nullptr) {
    napi_async_destroy(env, asyncContext);
    asyncContext = nullptr;
  }
  state->resources.erase(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&handle),
           [](uv_handle_t* h) { delete static_cast<LoopTurnCore*>(h->data); });
}

void LoopTurnCore::OnIdle(uv_idle_t* handle) {
  auto* core = static_cast<LoopTurnCore*>(handle->data);
  // Stopped before the callback, which may ask eventLoopHasWork (an idle handle left started would say yes) or
  // request the next turn.
  uv_idle_stop(handle);
  if (core->closed || core->wrap == nullptr || !core->requested) return;
  core->requested = false;
  Napi::Env env(core->env);
  Napi::HandleScope scope(env);
  // The callback's `this` keeps the object alive through the call; the request's reference is no longer needed.
  Napi::Object self = core->wrap->Value();
  core->wrap->Unref();
  core->inCallback = true;
  CallFromLoop(env, core->asyncContext, self, core->callback.Value(), 0, nullptr);
  core->inCallback = false;
  if (core->closed && core->asyncContext != nullptr) {
    napi_async_destroy(env, core->asyncContext);
    core->asyncContext = nullptr;
  }
}

// createLoopTurn(callback) -> LoopTurn
Napi::Value CreateLoopTurn(const Napi::CallbackInfo& info) {
  return GetEnvState(info.Env())->loopTurnClass.New({info[0]});
}

// eventLoopHasWork() -> boolean. On any failure it answers true: a turn too many costs microseconds, a missed one
// could hold a message back.
Napi::Value EventLoopHasWork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) return Napi::Boolean::New(env, true);
  // The loop's clock stands still while JavaScript runs; a timer's due time is judged against it.
  uv_update_time(loop);
  if (uv_backend_timeout(loop) == 0) return Napi::Boolean::New(env, true);
  struct pollfd backend = {uv_backend_fd(loop), POLLIN, 0};
  int ready = poll(&backend, 1, 0);
  return Napi::Boolean::New(env, ready != 0);
}

}  // namespace

void InitLoop(Napi::Env env, Napi::Object exports, EnvState* state) {
  state->loopTurnClass = Napi::Persistent(LoopTurn::DefineClass(env));
  exports.Set("createLoopTurn", Napi::Function::New(env, CreateLoopTurn, "createLoopTurn"));
  exports.Set("eventLoopHasWork", Napi::Function::New(env, EventLoopHasWork, "eventLoopHasWork"));
}

}  // namespace vfiod
