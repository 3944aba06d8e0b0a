#include "vcpu_fd.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "addon_data.h"
#include "common.h"

namespace nodekvm {

int VcpuState::RunOnce() {
  thread.store(pthread_self());
  in_run.store(true);
  int r = ioctl(fd, KVM_RUN, 0);
  int err = errno;
  in_run.store(false);
  if (r < 0) return err == EINTR ? KVM_EXIT_INTR : -err;
  return static_cast<int>(run->exit_reason);
}

void VcpuState::Kick() {
  if (run == nullptr) return;
  // immediate_exit first: a thread about to enter KVM_RUN sees it; one already inside gets the signal.
  __atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
  if (in_run.load()) pthread_kill(thread.load(), KickSignal());
}

void VcpuState::Release() {
  if (run != nullptr) {
    munmap(run, mmap_size);
    Live().vcpu_run--;
  }
  run = nullptr;
  if (fd >= 0) close(fd);
  fd = -1;
}

Napi::Function VcpuFd::Init(Napi::Env env) {
  return DefineClass(env, "VcpuFd",
                     {
                         InstanceAccessor<&VcpuFd::Fd>("fd"),
                         InstanceAccessor<&VcpuFd::Id>("id"),
                         InstanceAccessor<&VcpuFd::Closed>("closed"),
                         InstanceAccessor<&VcpuFd::RunBuffer>("runBuffer"),
                         InstanceMethod<&VcpuFd::Run>("run"),
                         InstanceMethod<&VcpuFd::Kick>("kick"),
                         InstanceMethod<&VcpuFd::GetRegs>("getRegs"),
                         InstanceMethod<&VcpuFd::SetRegs>("setRegs"),
                         InstanceMethod<&VcpuFd::GetSregs>("getSregs"),
                         InstanceMethod<&VcpuFd::SetSregs>("setSregs"),
                         InstanceMethod<&VcpuFd::GetFpu>("getFpu"),
                         InstanceMethod<&VcpuFd::SetFpu>("setFpu"),
                         InstanceMethod<&VcpuFd::GetMsrs>("getMsrs"),
                         InstanceMethod<&VcpuFd::SetMsrs>("setMsrs"),
                         InstanceMethod<&VcpuFd::SetCpuid2>("setCpuid2"),
                         InstanceMethod<&VcpuFd::GetLapic>("getLapic"),
                         InstanceMethod<&VcpuFd::SetLapic>("setLapic"),
                         InstanceMethod<&VcpuFd::GetMpState>("getMpState"),
                         InstanceMethod<&VcpuFd::SetMpState>("setMpState"),
                         InstanceMethod<&VcpuFd::GetVcpuEvents>("getVcpuEvents"),
                         InstanceMethod<&VcpuFd::SetVcpuEvents>("setVcpuEvents"),
                         InstanceMethod<&VcpuFd::SetGuestDebug>("setGuestDebug"),
                         InstanceMethod<&VcpuFd::Close>("close"),
                     });
}

// Constructed only by VmFd.createVcpu(): (token, fd, mmapSize, id).
VcpuFd::VcpuFd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VcpuFd>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 4 || !IsNativeToken(info[0])) {
    ThrowType(env, "VcpuFd cannot be constructed directly; use VmFd.createVcpu()");
  }
  auto state = std::make_shared<VcpuState>();
  state->fd = ArgFd(info, 1, "fd");
  state->mmap_size = static_cast<size_t>(ArgI32(info, 2, "mmapSize"));
  state->id = ArgI32(info, 3, "id");
  id_ = state->id;
  void* run = mmap(nullptr, state->mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, state->fd, 0);
  if (run == MAP_FAILED) ThrowErrno(env, "mmap", errno, "kvm_run");  // state's destructor closes the fd
  state->run = static_cast<kvm_run*>(run);
  Live().vcpu_run++;
  state_ = state;
  InstallKickHandler();
  auto* hint = new std::shared_ptr<VcpuState>(state_);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, state_->run, state_->mmap_size, [](Napi::Env, void*, std::shared_ptr<VcpuState>* h) { delete h; },
      hint);
  run_buffer_ = Napi::Persistent(ab);
}

VcpuFd::~VcpuFd() { run_buffer_.Reset(); }

VcpuFd* VcpuFd::Unwrap(const Napi::Value& v) {
  if (!v.IsObject()) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.InstanceOf(GetAddonData(v.Env()).vcpu_fd.Value())) return nullptr;
  return Napi::ObjectWrap<VcpuFd>::Unwrap(o);
}

VcpuState& VcpuFd::Checked(Napi::Env env) {
  if (closed_) ThrowClosed(env, "VcpuFd");
  return *state_;
}

Napi::Value VcpuFd::Fd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), closed_ ? -1 : state_->fd);
}

Napi::Value VcpuFd::Id(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), id_); }

Napi::Value VcpuFd::Closed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed_); }

Napi::Value VcpuFd::RunBuffer(const Napi::CallbackInfo& info) {
  Checked(info.Env());
  return run_buffer_.Value();
}

// KVM_RUN on the calling thread → exit_reason (KVM_EXIT_INTR when interrupted). Allocates nothing.
Napi::Value VcpuFd::Run(const Napi::CallbackInfo& info) {
  VcpuState& s = Checked(info.Env());
  if (s.runner_attached.load()) {
    Napi::Error e = Napi::Error::New(info.Env(), "VcpuFd is driven by a VcpuThread; use the thread instead");
    e.Set("code", Napi::String::New(info.Env(), "ERR_KVM_VCPU_BUSY"));
    throw e;
  }
  int r = s.RunOnce();
  if (r < 0) ThrowErrno(info.Env(), "KVM_RUN", -r);
  return Napi::Number::New(info.Env(), r);
}

// Sets immediate_exit and signals the thread inside KVM_RUN, if any.
Napi::Value VcpuFd::Kick(const Napi::CallbackInfo& info) {
  Checked(info.Env()).Kick();
  return info.Env().Undefined();
}

template <unsigned long Request, typename T>
static Napi::Value StructIoctl(const Napi::CallbackInfo& info, VcpuState& s, const char* name) {
  Bytes b = ArgBytes(info, 0, "buffer", sizeof(T));
  if (IoctlRetry(s.fd, Request, b.data) < 0) ThrowErrno(info.Env(), name, errno);
  return info.Env().Undefined();
}

// Each accessor takes a Uint8Array of exactly sizeof(struct); the TypeScript layer encodes/decodes it.
Napi::Value VcpuFd::GetRegs(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_GET_REGS, kvm_regs>(info, Checked(info.Env()), "KVM_GET_REGS");
}
Napi::Value VcpuFd::SetRegs(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_SET_REGS, kvm_regs>(info, Checked(info.Env()), "KVM_SET_REGS");
}
Napi::Value VcpuFd::GetSregs(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_GET_SREGS, kvm_sregs>(info, Checked(info.Env()), "KVM_GET_SREGS");
}
Napi::Value VcpuFd::SetSregs(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_SET_SREGS, kvm_sregs>(info, Checked(info.Env()), "KVM_SET_SREGS");
}
Napi::Value VcpuFd::GetFpu(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_GET_FPU, kvm_fpu>(info, Checked(info.Env()), "KVM_GET_FPU");
}
Napi::Value VcpuFd::SetFpu(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_SET_FPU, kvm_fpu>(info, Checked(info.Env()), "KVM_SET_FPU");
}
Napi::Value VcpuFd::GetLapic(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_GET_LAPIC, kvm_lapic_state>(info, Checked(info.Env()), "KVM_GET_LAPIC");
}
Napi::Value VcpuFd::SetLapic(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_SET_LAPIC, kvm_lapic_state>(info, Checked(info.Env()), "KVM_SET_LAPIC");
}
Napi::Value VcpuFd::GetMpState(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_GET_MP_STATE, kvm_mp_state>(info, Checked(info.Env()), "KVM_GET_MP_STATE");
}
Napi::Value VcpuFd::SetMpState(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_SET_MP_STATE, kvm_mp_state>(info, Checked(info.Env()), "KVM_SET_MP_STATE");
}
Napi::Value VcpuFd::GetVcpuEvents(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_GET_VCPU_EVENTS, kvm_vcpu_events>(info, Checked(info.Env()), "KVM_GET_VCPU_EVENTS");
}
Napi::Value VcpuFd::SetVcpuEvents(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_SET_VCPU_EVENTS, kvm_vcpu_events>(info, Checked(info.Env()), "KVM_SET_VCPU_EVENTS");
}
Napi::Value VcpuFd::SetGuestDebug(const Napi::CallbackInfo& info) {
  return StructIoctl<KVM_SET_GUEST_DEBUG, kvm_guest_debug>(info, Checked(info.Env()), "KVM_SET_GUEST_DEBUG");
}

// Variable-length structs (kvm_msrs, kvm_cpuid2): an 8-byte header with a count, then count entries.
static uint32_t CheckCounted(const Napi::CallbackInfo& info, const Bytes& b, size_t entry_size,
                             const char* name) {
  if (b.length < 8) ThrowRange(info.Env(), std::string(name) + " buffer is shorter than its 8-byte header");
  uint32_t count;
  memcpy(&count, b.data, sizeof count);
  if (b.length != 8 + static_cast<size_t>(count) * entry_size) {
    ThrowRange(info.Env(), std::string(name) + " buffer length does not match its entry count");
  }
  return count;
}

// KVM_GET_MSRS(kvm_msrs bytes) → number of MSRs read.
Napi::Value VcpuFd::GetMsrs(const Napi::CallbackInfo& info) {
  VcpuState& s = Checked(info.Env());
  Bytes b = ArgBytes(info, 0, "buffer");
  CheckCounted(info, b, sizeof(kvm_msr_entry), "kvm_msrs");
  int r = IoctlRetry(s.fd, KVM_GET_MSRS, b.data);
  if (r < 0) ThrowErrno(info.Env(), "KVM_GET_MSRS", errno);
  return Napi::Number::New(info.Env(), r);
}

// KVM_SET_MSRS(kvm_msrs bytes) → number of MSRs written.
Napi::Value VcpuFd::SetMsrs(const Napi::CallbackInfo& info) {
  VcpuState& s = Checked(info.Env());
  Bytes b = ArgBytes(info, 0, "buffer");
  CheckCounted(info, b, sizeof(kvm_msr_entry), "kvm_msrs");
  int r = IoctlRetry(s.fd, KVM_SET_MSRS, b.data);
  if (r < 0) ThrowErrno(info.Env(), "KVM_SET_MSRS", errno);
  return Napi::Number::New(info.Env(), r);
}

// KVM_SET_CPUID2(kvm_cpuid2 bytes)
Napi::Value VcpuFd::SetCpuid2(const Napi::CallbackInfo& info) {
  VcpuState& s = Checked(info.Env());
  Bytes b = ArgBytes(info, 0, "buffer");
  CheckCounted(info, b, sizeof(kvm_cpuid_entry2), "kvm_cpuid2");
  if (IoctlRetry(s.fd, KVM_SET_CPUID2, b.data) < 0) ThrowErrno(info.Env(), "KVM_SET_CPUID2", errno);
  return info.Env().Undefined();
}

Napi::Value VcpuFd::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) return env.Undefined();
  if (state_->runner_attached.load()) {
    Napi::Error e = Napi::Error::New(env, "VcpuFd is driven by a VcpuThread; stop the thread first");
    e.Set("code", Napi::String::New(env, "ERR_KVM_VCPU_BUSY"));
    throw e;
  }
  Napi::ArrayBuffer ab = run_buffer_.Value();
  if (!ab.IsDetached()) ab.Detach();
  run_buffer_.Reset();
  state_->Release();
  closed_ = true;
  return env.Undefined();
}

}  // namespace nodekvm
