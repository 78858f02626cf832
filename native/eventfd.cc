// eventfds: vfio-user interrupts (irqfds) and doorbell notifications (ioeventfds) are eventfds passed over the
// socket. Node can read/write them with fs, but only through the threadpool and without EAGAIN-as-null
// semantics, so the syscalls are exposed directly.
//
// Interrupt fds come from the client, so the server must never trust them to be what they claim: isEventfd tells
// a genuine eventfd from a socket, pipe or file (a write to those can block forever), and eventfdWrite reports a
// saturated counter on a non-blocking eventfd as "not written" instead of failing.
//
// Bounded reads and writes. O_NONBLOCK is a flag of the open file description, which the client shares: it can
// clear it again at any time after we set it (fcntl F_SETFL on its own copy of the fd), then saturate the counter,
// and the next write(2) would block the calling thread for as long as the client likes. Linux offers no per-call
// non-blocking write for eventfds (pwritev2 RWF_NOWAIT gives EOPNOTSUPP), so eventfdWrite / eventfdRead announce
// each call in a per-thread record, and a watchdog thread interrupts a call that is still in the kernel after one
// to two ticks (100 ms each) with a thread-directed signal (SIGURG, handler installed without SA_RESTART: the
// blocked eventfd read/write returns EINTR). O_NONBLOCK is then set again and the call retried once; blocked
// again, it counts as "would block" (false / null). Costs on the fast path: two atomic stores per call; the
// watchdog wakes 10 times a second once any thread has used these functions.
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace vfiod {
namespace {

// ---- bounded eventfd system calls ----

// SIGURG: its default action is to ignore it, so a stray one can never kill the process.
constexpr int kInterruptSignal = SIGURG;
constexpr auto kWatchdogTick = std::chrono::milliseconds(100);

// One per thread that called eventfdWrite / eventfdRead.
struct CallRecord {
  pthread_t thread;
  std::atomic<uint64_t> inCall{0};      // token of the call in progress, 0 when none
  std::atomic<bool> interrupted{false};  // the watchdog signalled the thread during that call
  uint64_t nextToken = 0;                // the thread's own
  uint64_t seen = 0;                     // the watchdog's: inCall at its previous tick
};

// Leaked on purpose: the watchdog is a detached thread that may run until the process ends, after static
// destructors.
std::mutex& RecordsMutex() {
  static auto* mutex = new std::mutex();
  return *mutex;
}
std::condition_variable& RecordsChanged() {
  static auto* cv = new std::condition_variable();
  return *cv;
}
std::vector<CallRecord*>& Records() {
  static auto* records = new std::vector<CallRecord*>();
  return *records;
}
struct sigaction g_previousInterruptAction;

void OnInterruptSignal(int sig, siginfo_t* info, void* context) {
  // Ours (tgkill from this process): its only purpose was to make the blocked system call return EINTR.
  if (info != nullptr && info->si_code == SI_TKILL && info->si_pid == getpid()) return;
  if ((g_previousInterruptAction.sa_flags & SA_SIGINFO) != 0 && g_previousInterruptAction.sa_sigaction != nullptr) {
    g_previousInterruptAction.sa_sigaction(sig, info, context);
  } else if (g_previousInterruptAction.sa_handler != SIG_DFL && g_previousInterruptAction.sa_handler != SIG_IGN) {
    g_previousInterruptAction.sa_handler(sig);
  }
}

void Watchdog() {
  std::unique_lock<std::mutex> lock(RecordsMutex());
  for (;;) {
    RecordsChanged().wait(lock, [] { return !Records().empty(); });
    lock.unlock();
    std::this_thread::sleep_for(kWatchdogTick);
    lock.lock();
    for (CallRecord* record : Records()) {
      uint64_t token = record->inCall.load(std::memory_order_acquire);
      if (token != 0 && token == record->seen) {
        // The same call was in progress at the previous tick as well: blocked.
        record->interrupted.store(true, std::memory_order_release);
        pthread_kill(record->thread, kInterruptSignal);
      }
      record->seen = token;
    }
  }
}

// Starts the watchdog and installs the signal handler, once per process. Returns false if that failed (then calls
// run unbounded, as before).
bool StartWatchdog() {
  static bool ok = [] {
    struct sigaction action = {};
    action.sa_sigaction = OnInterruptSignal;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;  // no SA_RESTART: the point is the EINTR
    sigemptyset(&action.sa_mask);
    if (sigaction(kInterruptSignal, &action, &g_previousInterruptAction) < 0) return false;
    // The watchdog takes no process-directed signals (they belong to Node's threads).
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t thread;
    int rc = pthread_create(
        &thread, nullptr,
        [](void*) -> void* {
          Watchdog();
          return nullptr;
        },
        nullptr);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (rc != 0) return false;
    pthread_detach(thread);
    return true;
  }();
  return ok;
}

// The calling thread's record, registered on first use and removed when the thread exits (a Worker ending), so the
// watchdog never signals a thread that is gone.
struct ThreadRecord {
  CallRecord* record = nullptr;
  bool exited = false;  // calls made after this destructor ran (late thread teardown) go unbounded, as before
  ~ThreadRecord() {
    exited = true;
    if (record == nullptr) return;
    {
      std::lock_guard<std::mutex> lock(RecordsMutex());
      auto& records = Records();
      records.erase(std::remove(records.begin(), records.end(), record), records.end());
    }
    delete record;
    record = nullptr;
  }
};
thread_local ThreadRecord t_record;

CallRecord* CurrentRecord() {
  if (t_record.record != nullptr) return t_record.record;
  if (t_record.exited || !StartWatchdog()) return nullptr;
  // The signal must reach this thread even if it was created with it blocked.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kInterruptSignal);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  auto* record = new CallRecord();
  record->thread = pthread_self();
  {
    std::lock_guard<std::mutex> lock(RecordsMutex());
    Records().push_back(record);
  }
  RecordsChanged().notify_one();
  t_record.record = record;
  return record;
}

// read(2) / write(2) of the 8-byte counter with EINTR retried. When the watchdog interrupted the call (it was
// blocked: the fd is blocking again), the fd is made non-blocking and the call tried once more; that attempt gives
// the real answer (done, or EAGAIN), unless the peer cleared O_NONBLOCK again in between and the call blocks once
// more: then the second interruption ends it with EAGAIN. A watchdog signal that arrives late (the blocked call had
// just finished) thus costs one extra attempt, never a wrong "would block".
ssize_t BoundedIo(int fd, uint64_t* value, bool write) {
  CallRecord* record = CurrentRecord();
  if (record != nullptr) {
    record->interrupted.store(false, std::memory_order_relaxed);
    record->inCall.store(++record->nextToken, std::memory_order_release);
  }
  ssize_t n;
  int interruptions = 0;
  for (;;) {
    n = write ? ::write(fd, value, sizeof *value) : ::read(fd, value, sizeof *value);
    if (n >= 0 || errno != EINTR) break;
    if (record == nullptr || !record->interrupted.exchange(false, std::memory_order_acq_rel)) continue;
    if (++interruptions == 2) {
      errno = EAGAIN;
      break;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_NONBLOCK) == 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
  int err = errno;
  if (record != nullptr) record->inCall.store(0, std::memory_order_release);
  errno = err;
  return n;
}

// eventfdCreate(initial, nonBlocking) -> fd
Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t initial;
  bool nonBlocking;
  if (!GetInteger(info, 0, "eventfdCreate", "initial", 0, UINT32_MAX, &initial) ||
      !GetBool(info, 1, "eventfdCreate", "nonBlocking", &nonBlocking)) {
    return Napi::Value();
  }
  int fd = eventfd(static_cast<unsigned>(initial), EFD_CLOEXEC | (nonBlocking ? EFD_NONBLOCK : 0));
  if (fd < 0) {
    ThrowErrno(env, errno, "eventfd", "initial " + std::to_string(initial));
    return Napi::Value();
  }
  return Napi::Number::New(env, fd);
}

// What readlink(/proc/self/fd/N) shows for an eventfd (fs/eventfd.c: anon_inode_getfile("[eventfd]", ...)).
constexpr char kEventfdLink[] = "anon_inode:[eventfd]";

// isEventfd(fd) -> boolean. Anonymous-inode files (eventfd, timerfd, signalfd, epoll...) share one inode, so fstat
// cannot tell them apart; the /proc link names the kind. Throws EBADF for a closed fd, and the readlink error
// when /proc is not mounted (the caller refuses the fd then: it cannot be checked).
Napi::Value IsEventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "isEventfd", &fd)) return Napi::Value();
  if (fcntl(fd, F_GETFD) < 0) {
    ThrowErrno(env, errno, "fcntl", "fd " + std::to_string(fd) + ", F_GETFD");
    return Napi::Value();
  }
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  char target[sizeof kEventfdLink + 1];
  ssize_t n = readlink(link.c_str(), target, sizeof target);
  if (n < 0) {
    ThrowErrno(env, errno, "readlink", link + "; is /proc mounted?");
    return Napi::Value();
  }
  bool matches = static_cast<size_t>(n) == sizeof kEventfdLink - 1 && memcmp(target, kEventfdLink, n) == 0;
  return Napi::Boolean::New(env, matches);
}

// eventfdWrite(fd, value) -> boolean: adds value (1 .. 2^53-1) to the counter. False when the counter cannot take
// `value` without reaching 2^64-1: at once (EAGAIN) on a non-blocking fd, after at most ~200 ms (the watchdog) on a
// blocking one. For an interrupt that means the consumer has not read the counter for a long time, so an interrupt
// is pending anyway.
Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t value;
  if (!GetFd(info, 0, "eventfdWrite", &fd) ||
      !GetInteger(info, 1, "eventfdWrite", "value", 1, kMaxSafeInteger, &value)) {
    return Napi::Value();
  }
  uint64_t v = static_cast<uint64_t>(value);
  ssize_t n = BoundedIo(fd, &v, true);
  if (n < 0) {
    // An eventfd whose counter would overflow: non-blocking, or blocking and interrupted by the watchdog.
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "write", "eventfd " + std::to_string(fd));
    return Napi::Value();
  }
  if (n != sizeof v) {
    ThrowErrnoMessage(env, EINVAL, "write", "eventfdWrite(fd " + std::to_string(fd) + "): short write; not an eventfd?");
    return Napi::Value();
  }
  return Napi::Boolean::New(env, true);
}

// eventfdRead(fd) -> counter value | null (zero: at once when non-blocking, after at most ~200 ms when blocking)
Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "eventfdRead", &fd)) return Napi::Value();
  uint64_t v = 0;
  ssize_t n = BoundedIo(fd, &v, false);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    ThrowErrno(env, errno, "read", "eventfd " + std::to_string(fd));
    return Napi::Value();
  }
  if (n != sizeof v) {
    ThrowErrnoMessage(env, EINVAL, "read", "eventfdRead(fd " + std::to_string(fd) + "): short read; not an eventfd?");
    return Napi::Value();
  }
  // Exact up to 2^53; larger counters (only possible through writers outside this API) lose precision.
  return Napi::Number::New(env, static_cast<double>(v));
}

}  // namespace

void InitEventfd(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate, "eventfdCreate"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite, "eventfdWrite"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead, "eventfdRead"));
  exports.Set("isEventfd", Napi::Function::New(env, IsEventfd, "isEventfd"));
}

}  // namespace vfiod
