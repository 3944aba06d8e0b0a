#include "vcpu_thread.h"

#include <time.h>
#include <unistd.h>

#include "common.h"

namespace nodekvm {

Napi::Function VcpuThread::Init(Napi::Env env) {
  return DefineClass(env, "VcpuThread",
                     {
                         InstanceMethod<&VcpuThread::Start>("start"),
                         InstanceMethod<&VcpuThread::Resume>("resume"),
                         InstanceMethod<&VcpuThread::Pause>("pause"),
                         InstanceMethod<&VcpuThread::Unpause>("unpause"),
                         InstanceMethod<&VcpuThread::Stop>("stop"),
                         InstanceAccessor<&VcpuThread::GetState>("state"),
                         InstanceAccessor<&VcpuThread::LastExit>("lastExit"),
                         InstanceAccessor<&VcpuThread::Exits>("exits"),
                         InstanceMethod<&VcpuThread::TakeExit>("takeExit"),
                     });
}

static int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// new VcpuThread(vcpuFd, notifyEventFd, spinMicros = 50)
VcpuThread::VcpuThread(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VcpuThread>(info) {
  Napi::Env env = info.Env();
  if (info.Length() > 2 && !info[2].IsUndefined())
    spin_ns_ = static_cast<int64_t>(ArgU32(info, 2, "spinMicros")) * 1000;
  VcpuFd* vcpu = VcpuFd::Unwrap(info[0]);
  if (vcpu == nullptr) ThrowType(env, "vcpu must be a VcpuFd");
  vcpu_ = vcpu->state();
  if (!vcpu_ || vcpu_->fd < 0) ThrowClosed(env, "VcpuFd");
  notify_fd_ = ArgFd(info, 1, "notifyEventFd");
  bool expected = false;
  if (!vcpu_->runner_attached.compare_exchange_strong(expected, true)) {
    Napi::Error e = Napi::Error::New(env, "VcpuFd already has a VcpuThread");
    e.Set("code", Napi::String::New(env, "ERR_KVM_VCPU_BUSY"));
    throw e;
  }
  InstallKickHandler();
}

VcpuThread::~VcpuThread() { StopAndJoin(); }

void VcpuThread::Notify() {
  uint64_t one = 1;
  ssize_t r;
  do {
    r = write(notify_fd_, &one, sizeof one);
  } while (r < 0 && errno == EINTR);
}

void VcpuThread::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_requested_) {
    if (pause_requested_) {
      state_ = kPaused;
      Notify();
      cv_.wait(lock, [this] { return !pause_requested_ || stop_requested_; });
      state_ = kRunning;
      continue;
    }
    state_ = kRunning;
    lock.unlock();
    int r = vcpu_->RunOnce();
    if (r == KVM_EXIT_INTR) {
      // Kicked: clear the request, then re-check pause/stop under the lock (they were set before the kick).
      __atomic_store_n(&vcpu_->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
      lock.lock();
      continue;
    }
    lock.lock();
    last_exit_ = r;
    exits_++;
    state_ = kExited;
    resume_.store(false);
    Notify();
    // Spin a little first: the VM thread usually handles the exit within microseconds, and a futex sleep plus
    // wake-up costs more than that.
    lock.unlock();
    for (int64_t deadline = NowNs() + spin_ns_;
         !resume_.load() && !stop_flag_.load() && NowNs() < deadline;) {
      __builtin_ia32_pause();
    }
    lock.lock();
    cv_.wait(lock, [this] { return resume_.load() || stop_requested_; });
  }
  state_ = kStopped;
  Notify();
}

Napi::Value VcpuThread::Start(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || state_ == kStopped) {
    ThrowRange(info.Env(), "VcpuThread was already started");
  }
  state_ = kRunning;
  thread_ = std::thread([this] { Loop(); });
  return info.Env().Undefined();
}

// resume(): the exit was handled; enter the guest again.
Napi::Value VcpuThread::Resume(const Napi::CallbackInfo& info) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != kExited) ThrowRange(info.Env(), "resume() is only valid after an exit");
    state_ = kRunning;
    resume_.store(true);
  }
  cv_.notify_all();
  return info.Env().Undefined();
}

// pause(): kick the vCPU out of the guest and park it; the eventfd fires when it is parked.
Napi::Value VcpuThread::Pause(const Napi::CallbackInfo& info) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pause_requested_ = true;
  }
  vcpu_->Kick();
  return info.Env().Undefined();
}

Napi::Value VcpuThread::Unpause(const Napi::CallbackInfo& info) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pause_requested_ = false;
  }
  cv_.notify_all();
  return info.Env().Undefined();
}

void VcpuThread::StopAndJoin() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_requested_ = true;
    stop_flag_.store(true);
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    vcpu_->Kick();
    thread_.join();
  }
  if (vcpu_) {
    if (vcpu_->run != nullptr) __atomic_store_n(&vcpu_->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    vcpu_->runner_attached.store(false);
  }
  state_ = kStopped;
}

// stop(): leave the guest for good and join the thread. The VcpuFd can be closed afterwards.
Napi::Value VcpuThread::Stop(const Napi::CallbackInfo& info) {
  StopAndJoin();
  return info.Env().Undefined();
}

Napi::Value VcpuThread::GetState(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  return Napi::Number::New(info.Env(), state_);
}

// The last exit: a KVM exit reason, or -errno when KVM_RUN failed.
Napi::Value VcpuThread::LastExit(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  return Napi::Number::New(info.Env(), last_exit_);
}

// takeExit(): consumes the notification and returns the pending exit (an exit reason, or -errno when KVM_RUN
// failed), or NO_EXIT_BASE - state when the thread is not parked on an exit. One call per exit on the hot
// path.
Napi::Value VcpuThread::TakeExit(const Napi::CallbackInfo& info) {
  uint64_t counter;
  ssize_t n;
  do {
    n = read(notify_fd_, &counter, sizeof counter);
  } while (n < 0 && errno == EINTR);
  std::lock_guard<std::mutex> lock(mu_);
  return Napi::Number::New(info.Env(),
                           state_ == kExited ? last_exit_ : kNoExitBase - static_cast<int>(state_));
}

Napi::Value VcpuThread::Exits(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  return Napi::Number::New(info.Env(), exits_);
}

}  // namespace nodekvm
