// epoll over the fds the VM thread waits on (vCPU exits, ioeventfds, backend fds, its control eventfd).
#pragma once

#include <napi.h>

namespace nodekvm {

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Poller(const Napi::CallbackInfo& info);
  ~Poller() override;

 private:
  int CheckedFd(Napi::Env env);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Add(const Napi::CallbackInfo& info);
  Napi::Value Modify(const Napi::CallbackInfo& info);
  Napi::Value Remove(const Napi::CallbackInfo& info);
  Napi::Value Wait(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  int fd_ = -1;
};

}  // namespace nodekvm
