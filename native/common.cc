#include "common.h"

#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>

#include <cmath>
#include <mutex>

namespace nodekvm {

static const char* ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;
#endif
  switch (err) {
    case EPERM:
      return "EPERM";
    case ENOENT:
      return "ENOENT";
    case EINTR:
      return "EINTR";
    case EIO:
      return "EIO";
    case EBADF:
      return "EBADF";
    case EAGAIN:
      return "EAGAIN";
    case ENOMEM:
      return "ENOMEM";
    case EACCES:
      return "EACCES";
    case EFAULT:
      return "EFAULT";
    case EBUSY:
      return "EBUSY";
    case EEXIST:
      return "EEXIST";
    case ENODEV:
      return "ENODEV";
    case EINVAL:
      return "EINVAL";
    case ENOSPC:
      return "ENOSPC";
    case ENOSYS:
      return "ENOSYS";
    case ENOTTY:
      return "ENOTTY";
    case E2BIG:
      return "E2BIG";
    case ENXIO:
      return "ENXIO";
    default:
      return "UNKNOWN";
  }
}

void ThrowErrno(Napi::Env env, const char* syscall, int err, const std::string& detail) {
  std::string code = ErrnoName(err);
  std::string message = std::string(syscall) + " failed: " + code + " (" + strerror(err) + ")";
  if (!detail.empty()) message += ": " + detail;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  throw error;
}

void ThrowClosed(Napi::Env env, const char* what) {
  Napi::Error error = Napi::Error::New(env, std::string(what) + " is closed");
  error.Set("code", Napi::String::New(env, "ERR_KVM_CLOSED"));
  throw error;
}

void ThrowType(Napi::Env env, const std::string& message) { throw Napi::TypeError::New(env, message); }
void ThrowRange(Napi::Env env, const std::string& message) { throw Napi::RangeError::New(env, message); }

uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t out = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowRange(info.Env(), std::string(name) + " must fit in 64 unsigned bits");
    return out;
  }
  if (!v.IsNumber()) ThrowType(info.Env(), std::string(name) + " must be a number or bigint");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d) {
    ThrowRange(info.Env(), std::string(name) + " must be a non-negative safe integer");
  }
  return static_cast<uint64_t>(d);
}

uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) ThrowType(info.Env(), std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 4294967295.0 || std::floor(d) != d) {
    ThrowRange(info.Env(), std::string(name) + " must be an integer in [0, 2^32)");
  }
  return static_cast<uint32_t>(d);
}

int32_t ArgI32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) ThrowType(info.Env(), std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= -2147483648.0) || d > 2147483647.0 || std::floor(d) != d) {
    ThrowRange(info.Env(), std::string(name) + " must be a 32-bit integer");
  }
  return static_cast<int32_t>(d);
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) ThrowType(info.Env(), std::string(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name) {
  int32_t fd = ArgI32(info, i, name);
  if (fd < 0) ThrowRange(info.Env(), std::string(name) + " must be a non-negative file descriptor");
  return fd;
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsString()) ThrowType(info.Env(), std::string(name) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Bytes ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* name, size_t expected) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowType(info.Env(), std::string(name) + " must be a Uint8Array");
  }
  Napi::Uint8Array a = v.As<Napi::Uint8Array>();
  if (expected != 0 && a.ByteLength() != expected) {
    ThrowRange(info.Env(),
               std::string(name) + " must be exactly " + std::to_string(expected) + " bytes long");
  }
  return Bytes{a.Data(), a.ByteLength()};
}

int KickSignal() { return SIGRTMIN + 3; }

static void KickHandler(int) {}

void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = KickHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(KickSignal(), &sa, nullptr);
  });
}

int IoctlRetry(int fd, unsigned long request, void* arg) {
  int r;
  do {
    r = ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

LiveMappings& Live() {
  static LiveMappings live;
  return live;
}

}  // namespace nodekvm
