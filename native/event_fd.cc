#include "event_fd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "common.h"

namespace nodekvm {

Napi::Function EventFd::Init(Napi::Env env) {
  return DefineClass(env, "EventFd",
                     {
                         InstanceAccessor<&EventFd::Fd>("fd"),
                         InstanceAccessor<&EventFd::Closed>("closed"),
                         InstanceMethod<&EventFd::Read>("read"),
                         InstanceMethod<&EventFd::Write>("write"),
                         InstanceMethod<&EventFd::Close>("close"),
                     });
}

// new EventFd(initval, nonblocking, semaphore)
EventFd::EventFd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EventFd>(info) {
  uint32_t initval = ArgU32(info, 0, "initval");
  int flags = EFD_CLOEXEC;
  if (ArgBool(info, 1, "nonblocking")) flags |= EFD_NONBLOCK;
  if (ArgBool(info, 2, "semaphore")) flags |= EFD_SEMAPHORE;
  fd_ = eventfd(initval, flags);
  if (fd_ < 0) ThrowErrno(info.Env(), "eventfd", errno);
}

EventFd::~EventFd() {
  if (fd_ >= 0) close(fd_);
}

int EventFd::CheckedFd(Napi::Env env) {
  if (fd_ < 0) ThrowClosed(env, "EventFd");
  return fd_;
}

Napi::Value EventFd::Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value EventFd::Closed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), fd_ < 0);
}

// read() → the counter (then reset to 0), or 0 when nonblocking and nothing was signalled.
Napi::Value EventFd::Read(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  uint64_t value = 0;
  ssize_t n;
  do {
    n = read(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return Napi::Number::New(info.Env(), 0);
    ThrowErrno(info.Env(), "read", errno, "eventfd");
  }
  return Napi::Number::New(info.Env(), static_cast<double>(value));
}

// write(n = 1): adds n to the counter.
Napi::Value EventFd::Write(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  uint64_t value = info.Length() > 0 && !info[0].IsUndefined() ? ArgU64(info, 0, "value") : 1;
  if (value == 0 || value == UINT64_MAX) ThrowRange(info.Env(), "value must be in [1, 2^64 - 1)");
  ssize_t n;
  do {
    n = write(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowErrno(info.Env(), "write", errno, "eventfd");
  return info.Env().Undefined();
}

Napi::Value EventFd::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  return info.Env().Undefined();
}

}  // namespace nodekvm
