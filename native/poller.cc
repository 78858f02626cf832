// Doorbell poller: a native thread that watches the first words of a shared page for doorbells not yet consumed.
//
// An NVMe guest rings doorbells by writing 32-bit words into BAR0 memory that is shared with us (no trap, no
// eventfd), so someone has to look at that memory. Doing it from JS would block the event loop; doing it with
// timers would add milliseconds of latency. The thread never runs JavaScript and never touches N-API.
//
// Consumed rule: the consumer (the JS thread) owns a Uint32Array `consumed` and stores in consumed[i] every
// doorbell value it takes from page[i]. The thread compares page[i] with consumed[i] for i < wordCount and, while
// any differ, calls uv_async_send (libuv coalesces: while a wake-up is pending a send is one relaxed load, and
// many sends mean one callback). There is no private snapshot, so a doorbell is reported exactly when its value
// differs from what the consumer last took: a value that returns to an earlier one (a 2-entry queue's tail going
// 0, 1, 0) is still reported as long as it differs from consumed[i], and a write made at any time (before
// setWordCount or start, or while the JS thread was reading the page for another reason) is never lost. A word
// that stays different keeps producing callbacks until the consumer records it.
//
// Races: the guest writes the page and the JS thread writes `consumed` with plain stores while this thread reads
// both with relaxed atomic loads. The race is benign: a stale read of either side can only produce a spurious
// wake-up (consumed not yet updated) or a wake-up one scan later (the new page value not yet visible), never a
// lost one, because a value the consumer has not taken stays different from consumed[i] until it does, and the
// thread keeps comparing.
//
// Idle policy: after the last scan that found a difference the thread keeps scanning with a CPU pause
// instruction between scans for `spinMicros`, then sleeps between scans, starting at 1 µs and doubling up to
// `maxSleepMicros`; after `idleAfterMicros` without a change (optional) they keep doubling up to `idleSleepMicros`,
// so a page nobody writes costs about 1e6 / idleSleepMicros wake-ups a second. Any difference resets it to spinning. Sleeps use a condition variable so stop() and
// setWordCount() never wait for a sleep to end, and the thread's timer slack is set to 1 ns so short sleeps are
// not rounded up to the default 50 µs.
//
// Deep idle is shared: a poller that has reached it parks (blocks without a timeout) with the process's one idle
// scanner thread, which looks at every parked page every idleSleepMicros (the smallest of the parked pollers') and
// signals that page's consumer (uv_async_send, as the poller would) and wakes its poller, which scans and starts its
// policy again from spinning. So N idle controllers cost one thread's ~1000 wake-ups a second, not N times that
// (64 of them cost a fifth of a core before). A parked poller's page and `consumed` stay valid: the poller leaves
// the scanner (under its lock) before stop() can join it, and Close() comes after that.
//
// Hand-over: pause() makes the thread stop scanning and block (no timeout, no CPU) until resume(), for as long
// as the consumer watches the page itself (the worker polls while it is busy). Two pollers of one page on one
// core fight for it: before pause existed, the thread's short sleeps woke it every few µs and the scheduler gave
// it the core for 100-200 µs at a time while the worker, holding the I/O, waited. resume() restarts the spin/sleep
// policy from its start (the consumer has just seen activity), and the first scan after it reports anything still
// unconsumed, so a doorbell written during the hand-over is not lost.
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

// The guest (another process) writes the page and the JS thread writes `consumed` concurrently; __atomic loads
// stop the compiler from caching or tearing the reads. Relaxed is enough: the values are only compared (see the
// file comment for why a stale one is harmless), and the JS side reads the queues after the uv_async wake-up,
// which goes through a syscall and the loop's own synchronisation.
inline uint32_t LoadWord(const uint32_t* words, uint32_t i) { return __atomic_load_n(&words[i], __ATOMIC_RELAXED); }

class Poller;
struct PollerCore;

// The process's idle scanner (see the file comment). Never destroyed: a worker's env teardown joins its pollers,
// which leave the scanner first; the scanner thread itself exits whenever nothing is parked.
class IdleScanner {
 public:
  static IdleScanner& Get() {
    static IdleScanner* scanner = new IdleScanner();
    return *scanner;
  }
  // On a poller thread, not holding the core's mutex.
  void Park(PollerCore* core);
  void Unpark(PollerCore* core);

 private:
  void Run();
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<PollerCore*> parked_;
  bool running_ = false;
};

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
  // The consumer's Uint32Array, referenced so it stays alive; its memory must stay attached (see GetConsumed).
  Napi::Reference<Napi::Uint32Array> consumedRef;
  const uint32_t* consumed = nullptr;
  uint64_t spinNs = 0;
  uint64_t maxSleepNs = 0;
  // After this long without a change the sleeps keep doubling up to idleSleepNs (0: never).
  uint64_t idleAfterNs = 0;
  uint64_t idleSleepNs = 0;

  // JS-thread state.
  bool running = false;  // thread started and not joined
  bool closed = false;
  bool inCallback = false;
  pthread_t thread{};

  // Shared with the thread. `mutex` pairs with `cv` for sleeps (so stop/setWordCount can cut a sleep short).
  std::atomic<uint32_t> wordCount{0};
  std::atomic<bool> stopFlag{false};
  std::atomic<bool> paused{false};
  std::mutex mutex;
  std::condition_variable cv;
  // Guarded by `mutex`: the idle scanner found an unconsumed word while this poller was parked.
  bool kicked = false;

  // Whether any of the first `wordCount` words differs from what the consumer took (the idle scanner's test).
  bool Unconsumed() const {
    uint32_t n = wordCount.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; i++) {
      if (LoadWord(words, i) != LoadWord(consumed, i)) return true;
    }
    return false;
  }

  bool Start(Napi::Env env);
  // On the JS thread: checks that `consumed` is still attached where it was and holds at least `count` words.
  bool CheckConsumed(Napi::Env env, const char* fn, uint32_t count);
  void Stop();
  void SetWordCount(uint32_t count);
  void Resume();
  void Close();
  void ShutdownForEnvCleanup() override { Close(); }
  void Run();
  static void OnAsync(uv_async_t* handle);
};

void PollerCore::Run() {
  pthread_setname_np(pthread_self(), "vfiod-doorbell");
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  Clock::time_point lastActivity = Clock::now();
  uint64_t sleepNs = 0;
  // Page values at the previous scan: only to tell a new write from one already signalled (so the thread backs
  // off instead of burning a core while the consumer is busy). Correctness rests on `consumed` alone.
  std::vector<uint32_t> lastSeen(maxWords, 0);
  while (!stopFlag.load(std::memory_order_acquire)) {
    if (paused.load(std::memory_order_acquire)) {
      std::unique_lock<std::mutex> lock(mutex);
      cv.wait(lock, [this] {
        return stopFlag.load(std::memory_order_relaxed) || !paused.load(std::memory_order_relaxed);
      });
      lastActivity = Clock::now();
      sleepNs = 0;
      continue;
    }
    uint32_t n = wordCount.load(std::memory_order_acquire);
    bool unconsumed = false;
    bool changed = false;
    for (uint32_t i = 0; i < n; i++) {
      uint32_t value = LoadWord(words, i);
      if (value != lastSeen[i]) {
        lastSeen[i] = value;
        changed = true;
      }
      if (value != LoadWord(consumed, i)) unconsumed = true;
    }
    if (unconsumed) {
      // Sent on every scan that finds a difference: cheap while a wake-up is already pending, and it makes
      // sure another callback follows one that ran before the consumer saw the newest value.
      uv_async_send(&async);
    }
    if (changed) {
      lastActivity = Clock::now();
      sleepNs = 0;
    } else if (uint64_t quietNs = static_cast<uint64_t>(
                   std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - lastActivity).count());
               quietNs >= spinNs) {
      // Nothing new since the last scan (anything unconsumed has been signalled): back off.
      sleepNs = sleepNs == 0 ? kFirstSleepNs : sleepNs * 2;
      if (idleAfterNs != 0 && quietNs >= idleAfterNs && sleepNs >= idleSleepNs) {
        // Deep idle: the shared scanner watches the page; this thread blocks until it, stop(), pause() or
        // setWordCount() says otherwise, then rescans at once.
        {
          std::lock_guard<std::mutex> lock(mutex);
          kicked = false;
        }
        IdleScanner::Get().Park(this);
        {
          std::unique_lock<std::mutex> lock(mutex);
          cv.wait(lock, [this, n] {
            return kicked || stopFlag.load(std::memory_order_relaxed) ||
                   wordCount.load(std::memory_order_relaxed) != n || paused.load(std::memory_order_relaxed);
          });
        }
        IdleScanner::Get().Unpark(this);
        continue;
      }
      sleepNs = std::min(sleepNs, idleAfterNs != 0 && quietNs >= idleAfterNs ? idleSleepNs : maxSleepNs);
      std::unique_lock<std::mutex> lock(mutex);
      cv.wait_for(lock, std::chrono::nanoseconds(sleepNs), [this, n] {
        return stopFlag.load(std::memory_order_relaxed) || wordCount.load(std::memory_order_relaxed) != n ||
               paused.load(std::memory_order_relaxed);
      });
      continue;
    }
    CpuRelax();
  }
}

void IdleScanner::Park(PollerCore* core) {
  std::lock_guard<std::mutex> lock(mutex_);
  parked_.push_back(core);
  if (running_) {
    cv_.notify_one();  // a scan at once: the page may have changed since the poller's last look
    return;
  }
  // Signals as for the pollers (PollerCore::Start): none but SIGBUS, which the guard must be able to handle.
  sigset_t all, old;
  sigfillset(&all);
  sigdelset(&all, SIGBUS);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t thread;
  int rc = pthread_create(
      &thread, nullptr,
      [](void* arg) -> void* {
        static_cast<IdleScanner*>(arg)->Run();
        return nullptr;
      },
      this);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) {
    // No scanner: the poller must not sleep unwatched. Kick it straight back to its own sleeps.
    parked_.pop_back();
    std::lock_guard<std::mutex> coreLock(core->mutex);
    core->kicked = true;
    return;
  }
  pthread_detach(thread);
  running_ = true;
}

void IdleScanner::Unpark(PollerCore* core) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find(parked_.begin(), parked_.end(), core);
  if (it != parked_.end()) parked_.erase(it);
}

void IdleScanner::Run() {
  pthread_setname_np(pthread_self(), "vfiod-db-idle");
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!parked_.empty()) {
    uint64_t sleepNs = kMaxSleepMicros * 1000;
    for (PollerCore* core : parked_) {
      sleepNs = std::min(sleepNs, core->idleSleepNs);
      if (!core->Unconsumed()) continue;
      // The consumer first (one hand-off, as when the poller finds it itself), then the poller, which starts its
      // policy again. The async handle lives until Close(), after the poller has left (Unpark needs mutex_).
      uv_async_send(&core->async);
      {
        std::lock_guard<std::mutex> coreLock(core->mutex);
        core->kicked = true;
      }
      core->cv.notify_all();
    }
    cv_.wait_for(lock, std::chrono::nanoseconds(sleepNs));
  }
  running_ = false;
}

bool PollerCore::Start(Napi::Env jsEnv) {
  if (running) return true;
  stopFlag.store(false, std::memory_order_relaxed);
  // The thread must not take process-directed signals meant for the JS thread (Node handles those via libuv),
  // so it starts with everything blocked but SIGBUS. A fault-generated signal that is blocked kills the process
  // (the kernel resets it to the default action), so SIGBUS stays open for the guard's handler (guard.h): a page
  // it watches may lie in a guest mapping the client shrank.
  sigset_t all, old;
  sigfillset(&all);
  sigdelset(&all, SIGBUS);
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

bool PollerCore::CheckConsumed(Napi::Env jsEnv, const char* fn, uint32_t count) {
  if (count == 0) return true;
  // Re-reads data pointer and length: after a detach (transfer) they are null / 0.
  Napi::Uint32Array array = consumedRef.Value();
  if (array.Data() != consumed) {
    ThrowStateError(jsEnv, std::string(fn) +
                               ": the \"consumed\" array's buffer has been detached (transferred); it must stay "
                               "attached while the poller lives");
    return false;
  }
  if (array.ElementLength() < count) {
    ThrowRangeError(jsEnv, std::string(fn) + ": " + std::to_string(count) +
                               " words are more than \"consumed\" holds (" + std::to_string(array.ElementLength()) +
                               ")");
    return false;
  }
  return true;
}

void PollerCore::SetWordCount(uint32_t count) {
  {
    std::lock_guard<std::mutex> lock(mutex);  // pairs with the predicate check in Run's wait_for
    wordCount.store(count, std::memory_order_release);
  }
  cv.notify_all();  // a sleeping thread rescans right away
}

void PollerCore::Resume() {
  {
    std::lock_guard<std::mutex> lock(mutex);  // pairs with the predicate check of the paused wait in Run
    paused.store(false, std::memory_order_release);
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
                                              InstanceMethod<&Poller::PauseMethod>("pause"),
                                              InstanceMethod<&Poller::ResumeMethod>("resume"),
                                              InstanceMethod<&Poller::CloseMethod>("close"),
                                          });
  }

  // new DoorbellPoller(page, consumed, options, callback): only reachable through createDoorbellPoller.
  explicit Poller(const Napi::CallbackInfo& info) : ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    const char* fn = "createDoorbellPoller";
    Napi::Function callback;
    Napi::Uint32Array consumed;
    if (!GetConsumed(env, info[1], fn, &consumed)) return;
    if (!info[2].IsObject()) {
      ThrowTypeError(env, std::string(fn) + ": \"options\" must be an object, got " + Describe(info[2]));
      return;
    }
    Napi::Object options = info[2].As<Napi::Object>();
    int64_t spinMicros, maxSleepMicros, idleAfterMicros = 0, idleSleepMicros = 0;
    if (!CheckInteger(env, options.Get("spinMicros"), fn, "options.spinMicros", 0, kMaxSpinMicros, &spinMicros) ||
        !CheckInteger(env, options.Get("maxSleepMicros"), fn, "options.maxSleepMicros", 1, kMaxSleepMicros,
                      &maxSleepMicros) ||
        !GetFunction(info, 3, fn, "callback", &callback)) {
      return;
    }
    // Optional deep idle: both or neither; the idle sleep is at least the busy one.
    Napi::Value idleAfter = options.Get("idleAfterMicros"), idleSleep = options.Get("idleSleepMicros");
    if (!idleAfter.IsUndefined() || !idleSleep.IsUndefined()) {
      if (!CheckInteger(env, idleAfter, fn, "options.idleAfterMicros", 1, kMaxSpinMicros, &idleAfterMicros) ||
          !CheckInteger(env, idleSleep, fn, "options.idleSleepMicros", maxSleepMicros, kMaxSleepMicros,
                        &idleSleepMicros)) {
        return;
      }
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
    core->consumedRef = Napi::Persistent(consumed);
    core->consumed = consumed.Data();
    core->spinNs = static_cast<uint64_t>(spinMicros) * 1000;
    core->maxSleepNs = static_cast<uint64_t>(maxSleepMicros) * 1000;
    core->idleAfterNs = static_cast<uint64_t>(idleAfterMicros) * 1000;
    core->idleSleepNs = static_cast<uint64_t>(idleSleepMicros) * 1000;
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

  // `consumed` must be a Uint32Array over memory that cannot disappear under the thread: not a view of an mmap()
  // buffer (munmap would pull it away) and not over a resizable ArrayBuffer (shrinking decommits memory). What
  // cannot be checked, detaching it (postMessage / structuredClone transfer), is forbidden by the API contract.
  static bool GetConsumed(Napi::Env env, const Napi::Value& value, const char* fn, Napi::Uint32Array* out) {
    if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
      ThrowTypeError(env, std::string(fn) + ": \"consumed\" must be a Uint32Array, got " + Describe(value));
      return false;
    }
    Napi::Uint32Array array = value.As<Napi::Uint32Array>();
    size_t length = array.ElementLength();
    const uint32_t* data = array.Data();
    if (length > 0 && (data == nullptr || reinterpret_cast<uintptr_t>(data) % alignof(uint32_t) != 0)) {
      ThrowInvalidValue(env, std::string(fn) + ": \"consumed\" must be 4-byte aligned memory");
      return false;
    }
    Napi::Value resizable = array.ArrayBuffer().Get("resizable");
    if (resizable.IsBoolean() && resizable.As<Napi::Boolean>().Value()) {
      ThrowInvalidValue(env, std::string(fn) + ": \"consumed\" must not be backed by a resizable ArrayBuffer");
      return false;
    }
    if (length > 0 && OverlapsMapping(data, length * sizeof(uint32_t))) {
      ThrowInvalidValue(env, std::string(fn) +
                                 ": \"consumed\" must be ordinary memory, not a view of an mmap() buffer");
      return false;
    }
    *out = array;
    return true;
  }

  bool CheckOpen(Napi::Env env, const char* fn) {
    if (core_ != nullptr) return true;
    ThrowStateError(env, std::string(fn) + ": the doorbell poller is closed");
    return false;
  }

  Napi::Value SetWordCountMethod(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env, "DoorbellPoller.setWordCount")) return Napi::Value();
    int64_t words;
    if (!GetInteger(info, 0, "DoorbellPoller.setWordCount", "words", 0, core_->maxWords, &words) ||
        !core_->CheckConsumed(env, "DoorbellPoller.setWordCount", static_cast<uint32_t>(words))) {
      return Napi::Value();
    }
    core_->SetWordCount(static_cast<uint32_t>(words));
    return env.Undefined();
  }

  Napi::Value StartMethod(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env, "DoorbellPoller.start")) return Napi::Value();
    if (core_->running) return env.Undefined();
    if (!core_->CheckConsumed(env, "DoorbellPoller.start", core_->wordCount.load(std::memory_order_relaxed)) ||
        !core_->Start(env)) {
      return Napi::Value();
    }
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

  // pause(): one atomic store, no lock and no syscall (the worker calls it whenever it starts polling itself).
  // A scan already under way may still send one wake-up.
  Napi::Value PauseMethod(const Napi::CallbackInfo& info) {
    if (core_ != nullptr) core_->paused.store(true, std::memory_order_release);
    return info.Env().Undefined();
  }

  Napi::Value ResumeMethod(const Napi::CallbackInfo& info) {
    if (core_ != nullptr && core_->paused.load(std::memory_order_relaxed)) core_->Resume();
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
  consumedRef.Reset();
  consumed = nullptr;
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

// createDoorbellPoller(page, consumed, options, callback) -> DoorbellPoller
Napi::Value CreateDoorbellPoller(const Napi::CallbackInfo& info) {
  EnvState* state = GetEnvState(info.Env());
  return state->pollerClass.New({info[0], info[1], info[2], info[3]});
}

}  // namespace

void InitPoller(Napi::Env env, Napi::Object exports, EnvState* state) {
  state->pollerClass = Napi::Persistent(Poller::DefineClass(env));
  exports.Set("createDoorbellPoller", Napi::Function::New(env, CreateDoorbellPoller, "createDoorbellPoller"));
}

}  // namespace vfiod
