// Doorbell poller: a native thread that watches the first words of a shared page for changes.
//
// An NVMe guest rings doorbells by writing 32-bit words into BAR0 memory that is shared with us (no trap, no
// eventfd), so someone has to look at that memory. Doing it from JS would block the event loop; doing it with
// timers would add milliseconds of latency. The poller thread compares the words with its own snapshot and, on
// any difference, wakes the JS thread with uv_async_send (which coalesces: many changes, one callback). The
// thread never runs JavaScript and never touches N-API; the callback then re-reads the doorbells from JS.
//
// Idle policy: after the last observed change the thread keeps scanning with a CPU pause instruction between
// scans for `spinMicros`, then sleeps between scans, starting at 1 µs and doubling up to `maxSleepMicros`. Any
// change resets it to spinning. Sleeps use a condition variable so stop() never waits for a sleep to end, and
// the thread's timer slack is set to 1 ns so short sleeps are not rounded up to the default 50 µs.
//
// Snapshot rule: start() and setWordCount() take the snapshot of (newly covered) words on the JS thread before
// returning, so a write made after either call returns is guaranteed to produce a callback. Writes made before
// are not reported; the caller should scan the doorbells itself right after those calls.
#include "memory.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <sched.h>
#include <signal.h>
#include <vector>

namespace vfiod {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kMaxSpinMicros = 10'000'000;   // 10 s: longer spinning is certainly a mistake
constexpr int64_t kMaxSleepMicros = 1'000'000;   // 1 s: a doorbell must not wait longer than that
constexpr uint64_t kFirstSleepNs = 1000;         // 1 µs

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#else
  sched_yield();
#endif
}

// The guest (another process) writes these words concurrently; __atomic loads make the reads well-defined and
// stop the compiler from caching them. Relaxed is enough: the value is only compared, and the JS side reads the
// queues after the uv_async wake-up, which goes through a syscall and the loop's own synchronisation.
inline uint32_t LoadWord(const uint32_t* words, uint32_t i) { return __atomic_load_n(&words[i], __ATOMIC_RELAXED); }

class Poller;

struct PollerCore final : EnvResource {
  uv_async_t async;
  napi_env env = nullptr;
  EnvState* state = nullptr;
  Poller* wrap = nullptr;  // null once closed
  Napi::FunctionReference callback;
  napi_async_context asyncContext = nullptr;
  PinnedMapping page;
  const uint32_t* words = nullptr;
  uint32_t maxWords = 0;
  uint64_t spinNs = 0;
  uint64_t maxSleepNs = 0;

  // JS-thread state.
  uint32_t wordCount = 0;
  bool running = false;  // thread started and not joined
  bool closed = false;
  bool inCallback = false;
  pthread_t thread{};

  // Shared with the thread. `mutex` guards the pending word count handoff and pairs with `cv` for sleeps.
  std::atomic<bool> stopFlag{false};
  std::atomic<bool> countChanged{false};
  std::mutex mutex;
  std::condition_variable cv;
  uint32_t pendingCount = 0;
  std::vector<uint32_t> pendingSnapshot;  // values of words [0, pendingCount) read by the JS thread

  // Thread-owned while running (the JS thread only touches it before pthread_create / after pthread_join).
  std::vector<uint32_t> snapshot;
  uint32_t covered = 0;

  bool Start(Napi::Env env);
  void Stop();
  void SetWordCount(uint32_t count);
  void Close();
  void ShutdownForEnvCleanup() override { Close(); }
  void Run();
  static void OnAsync(uv_async_t* handle);
};

void PollerCore::Run() {
  pthread_setname_np(pthread_self(), "vfiod-doorbell");
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  Clock::time_point lastChange = Clock::now();
  uint64_t sleepNs = 0;
  while (!stopFlag.load(std::memory_order_acquire)) {
    if (countChanged.load(std::memory_order_acquire)) {
      std::lock_guard<std::mutex> lock(mutex);
      uint32_t n = pendingCount;
      if (snapshot.size() < n) snapshot.resize(n);
      // Newly covered words start from the JS thread's snapshot, so a doorbell rung between setWordCount()
      // and this point is still seen as a change. Words already covered keep our own, fresher snapshot.
      for (uint32_t i = covered; i < n; i++) snapshot[i] = pendingSnapshot[i];
      covered = n;
      countChanged.store(false, std::memory_order_relaxed);
    }
    bool changed = false;
    for (uint32_t i = 0; i < covered; i++) {
      uint32_t v = LoadWord(words, i);
      if (v != snapshot[i]) {
        snapshot[i] = v;
        changed = true;
      }
    }
    if (changed) {
      uv_async_send(&async);
      lastChange = Clock::now();
      sleepNs = 0;
      continue;
    }
    if (static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - lastChange)
                                  .count()) < spinNs) {
      CpuRelax();
      continue;
    }
    sleepNs = sleepNs == 0 ? kFirstSleepNs : sleepNs * 2;
    sleepNs = std::min(sleepNs, maxSleepNs);
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait_for(lock, std::chrono::nanoseconds(sleepNs), [this] {
      return stopFlag.load(std::memory_order_relaxed) || countChanged.load(std::memory_order_relaxed);
    });
  }
}

bool PollerCore::Start(Napi::Env jsEnv) {
  if (running) return true;
  // Snapshot on the JS thread (see the file comment): the thread is not running, so no race on `snapshot`.
  snapshot.resize(wordCount);
  for (uint32_t i = 0; i < wordCount; i++) snapshot[i] = LoadWord(words, i);
  covered = wordCount;
  countChanged.store(false, std::memory_order_relaxed);
  stopFlag.store(false, std::memory_order_relaxed);
  // The thread must not take process-directed signals meant for the JS thread (Node handles those via libuv),
  // so it starts with everything blocked. Synchronous faults (SIGBUS on a truncated file) still reach it.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(
      &thread, nullptr,
      [](void* arg) -> void* {
        static_cast<PollerCore*>(arg)->Run();
        return nullptr;
      },
      this);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) {
    ThrowErrno(jsEnv, rc, "pthread_create", "doorbell poller");
    return false;
  }
  running = true;
  uv_ref(reinterpret_cast<uv_handle_t*>(&async));
  return true;
}

void PollerCore::Stop() {
  if (!running) return;
  {
    std::lock_guard<std::mutex> lock(mutex);  // pairs with the predicate check in Run's wait_for
    stopFlag.store(true, std::memory_order_release);
  }
  cv.notify_all();
  pthread_join(thread, nullptr);
  running = false;
  // A wake-up sent just before the stop may still be delivered; OnAsync ignores it since running is false.
  uv_unref(reinterpret_cast<uv_handle_t*>(&async));
}

void PollerCore::SetWordCount(uint32_t count) {
  wordCount = count;
  if (!running) return;  // Start() snapshots
  {
    std::lock_guard<std::mutex> lock(mutex);
    pendingSnapshot.resize(count);
    for (uint32_t i = 0; i < count; i++) pendingSnapshot[i] = LoadWord(words, i);
    pendingCount = count;
    countChanged.store(true, std::memory_order_release);
  }
  cv.notify_all();
}

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<Poller>::DefineClass(env, "DoorbellPoller",
                                          {
                                              InstanceMethod<&Poller::SetWordCountMethod>("setWordCount"),
                                              InstanceMethod<&Poller::StartMethod>("start"),
                                              InstanceMethod<&Poller::StopMethod>("stop"),
                                              InstanceMethod<&Poller::CloseMethod>("close"),
                                          });
  }

  // new DoorbellPoller(page, options, callback): only reachable through createDoorbellPoller.
  explicit Poller(const Napi::CallbackInfo& info) : ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    const char* fn = "createDoorbellPoller";
    Napi::Function callback;
    if (!info[1].IsObject()) {
      ThrowTypeError(env, std::string(fn) + ": \"options\" must be an object, got " + Describe(info[1]));
      return;
    }
    Napi::Object options = info[1].As<Napi::Object>();
    int64_t spinMicros, maxSleepMicros;
    if (!CheckInteger(env, options.Get("spinMicros"), fn, "options.spinMicros", 0, kMaxSpinMicros, &spinMicros) ||
        !CheckInteger(env, options.Get("maxSleepMicros"), fn, "options.maxSleepMicros", 1, kMaxSleepMicros,
                      &maxSleepMicros) ||
        !GetFunction(info, 2, fn, "callback", &callback)) {
      return;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      ThrowStateError(env, "createDoorbellPoller: no libuv loop for this environment");
      return;
    }
    PinnedMapping page;
    if (!PinMapping(env, info[0], fn, &page)) return;
    if ((page.prot & PROT_READ) == 0) {
      UnpinMapping(page.mapping);
      ThrowErrnoMessage(env, EACCES, "mmap", "createDoorbellPoller: the page is not mapped with PROT_READ");
      return;
    }
    auto* core = new PollerCore();
    int rc = uv_async_init(loop, &core->async, PollerCore::OnAsync);
    if (rc < 0) {
      UnpinMapping(page.mapping);
      delete core;
      ThrowErrno(env, -rc, "uv_async_init", "doorbell poller");
      return;
    }
    uv_unref(reinterpret_cast<uv_handle_t*>(&core->async));  // only a running poller keeps the loop alive
    core->async.data = core;
    core->env = env;
    core->state = GetEnvState(env);
    core->wrap = this;
    core->callback = Napi::Persistent(callback);
    core->page = page;
    core->words = reinterpret_cast<const uint32_t*>(page.addr);
    core->maxWords = static_cast<uint32_t>(std::min<size_t>(page.length / 4, UINT32_MAX));
    core->spinNs = static_cast<uint64_t>(spinMicros) * 1000;
    core->maxSleepNs = static_cast<uint64_t>(maxSleepMicros) * 1000;
    napi_async_init(env, info.This(), Napi::String::New(env, "vfiod:DoorbellPoller"), &core->asyncContext);
    core->state->resources.insert(core);
    core_ = core;
    // The poller runs from creation on (wordCount 0 until setWordCount).
    if (!core->Start(env)) {
      core->Close();
      return;
    }
    Ref();  // a running poller must not be collected
  }

  ~Poller() override {
    if (core_ != nullptr) {
      core_->wrap = nullptr;  // this object is going away: the core must not Unref() it
      core_->Close();
    }
  }

  void DetachCore() { core_ = nullptr; }

 private:
  friend struct PollerCore;

  bool CheckOpen(Napi::Env env, const char* fn) {
    if (core_ != nullptr) return true;
    ThrowStateError(env, std::string(fn) + ": the doorbell poller is closed");
    return false;
  }

  Napi::Value SetWordCountMethod(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env, "DoorbellPoller.setWordCount")) return Napi::Value();
    int64_t words;
    if (!GetInteger(info, 0, "DoorbellPoller.setWordCount", "words", 0, core_->maxWords, &words)) {
      return Napi::Value();
    }
    core_->SetWordCount(static_cast<uint32_t>(words));
    return env.Undefined();
  }

  Napi::Value StartMethod(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env, "DoorbellPoller.start")) return Napi::Value();
    if (core_->running) return env.Undefined();
    if (!core_->Start(env)) return Napi::Value();
    Ref();
    return env.Undefined();
  }

  Napi::Value StopMethod(const Napi::CallbackInfo& info) {
    if (core_ != nullptr && core_->running) {
      core_->Stop();
      Unref();
    }
    return info.Env().Undefined();
  }

  Napi::Value CloseMethod(const Napi::CallbackInfo& info) {
    if (core_ != nullptr) core_->Close();  // safe twice, and from inside the callback
    return info.Env().Undefined();
  }

  PollerCore* core_ = nullptr;
};

void PollerCore::Close() {
  if (closed) return;
  bool wasRunning = running;
  Stop();  // joins the thread: nothing reads the page or sends wake-ups after this
  closed = true;
  if (wrap != nullptr) {
    if (wasRunning) wrap->Unref();
    wrap->DetachCore();
    wrap = nullptr;
  }
  callback.Reset();
  if (!inCallback && asyncContext != nullptr) {
    napi_async_destroy(env, asyncContext);
    asyncContext = nullptr;
  }
  UnpinMapping(page.mapping);  // munmap() works again; unmaps now if the ArrayBuffer is already gone
  page = PinnedMapping();
  words = nullptr;
  state->resources.erase(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&async),
           [](uv_handle_t* h) { delete static_cast<PollerCore*>(h->data); });
}

void PollerCore::OnAsync(uv_async_t* handle) {
  auto* core = static_cast<PollerCore*>(handle->data);
  if (core->closed || !core->running || core->wrap == nullptr) return;
  Napi::Env env(core->env);
  Napi::HandleScope scope(env);
  core->inCallback = true;
  CallFromLoop(env, core->asyncContext, core->wrap->Value(), core->callback.Value(), 0, nullptr);
  core->inCallback = false;
  if (core->closed && core->asyncContext != nullptr) {
    napi_async_destroy(env, core->asyncContext);
    core->asyncContext = nullptr;
  }
}

// createDoorbellPoller(page, options, callback) -> DoorbellPoller
Napi::Value CreateDoorbellPoller(const Napi::CallbackInfo& info) {
  EnvState* state = GetEnvState(info.Env());
  return state->pollerClass.New({info[0], info[1], info[2]});
}

}  // namespace

void InitPoller(Napi::Env env, Napi::Object exports, EnvState* state) {
  state->pollerClass = Napi::Persistent(Poller::DefineClass(env));
  exports.Set("createDoorbellPoller", Napi::Function::New(env, CreateDoorbellPoller, "createDoorbellPoller"));
}

}  // namespace vfiod
