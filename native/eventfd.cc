// eventfds: vfio-user interrupts (irqfds) and doorbell notifications (ioeventfds) are eventfds passed over the
// socket. Node can read/write them with fs, but only through the threadpool and without EAGAIN-as-null
// semantics, so the three syscalls are exposed directly.
#include "common.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

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

// eventfdWrite(fd, value): adds value (1 .. 2^53-1) to the counter.
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
    // EAGAIN here means the counter would overflow on a non-blocking eventfd; that is an error, not "later".
    ThrowErrno(env, errno, "write", "eventfd " + std::to_string(fd));
    return Napi::Value();
  }
  if (n != sizeof v) {
    ThrowErrnoMessage(env, EINVAL, "write", "eventfdWrite(fd " + std::to_string(fd) + "): short write; not an eventfd?");
    return Napi::Value();
  }
  return env.Undefined();
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
}

}  // namespace vfiod
