// Runs KVM_RUN for one vCPU on its own native thread. Each exit that needs the VMM parks the thread and
// signals an eventfd; the VM thread handles the exit through the shared kvm_run page and calls resume().
#pragma once

#include <napi.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "vcpu_fd.h"

namespace nodekvm {

class VcpuThread : public Napi::ObjectWrap<VcpuThread> {
 public:
  enum State { kIdle = 0, kRunning = 1, kExited = 2, kPaused = 3, kStopped = 4 };
  // takeExit() returns kNoExitBase - state when there is no exit to handle.
  static constexpr int kNoExitBase = -0x10000;

  static Napi::Function Init(Napi::Env env);
  explicit VcpuThread(const Napi::CallbackInfo& info);
  ~VcpuThread() override;

 private:
  void Loop();
  void Notify();
  void StopAndJoin();
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Resume(const Napi::CallbackInfo& info);
  Napi::Value Pause(const Napi::CallbackInfo& info);
  Napi::Value Unpause(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value LastExit(const Napi::CallbackInfo& info);
  Napi::Value Exits(const Napi::CallbackInfo& info);
  Napi::Value TakeExit(const Napi::CallbackInfo& info);

  std::shared_ptr<VcpuState> vcpu_;
  int notify_fd_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  State state_ = kIdle;
  // Atomic so the vCPU thread can spin on it briefly before sleeping on the condition variable.
  std::atomic<bool> resume_{false};
  std::atomic<bool> stop_flag_{false};
  // How long the vCPU thread spins for a resume before sleeping (the VM thread usually answers in a few µs).
  int64_t spin_ns_ = 50000;
  bool pause_requested_ = false;
  bool stop_requested_ = false;
  int last_exit_ = 0;
  double exits_ = 0;
};

}  // namespace nodekvm
