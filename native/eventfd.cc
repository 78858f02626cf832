// eventfds: vfio-user interrupts (irqfds) and doorbell notifications (ioeventfds) are eventfds passed over the
// socket. Node can read/write them with fs, but only through the threadpool and without EAGAIN-as-null
// semantics, so the syscalls are exposed directly.
//
// Interrupt fds come from the client, so the server must never trust them to be what they claim: isEventfd tells
// a genuine eventfd from a socket, pipe or file (a write to those can block forever), and eventfdWrite reports a
// saturated counter on a non-blocking eventfd as "not written" instead of failing.
#include "common.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace vfiod {
namespace {

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

// eventfdWrite(fd, value) -> boolean: adds value (1 .. 2^53-1) to the counter. False when the fd is non-blocking
// and the counter cannot take `value` without reaching 2^64-1 (EAGAIN): for an interrupt that means the consumer
// has not read the counter for a long time, so an interrupt is pending anyway.
Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t value;
  if (!GetFd(info, 0, "eventfdWrite", &fd) ||
      !GetInteger(info, 1, "eventfdWrite", "value", 1, kMaxSafeInteger, &value)) {
    return Napi::Value();
  }
  uint64_t v = static_cast<uint64_t>(value);
  ssize_t n;
  do {
    n = write(fd, &v, sizeof v);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    // A non-blocking eventfd whose counter would overflow. (A blocking one would have blocked right here.)
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

// eventfdRead(fd) -> counter value | null (non-blocking and zero)
Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "eventfdRead", &fd)) return Napi::Value();
  uint64_t v = 0;
  ssize_t n;
  do {
    n = read(fd, &v, sizeof v);
  } while (n < 0 && errno == EINTR);
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
