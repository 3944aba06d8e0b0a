#include "poller.h"

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

namespace nodekvm {

Napi::Function Poller::Init(Napi::Env env) {
  return DefineClass(env, "Poller",
                     {
                         InstanceAccessor<&Poller::Fd>("fd"),
                         InstanceMethod<&Poller::Add>("add"),
                         InstanceMethod<&Poller::Modify>("modify"),
                         InstanceMethod<&Poller::Remove>("remove"),
                         InstanceMethod<&Poller::Wait>("wait"),
                         InstanceMethod<&Poller::Close>("close"),
                     });
}

Poller::Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
  fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (fd_ < 0) ThrowErrno(info.Env(), "epoll_create1", errno);
}

Poller::~Poller() {
  if (fd_ >= 0) close(fd_);
}

int Poller::CheckedFd(Napi::Env env) {
  if (fd_ < 0) ThrowClosed(env, "Poller");
  return fd_;
}

Napi::Value Poller::Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

static Napi::Value Ctl(const Napi::CallbackInfo& info, int epfd, int op) {
  int fd = ArgFd(info, 0, "fd");
  epoll_event ev{};
  if (op != EPOLL_CTL_DEL) {
    ev.events = ArgU32(info, 1, "events");
    ev.data.u64 = static_cast<uint32_t>(ArgI32(info, 2, "tag"));
  }
  if (epoll_ctl(epfd, op, fd, &ev) < 0)
    ThrowErrno(info.Env(), "epoll_ctl", errno, "fd " + std::to_string(fd));
  return info.Env().Undefined();
}

// add(fd, events, tag)
Napi::Value Poller::Add(const Napi::CallbackInfo& info) {
  return Ctl(info, CheckedFd(info.Env()), EPOLL_CTL_ADD);
}
// modify(fd, events, tag)
Napi::Value Poller::Modify(const Napi::CallbackInfo& info) {
  return Ctl(info, CheckedFd(info.Env()), EPOLL_CTL_MOD);
}
// remove(fd)
Napi::Value Poller::Remove(const Napi::CallbackInfo& info) {
  return Ctl(info, CheckedFd(info.Env()), EPOLL_CTL_DEL);
}

// wait(out: Int32Array, timeoutMs, spinMicros = 0) → n; out holds [tag, events] pairs. EINTR counts as 0.
Napi::Value Poller::Wait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int epfd = CheckedFd(env);
  Napi::Value v = info[0];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    ThrowType(env, "out must be an Int32Array");
  }
  Napi::Int32Array out = v.As<Napi::Int32Array>();
  int timeout = ArgI32(info, 1, "timeoutMs");
  int64_t spin_ns =
      info.Length() > 2 && !info[2].IsUndefined() ? int64_t{ArgU32(info, 2, "spinMicros")} * 1000 : 0;
  int max = static_cast<int>(out.ElementLength() / 2);
  if (max <= 0) ThrowRange(env, "out must hold at least one [tag, events] pair");
  if (max > 64) max = 64;
  epoll_event events[64];
  int n = 0;
  // Poll without sleeping for up to spinMicros first: a vCPU exit usually follows within microseconds, and
  // sleeping in epoll_wait adds a wake-up latency to every one.
  if (spin_ns > 0 && timeout != 0) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t deadline = static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec + spin_ns;
    for (;;) {
      n = epoll_wait(epfd, events, max, 0);
      if (n != 0) break;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      if (static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec >= deadline) break;
    }
  }
  if (n == 0) n = epoll_wait(epfd, events, max, timeout);
  if (n < 0) {
    if (errno == EINTR) return Napi::Number::New(env, 0);
    ThrowErrno(env, "epoll_wait", errno);
  }
  int32_t* data = out.Data();
  for (int i = 0; i < n; i++) {
    data[2 * i] = static_cast<int32_t>(events[i].data.u64);
    data[2 * i + 1] = static_cast<int32_t>(events[i].events);
  }
  return Napi::Number::New(env, n);
}

Napi::Value Poller::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  return info.Env().Undefined();
}

}  // namespace nodekvm
