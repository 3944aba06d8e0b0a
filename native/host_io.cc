// Raw-fd host I/O for device backends (block files, tap, Unix sockets). Data-path calls return a byte count
// or a negative errno instead of throwing, so a device can turn host errors into guest-visible status codes.
#include "host_io.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common.h"

namespace nodekvm {

template <typename F>
static ssize_t NoEintr(F f) {
  ssize_t r;
  do {
    r = f();
  } while (r < 0 && errno == EINTR);
  return r < 0 ? -errno : r;
}

static Napi::Value Read(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  Bytes b = ArgBytes(info, 1, "buf");
  return Napi::Number::New(info.Env(),
                           static_cast<double>(NoEintr([&] { return read(fd, b.data, b.length); })));
}

static Napi::Value Write(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  Bytes b = ArgBytes(info, 1, "buf");
  // MSG_NOSIGNAL semantics for sockets: a closed peer must give EPIPE, not kill the process.
  ssize_t r = NoEintr([&] { return send(fd, b.data, b.length, MSG_NOSIGNAL | MSG_DONTWAIT); });
  if (r == -ENOTSOCK) r = NoEintr([&] { return write(fd, b.data, b.length); });
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

static Napi::Value Pread(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  Bytes b = ArgBytes(info, 1, "buf");
  off_t pos = static_cast<off_t>(ArgU64(info, 2, "position"));
  return Napi::Number::New(info.Env(),
                           static_cast<double>(NoEintr([&] { return pread(fd, b.data, b.length, pos); })));
}

static Napi::Value Pwrite(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  Bytes b = ArgBytes(info, 1, "buf");
  off_t pos = static_cast<off_t>(ArgU64(info, 2, "position"));
  return Napi::Number::New(info.Env(),
                           static_cast<double>(NoEintr([&] { return pwrite(fd, b.data, b.length, pos); })));
}

static Napi::Value Fdatasync(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  return Napi::Number::New(info.Env(), static_cast<double>(NoEintr([&] { return fdatasync(fd); })));
}

static Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  int mode = ArgI32(info, 1, "mode");
  off_t offset = static_cast<off_t>(ArgU64(info, 2, "offset"));
  off_t length = static_cast<off_t>(ArgU64(info, 3, "length"));
  return Napi::Number::New(info.Env(),
                           static_cast<double>(NoEintr([&] { return fallocate(fd, mode, offset, length); })));
}

static Napi::Value OpenTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "name");
  bool vnet_hdr = ArgBool(info, 1, "vnetHdr");
  if (name.size() >= IFNAMSIZ) ThrowRange(env, "tap name must be shorter than " + std::to_string(IFNAMSIZ));
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, "open", errno, "/dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    ThrowErrno(env, "TUNSETIFF", e, name);
  }
  if (vnet_hdr) {
    int hdr_size = 12;  // virtio_net_hdr_v1
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_size) < 0) {
      int e = errno;
      close(fd);
      ThrowErrno(env, "TUNSETVNETHDRSZ", e, name);
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("name", Napi::String::New(env, ifr.ifr_name));
  return out;
}

static sockaddr_un UnixAddress(Napi::Env env, const std::string& path) {
  sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    ThrowRange(env, "unix socket path must be 1.." + std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

static Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int backlog = ArgI32(info, 1, "backlog");
  sockaddr_un addr = UnixAddress(env, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
  // Owner-only: bind() creates the socket file with the socket inode's mode (less the umask). fchmod here
  // instead of changing the process-wide umask, which other threads may be relying on.
  fchmod(fd, 0600);
  int r = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int e = errno;
  if (r < 0) {
    close(fd);
    ThrowErrno(env, "bind", e, path);
  }
  if (listen(fd, backlog) < 0) {
    e = errno;
    close(fd);
    ThrowErrno(env, "listen", e, path);
  }
  return Napi::Number::New(env, fd);
}

static Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  sockaddr_un addr = UnixAddress(env, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno);
  int r;
  do {
    r = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    close(fd);
    ThrowErrno(env, "connect", e, path);
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return Napi::Number::New(env, fd);
}

static Napi::Value Accept(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  return Napi::Number::New(info.Env(), static_cast<double>(NoEintr([&] {
                             return accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                           })));
}

static Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  int how = ArgI32(info, 1, "how");
  return Napi::Number::New(info.Env(), static_cast<double>(NoEintr([&] { return shutdown(fd, how); })));
}

static Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  close(fd);
  return info.Env().Undefined();
}

Napi::Object HostIo(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("read", Napi::Function::New(env, Read, "read"));
  o.Set("write", Napi::Function::New(env, Write, "write"));
  o.Set("pread", Napi::Function::New(env, Pread, "pread"));
  o.Set("pwrite", Napi::Function::New(env, Pwrite, "pwrite"));
  o.Set("fdatasync", Napi::Function::New(env, Fdatasync, "fdatasync"));
  o.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  o.Set("openTap", Napi::Function::New(env, OpenTap, "openTap"));
  o.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  o.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  o.Set("accept", Napi::Function::New(env, Accept, "accept"));
  o.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  o.Set("close", Napi::Function::New(env, Close, "close"));
  return o;
}

}  // namespace nodekvm
