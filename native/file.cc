// fallocate(2): Node's fs has no way to punch holes or zero ranges, which NVMe Deallocate and Write Zeroes map to
// on a file or block device. Synchronous and policy-free: the caller decides which modes to try, how to split
// large ranges and what to do when the filesystem or device does not support a mode (EOPNOTSUPP).
#include "common.h"

#include <fcntl.h>

#include <cerrno>
#include <climits>
#include <cstdint>

namespace vfiod {
namespace {

// fallocate(fd, mode, offset, length)
Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "fallocate";
  int fd;
  int64_t mode, offset, length;
  // The mode bits are the kernel's to judge (unknown ones give EOPNOTSUPP); a zero length gives EINVAL.
  if (!GetFd(info, 0, fn, &fd) || !GetInteger(info, 1, fn, "mode", 0, INT_MAX, &mode) ||
      !GetInteger(info, 2, fn, "offset", 0, kMaxSafeInteger, &offset) ||
      !GetInteger(info, 3, fn, "length", 0, kMaxSafeInteger, &length)) {
    return Napi::Value();
  }
  int rc;
  do {
    rc = ::fallocate(fd, static_cast<int>(mode), static_cast<off_t>(offset), static_cast<off_t>(length));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    ThrowErrno(env, errno, "fallocate",
               "fd " + std::to_string(fd) + ", mode " + std::to_string(mode) + ", offset " + std::to_string(offset) +
                   ", length " + std::to_string(length));
    return Napi::Value();
  }
  return env.Undefined();
}

}  // namespace

void InitFile(Napi::Env env, Napi::Object exports) {
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
}

}  // namespace vfiod
