// A VM fd: memory slots, interrupt controller, eventfds, clocks, vCPU creation.
#pragma once

#include <napi.h>

#include <map>
#include <memory>

#include "guest_mapping.h"

namespace nodekvm {

class VmFd : public Napi::ObjectWrap<VmFd> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit VmFd(const Napi::CallbackInfo& info);
  ~VmFd() override;

 private:
  int CheckedFd(Napi::Env env);
  void ReleaseSlots();
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value SetUserMemoryRegion(const Napi::CallbackInfo& info);
  Napi::Value SetTssAddr(const Napi::CallbackInfo& info);
  Napi::Value SetIdentityMapAddr(const Napi::CallbackInfo& info);
  Napi::Value CreateIrqchip(const Napi::CallbackInfo& info);
  Napi::Value CreatePit2(const Napi::CallbackInfo& info);
  Napi::Value IrqLine(const Napi::CallbackInfo& info);
  Napi::Value Ioeventfd(const Napi::CallbackInfo& info);
  Napi::Value Irqfd(const Napi::CallbackInfo& info);
  Napi::Value GetDirtyLog(const Napi::CallbackInfo& info);
  Napi::Value GetClock(const Napi::CallbackInfo& info);
  Napi::Value SetClock(const Napi::CallbackInfo& info);
  Napi::Value CreateVcpu(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  int fd_ = -1;
  int vcpu_mmap_size_ = 0;
  // Mappings pinned by memory slots: a mapping cannot be unmapped while a slot points into it.
  struct Slot {
    std::shared_ptr<MappingState> mapping;
    uint64_t size;
  };
  std::map<uint32_t, Slot> slots_;
};

}  // namespace nodekvm
