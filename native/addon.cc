// node-kvm native addon: one class per fd kind, plus struct sizes the TypeScript layer checks itself against.
#include <napi.h>

#include "addon_data.h"
#include "common.h"
#include "event_fd.h"
#include "guest_mapping.h"
#include "host_io.h"
#include "kvm_abi.h"
#include "kvm_system.h"
#include "poller.h"
#include "vcpu_fd.h"
#include "vcpu_thread.h"
#include "vm_fd.h"

namespace nodekvm {

static Napi::Object StructSizes(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("kvm_run", Napi::Number::New(env, sizeof(kvm_run)));
  o.Set("kvm_regs", Napi::Number::New(env, sizeof(kvm_regs)));
  o.Set("kvm_sregs", Napi::Number::New(env, sizeof(kvm_sregs)));
  o.Set("kvm_fpu", Napi::Number::New(env, sizeof(kvm_fpu)));
  o.Set("kvm_msr_entry", Napi::Number::New(env, sizeof(kvm_msr_entry)));
  o.Set("kvm_cpuid_entry2", Napi::Number::New(env, sizeof(kvm_cpuid_entry2)));
  o.Set("kvm_lapic_state", Napi::Number::New(env, sizeof(kvm_lapic_state)));
  o.Set("kvm_mp_state", Napi::Number::New(env, sizeof(kvm_mp_state)));
  o.Set("kvm_vcpu_events", Napi::Number::New(env, sizeof(kvm_vcpu_events)));
  o.Set("kvm_guest_debug", Napi::Number::New(env, sizeof(kvm_guest_debug)));
  o.Set("kvm_clock_data", Napi::Number::New(env, sizeof(kvm_clock_data)));
  return o;
}

static Napi::Value LiveMappingCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("guest", Napi::Number::New(env, static_cast<double>(Live().guest.load())));
  o.Set("guestBytes", Napi::Number::New(env, static_cast<double>(Live().guest_bytes.load())));
  o.Set("vcpuRun", Napi::Number::New(env, static_cast<double>(Live().vcpu_run.load())));
  return o;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  Napi::Function vm = VmFd::Init(env);
  Napi::Function vcpu = VcpuFd::Init(env);
  Napi::Function mapping = GuestMapping::Init(env);
  data->vm_fd = Napi::Persistent(vm);
  data->vcpu_fd = Napi::Persistent(vcpu);
  data->guest_mapping = Napi::Persistent(mapping);
  exports.Set("KvmSystem", KvmSystem::Init(env));
  exports.Set("VmFd", vm);
  exports.Set("VcpuFd", vcpu);
  exports.Set("GuestMapping", mapping);
  exports.Set("EventFd", EventFd::Init(env));
  exports.Set("Poller", Poller::Init(env));
  exports.Set("VcpuThread", VcpuThread::Init(env));
  exports.Set("hostIo", HostIo(env));
  exports.Set("structSizes", StructSizes(env));
  exports.Set("liveMappings", Napi::Function::New(env, LiveMappingCounts, "liveMappings"));
  return exports;
}

}  // namespace nodekvm

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return nodekvm::Init(env, exports); }

NODE_API_MODULE(node_kvm, InitAddon)
