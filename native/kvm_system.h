// /dev/kvm: system ioctls and VM creation.
#pragma once

#include <napi.h>

namespace nodekvm {

class KvmSystem : public Napi::ObjectWrap<KvmSystem> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit KvmSystem(const Napi::CallbackInfo& info);
  ~KvmSystem() override;

 private:
  int CheckedFd(Napi::Env env);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);
  Napi::Value ApiVersion(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value VcpuMmapSize(const Napi::CallbackInfo& info);
  Napi::Value SupportedCpuid(const Napi::CallbackInfo& info);
  Napi::Value MsrIndexList(const Napi::CallbackInfo& info);
  Napi::Value CreateVm(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  int fd_ = -1;
};

}  // namespace nodekvm
