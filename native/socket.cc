// AF_UNIX stream sockets with SCM_RIGHTS fd passing (the vfio-user transport).
//
// Node's net module cannot send or receive file descriptors, and vfio-user passes DMA region fds, eventfds and
// memfds with its messages, so the socket layer lives here. It is deliberately thin: no buffering, no framing,
// no retries except on EINTR. EAGAIN is reported as `null` so the JS side can wait with a watcher.
#include "common.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace vfiod {
namespace {

constexpr int kMaxFds = 253;  // SCM_MAX_FD: the kernel refuses more fds per message
constexpr size_t kMaxPathBytes = sizeof(sockaddr_un::sun_path) - 1;  // 107 on Linux, plus the NUL terminator

bool IsWouldBlock(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

// Reads and checks a socket path argument; the length limit gets its own error because it is a classic trap
// (temp dirs under long paths) and the kernel's own EINVAL would not explain it.
bool GetSocketPath(const Napi::CallbackInfo& info, const char* fn, const char* syscall, sockaddr_un* addr) {
  std::string path;
  if (!GetString(info, 0, fn, "socketPath", SIZE_MAX, &path)) return false;
  if (path.empty()) {
    // An empty path would mean "autobind to an abstract address" for bind().
    ThrowInvalidValue(info.Env(), std::string(fn) + ": \"socketPath\" must not be empty");
    return false;
  }
  if (path.size() > kMaxPathBytes) {
    ThrowErrnoMessage(info.Env(), ENAMETOOLONG, syscall,
                      std::string(fn) + ": socket path is " + std::to_string(path.size()) +
                          " bytes long, but AF_UNIX socket paths are limited to " + std::to_string(kMaxPathBytes) +
                          " bytes (sun_path): " + path);
    return false;
  }
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

// Makes the bound socket file's permission bits exactly `mode`. The file was created with (mode & ~umask), so
// this can only add bits the umask removed; it never exposes the socket more than requested. To avoid being
// tricked into chmod-ing something else if the path was swapped after bind() (only possible for someone who
// can write to the directory), the file is opened with O_PATH|O_NOFOLLOW, checked to be a socket and changed
// through /proc/self/fd (what glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does).
bool FixSocketMode(Napi::Env env, const char* path, mode_t mode) {
  int pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (pfd < 0) {
    ThrowErrno(env, errno, "open", path);
    return false;
  }
  struct stat st;
  if (fstat(pfd, &st) < 0) {
    int err = errno;
    close(pfd);
    ThrowErrno(env, err, "fstat", path);
    return false;
  }
  if (!S_ISSOCK(st.st_mode)) {
    close(pfd);
    ThrowErrnoMessage(env, ENOTSOCK, "fstat",
                      std::string("listenUnix: ") + path + " is no longer a socket right after bind()");
    return false;
  }
  int rc = 0;
  if ((st.st_mode & 07777) != mode) {
    char procPath[64];
    snprintf(procPath, sizeof procPath, "/proc/self/fd/%d", pfd);
    rc = chmod(procPath, mode);
    // Without /proc, fall back to the path itself (it was a socket a moment ago).
    if (rc < 0 && errno == ENOENT) rc = chmod(path, mode);
  }
  int err = errno;
  close(pfd);
  if (rc < 0) {
    ThrowErrno(env, err, "chmod", path);
    return false;
  }
  return true;
}

// listenUnix(socketPath, mode, backlog) -> fd
Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sockaddr_un addr;
  int64_t mode, backlog;
  if (!GetSocketPath(info, "listenUnix", "bind", &addr) ||
      !GetInteger(info, 1, "listenUnix", "mode", 0, 0777, &mode) ||
      !GetInteger(info, 2, "listenUnix", "backlog", 0, INT_MAX, &backlog)) {
    return Napi::Value();
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket", "AF_UNIX, SOCK_STREAM");
    return Napi::Value();
  }
  // Linux creates the socket file with the socket inode's mode minus the umask (unix_bind_bsd), so setting the
  // mode on the unbound socket means the file never appears with more permissions than `mode`. This avoids
  // touching the process-wide umask, which would race with other threads (Workers, the libuv threadpool).
  if (fchmod(fd, static_cast<mode_t>(mode)) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "fchmod", "fd " + std::to_string(fd));
    return Napi::Value();
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "bind", addr.sun_path);
    return Napi::Value();
  }
  if (!FixSocketMode(env, addr.sun_path, static_cast<mode_t>(mode))) {
    close(fd);  // the path is not (or no longer) a socket we can vouch for: do not unlink it
    return Napi::Value();
  }
  if (listen(fd, static_cast<int>(backlog)) < 0) {
    int err = errno;
    unlink(addr.sun_path);  // we created it a moment ago; leaving it would make the next attempt fail
    close(fd);
    ThrowErrno(env, err, "listen", addr.sun_path);
    return Napi::Value();
  }
  return Napi::Number::New(env, fd);
}

// connectUnix(socketPath) -> fd (blocking, close-on-exec)
Napi::Value ConnectUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sockaddr_un addr;
  if (!GetSocketPath(info, "connectUnix", "connect", &addr)) return Napi::Value();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket", "AF_UNIX, SOCK_STREAM");
    return Napi::Value();
  }
  int rc;
  do {
    rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    // An AF_UNIX connect interrupted while waiting for backlog space has not connected; a retry that reports
    // EISCONN means the earlier attempt completed after all.
  } while (rc < 0 && errno == EINTR);
  if (rc < 0 && errno != EISCONN) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "connect", addr.sun_path);
    return Napi::Value();
  }
  return Napi::Number::New(env, fd);
}

// accept(listenFd) -> fd | null
Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "accept", &fd)) return Napi::Value();
  for (;;) {
    int conn = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn >= 0) return Napi::Number::New(env, conn);
    int err = errno;
    // ECONNABORTED: a pending connection went away before we took it; look for the next one.
    if (err == EINTR || err == ECONNABORTED) continue;
    if (IsWouldBlock(err)) return env.Null();
    ThrowErrno(env, err, "accept4", "fd " + std::to_string(fd));
    return Napi::Value();
  }
}

// peerCredentials(fd) -> { pid, uid, gid }: the process at the other end of a connected AF_UNIX socket, as the
// kernel recorded it at connect() (SO_PEERCRED). The control API's access rules are decided on it.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "peerCredentials", &fd)) return Napi::Value();
  ucred cred{};
  socklen_t length = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) < 0) {
    ThrowErrno(env, errno, "getsockopt", "fd " + std::to_string(fd) + ", SO_PEERCRED");
    return Napi::Value();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, cred.pid));
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  return result;
}

// recvmsg(fd, buffer, maxFds) -> { bytes, fds, fdsTruncated } | null
Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t length;
  int64_t maxFds;
  if (!GetFd(info, 0, "recvmsg", &fd) || !GetUint8Array(info, 1, "recvmsg", "buffer", &data, &length) ||
      !GetInteger(info, 2, "recvmsg", "maxFds", 0, kMaxFds, &maxFds)) {
    return Napi::Value();
  }
  if (length == 0) {
    // A zero-length read returns 0, which would be indistinguishable from EOF.
    ThrowRangeError(env, "recvmsg: \"buffer\" must not be empty (a detached or zero-length buffer?)");
    return Napi::Value();
  }

  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFds * sizeof(int))];
  iovec iov{data, length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (maxFds > 0) {
    msg.msg_control = control;
    // CMSG_LEN, not CMSG_SPACE: the kernel fits as many fds as the buffer holds, and CMSG_SPACE's padding
    // would let one more than maxFds through for odd counts.
    msg.msg_controllen = CMSG_LEN(static_cast<size_t>(maxFds) * sizeof(int));
  }
  ssize_t n;
  do {
    // MSG_CMSG_CLOEXEC: received fds must not leak into child processes spawned before JS gets to them.
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (IsWouldBlock(errno)) return env.Null();
    ThrowErrno(env, errno, "recvmsg", "fd " + std::to_string(fd));
    return Napi::Value();
  }

  // Collect every SCM_RIGHTS fd, whatever the number of control messages, so none is leaked: even when
  // truncated, the fds that did arrive are open in this process and JS must close them.
  std::vector<int> fds;
  if (msg.msg_controllen > 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* p = CMSG_DATA(c);
      for (size_t i = 0; i < count; i++) {
        int received;
        memcpy(&received, p + i * sizeof(int), sizeof(int));  // CMSG_DATA is not necessarily int-aligned
        fds.push_back(received);
      }
    }
  }
  Napi::Array fdArray = Napi::Array::New(env, fds.size());
  for (size_t i = 0; i < fds.size(); i++) fdArray.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds[i]));
  Napi::Object result = Napi::Object::New(env);
  result.Set("bytes", Napi::Number::New(env, static_cast<double>(n)));
  result.Set("fds", fdArray);
  result.Set("fdsTruncated", Napi::Boolean::New(env, (msg.msg_flags & MSG_CTRUNC) != 0));
  return result;
}

// sendmsg(fd, buffer, fds) -> bytes sent | null
Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* data;
  size_t length;
  if (!GetFd(info, 0, "sendmsg", &fd) || !GetUint8Array(info, 1, "sendmsg", "buffer", &data, &length)) {
    return Napi::Value();
  }
  if (!info[2].IsArray()) {
    ThrowTypeError(env, "sendmsg: \"fds\" must be an array of fds, got " + Describe(info[2]));
    return Napi::Value();
  }
  Napi::Array fdArray = info[2].As<Napi::Array>();
  uint32_t nfds = fdArray.Length();
  if (nfds > kMaxFds) {
    ThrowRangeError(env, "sendmsg: at most " + std::to_string(kMaxFds) + " fds can be sent in one message, got " +
                             std::to_string(nfds));
    return Napi::Value();
  }
  int fds[kMaxFds];
  for (uint32_t i = 0; i < nfds; i++) {
    int64_t v;
    if (!CheckInteger(env, fdArray.Get(i), "sendmsg", "fds[" + std::to_string(i) + "]", 0, INT_MAX, &v)) {
      return Napi::Value();
    }
    fds[i] = static_cast<int>(v);
  }
  if (nfds > 0 && length == 0) {
    // On a stream socket the fds ride on the first byte; a zero-length sendmsg would silently drop them.
    ThrowRangeError(env, "sendmsg: at least one byte must be sent along with fds");
    return Napi::Value();
  }

  alignas(cmsghdr) char control[CMSG_SPACE(kMaxFds * sizeof(int))];
  iovec iov{data, length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  ssize_t n;
  do {
    // MSG_NOSIGNAL: a peer that went away must give EPIPE, not kill the process with SIGPIPE.
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (IsWouldBlock(errno)) return env.Null();
    ThrowErrno(env, errno, "sendmsg", "fd " + std::to_string(fd));
    return Napi::Value();
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// setNonBlocking(fd, nonBlocking)
Napi::Value SetNonBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  bool nonBlocking;
  if (!GetFd(info, 0, "setNonBlocking", &fd) || !GetBool(info, 1, "setNonBlocking", "nonBlocking", &nonBlocking)) {
    return Napi::Value();
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) {
    ThrowErrno(env, errno, "fcntl", "fd " + std::to_string(fd) + ", F_GETFL");
    return Napi::Value();
  }
  int wanted = nonBlocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted != flags && fcntl(fd, F_SETFL, wanted) < 0) {
    ThrowErrno(env, errno, "fcntl", "fd " + std::to_string(fd) + ", F_SETFL");
    return Napi::Value();
  }
  return env.Undefined();
}

// close(fd)
Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(info, 0, "close", &fd)) return Napi::Value();
  EnvState* state = GetEnvState(env);
  if (state != nullptr && state->watchedFds.count(fd) != 0) {
    ThrowErrnoMessage(env, EBUSY, "close",
                      "close(fd " + std::to_string(fd) + "): a watcher is still open on this fd; close it first");
    return Napi::Value();
  }
  // On Linux the fd is released even when close() reports EINTR, so it must not be retried (the number may
  // already belong to another thread's new fd).
  if (close(fd) < 0 && errno != EINTR) {
    ThrowErrno(env, errno, "close", "fd " + std::to_string(fd));
    return Napi::Value();
  }
  return env.Undefined();
}

// sendDatagram(socketPath, bytes): one datagram on a fresh AF_UNIX SOCK_DGRAM socket, as sd_notify(3) sends to
// $NOTIFY_SOCKET. A path starting with '@' is in the abstract namespace (its '@' stands for the leading NUL).
Napi::Value SendDatagram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  uint8_t* data = nullptr;
  size_t length = 0;
  if (!GetString(info, 0, "sendDatagram", "socketPath", kMaxPathBytes, &path) ||
      !GetUint8Array(info, 1, "sendDatagram", "bytes", &data, &length)) {
    return Napi::Value();
  }
  if (path.empty() || (path[0] != '/' && path[0] != '@')) {
    ThrowInvalidValue(env, "sendDatagram: \"socketPath\" must be an absolute path or an abstract name (@...)");
    return Napi::Value();
  }
  sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';
  const socklen_t addrLength = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket", "AF_UNIX, SOCK_DGRAM");
    return Napi::Value();
  }
  ssize_t n;
  do {
    n = sendto(fd, data, length, MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), addrLength);
  } while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) {
    ThrowErrno(env, err, "sendto", path);
    return Napi::Value();
  }
  return env.Undefined();
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("sendDatagram", Napi::Function::New(env, SendDatagram, "sendDatagram"));
  exports.Set("listenUnix", Napi::Function::New(env, ListenUnix, "listenUnix"));
  exports.Set("connectUnix", Napi::Function::New(env, ConnectUnix, "connectUnix"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  exports.Set("recvmsg", Napi::Function::New(env, RecvMsg, "recvmsg"));
  exports.Set("sendmsg", Napi::Function::New(env, SendMsg, "sendmsg"));
  exports.Set("setNonBlocking", Napi::Function::New(env, SetNonBlocking, "setNonBlocking"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
}

}  // namespace vfiod
