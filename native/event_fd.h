// eventfd(2): the doorbell KVM uses for ioeventfd/irqfd and the VMM uses between threads.
#pragma once

#include <napi.h>

namespace nodekvm {

class EventFd : public Napi::ObjectWrap<EventFd> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit EventFd(const Napi::CallbackInfo& info);
  ~EventFd() override;

 private:
  int CheckedFd(Napi::Env env);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  int fd_ = -1;
};

}  // namespace nodekvm
