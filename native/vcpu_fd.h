// A vCPU fd: KVM_RUN, the mmapped kvm_run page, and register/state ioctls.
#pragma once

#include <napi.h>
#include <pthread.h>

#include <atomic>
#include <memory>

#include "kvm_abi.h"

namespace nodekvm {

// Shared by the JS object and a VcpuThread (if any) so the fd and kvm_run page outlive both.
struct VcpuState {
  int fd = -1;
  int id = 0;
  kvm_run* run = nullptr;
  size_t mmap_size = 0;
  std::atomic<bool> in_run{false};
  std::atomic<bool> runner_attached{false};
  std::atomic<pthread_t> thread{};

  // One KVM_RUN on the calling thread; returns exit_reason, KVM_EXIT_INTR on EINTR, or -errno.
  int RunOnce();
  // Makes a KVM_RUN in progress (or the next one) return EINTR promptly, from any thread.
  void Kick();
  // Unmaps kvm_run and closes the fd now (idempotent); the kernel frees the vCPU once both are gone.
  void Release();
  ~VcpuState() { Release(); }
};

class VcpuFd : public Napi::ObjectWrap<VcpuFd> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit VcpuFd(const Napi::CallbackInfo& info);
  ~VcpuFd() override;

  std::shared_ptr<VcpuState> state() const { return state_; }
  static VcpuFd* Unwrap(const Napi::Value& v);

 private:
  VcpuState& Checked(Napi::Env env);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Id(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);
  Napi::Value RunBuffer(const Napi::CallbackInfo& info);
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value Kick(const Napi::CallbackInfo& info);
  Napi::Value GetRegs(const Napi::CallbackInfo& info);
  Napi::Value SetRegs(const Napi::CallbackInfo& info);
  Napi::Value GetSregs(const Napi::CallbackInfo& info);
  Napi::Value SetSregs(const Napi::CallbackInfo& info);
  Napi::Value GetFpu(const Napi::CallbackInfo& info);
  Napi::Value SetFpu(const Napi::CallbackInfo& info);
  Napi::Value GetMsrs(const Napi::CallbackInfo& info);
  Napi::Value SetMsrs(const Napi::CallbackInfo& info);
  Napi::Value SetCpuid2(const Napi::CallbackInfo& info);
  Napi::Value GetLapic(const Napi::CallbackInfo& info);
  Napi::Value SetLapic(const Napi::CallbackInfo& info);
  Napi::Value GetMpState(const Napi::CallbackInfo& info);
  Napi::Value SetMpState(const Napi::CallbackInfo& info);
  Napi::Value GetVcpuEvents(const Napi::CallbackInfo& info);
  Napi::Value SetVcpuEvents(const Napi::CallbackInfo& info);
  Napi::Value SetGuestDebug(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  std::shared_ptr<VcpuState> state_;
  Napi::Reference<Napi::ArrayBuffer> run_buffer_;
  bool closed_ = false;
  int id_ = 0;
};

}  // namespace nodekvm
