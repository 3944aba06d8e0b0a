#include "kvm_system.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <vector>

#include "addon_data.h"
#include "common.h"
#include "kvm_abi.h"

namespace nodekvm {

Napi::Function KvmSystem::Init(Napi::Env env) {
  return DefineClass(env, "KvmSystem",
                     {
                         InstanceAccessor<&KvmSystem::Fd>("fd"),
                         InstanceAccessor<&KvmSystem::Closed>("closed"),
                         InstanceMethod<&KvmSystem::ApiVersion>("apiVersion"),
                         InstanceMethod<&KvmSystem::CheckExtension>("checkExtension"),
                         InstanceMethod<&KvmSystem::VcpuMmapSize>("vcpuMmapSize"),
                         InstanceMethod<&KvmSystem::SupportedCpuid>("supportedCpuid"),
                         InstanceMethod<&KvmSystem::MsrIndexList>("msrIndexList"),
                         InstanceMethod<&KvmSystem::CreateVm>("createVm"),
                         InstanceMethod<&KvmSystem::Close>("close"),
                     });
}

// new KvmSystem(path)
KvmSystem::KvmSystem(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvmSystem>(info) {
  std::string path = ArgString(info, 0, "path");
  fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) ThrowErrno(info.Env(), "open", errno, path);
}

KvmSystem::~KvmSystem() {
  if (fd_ >= 0) close(fd_);
}

int KvmSystem::CheckedFd(Napi::Env env) {
  if (fd_ < 0) ThrowClosed(env, "KvmSystem");
  return fd_;
}

Napi::Value KvmSystem::Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value KvmSystem::Closed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), fd_ < 0);
}

// KVM_GET_API_VERSION
Napi::Value KvmSystem::ApiVersion(const Napi::CallbackInfo& info) {
  int r = IoctlRetry(CheckedFd(info.Env()), KVM_GET_API_VERSION, nullptr);
  if (r < 0) ThrowErrno(info.Env(), "KVM_GET_API_VERSION", errno);
  return Napi::Number::New(info.Env(), r);
}

// KVM_CHECK_EXTENSION(cap) → 0 when absent, else a capability-specific positive value.
Napi::Value KvmSystem::CheckExtension(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  uint32_t cap = ArgU32(info, 0, "cap");
  int r = ioctl(fd, KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
  if (r < 0) ThrowErrno(info.Env(), "KVM_CHECK_EXTENSION", errno);
  return Napi::Number::New(info.Env(), r);
}

// KVM_GET_VCPU_MMAP_SIZE
Napi::Value KvmSystem::VcpuMmapSize(const Napi::CallbackInfo& info) {
  int r = IoctlRetry(CheckedFd(info.Env()), KVM_GET_VCPU_MMAP_SIZE, nullptr);
  if (r < 0) ThrowErrno(info.Env(), "KVM_GET_VCPU_MMAP_SIZE", errno);
  return Napi::Number::New(info.Env(), r);
}

// KVM_GET_SUPPORTED_CPUID → struct kvm_cpuid2 bytes (8-byte header + nent × 40-byte entries).
Napi::Value KvmSystem::SupportedCpuid(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  for (uint32_t nent = 128; nent <= 4096; nent *= 2) {
    size_t bytes = sizeof(kvm_cpuid2) + nent * sizeof(kvm_cpuid_entry2);
    std::vector<uint8_t> buf(bytes, 0);
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
    cpuid->nent = nent;
    if (IoctlRetry(fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0) {
      size_t used = sizeof(kvm_cpuid2) + cpuid->nent * sizeof(kvm_cpuid_entry2);
      return Napi::Buffer<uint8_t>::Copy(info.Env(), buf.data(), used);
    }
    if (errno != E2BIG) ThrowErrno(info.Env(), "KVM_GET_SUPPORTED_CPUID", errno);
  }
  ThrowErrno(info.Env(), "KVM_GET_SUPPORTED_CPUID", E2BIG);
}

// KVM_GET_MSR_INDEX_LIST → Uint32Array of MSR indices.
Napi::Value KvmSystem::MsrIndexList(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  kvm_msr_list probe{};
  probe.nmsrs = 0;
  if (IoctlRetry(fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
    ThrowErrno(info.Env(), "KVM_GET_MSR_INDEX_LIST", errno);
  }
  std::vector<uint32_t> buf(1 + probe.nmsrs, 0);
  auto* list = reinterpret_cast<kvm_msr_list*>(buf.data());
  list->nmsrs = probe.nmsrs;
  if (IoctlRetry(fd, KVM_GET_MSR_INDEX_LIST, list) < 0)
    ThrowErrno(info.Env(), "KVM_GET_MSR_INDEX_LIST", errno);
  Napi::Uint32Array out = Napi::Uint32Array::New(info.Env(), list->nmsrs);
  for (uint32_t i = 0; i < list->nmsrs; i++) out[i] = list->indices[i];
  return out;
}

// KVM_CREATE_VM(type) → VmFd
Napi::Value KvmSystem::CreateVm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = CheckedFd(env);
  uint32_t type = info.Length() > 0 && !info[0].IsUndefined() ? ArgU32(info, 0, "type") : 0;
  int mmap_size = IoctlRetry(fd, KVM_GET_VCPU_MMAP_SIZE, nullptr);
  if (mmap_size < 0) ThrowErrno(env, "KVM_GET_VCPU_MMAP_SIZE", errno);
  int vmfd = IoctlRetry(fd, KVM_CREATE_VM, reinterpret_cast<void*>(static_cast<uintptr_t>(type)));
  if (vmfd < 0) ThrowErrno(env, "KVM_CREATE_VM", errno);
  // KVM creates VM and vCPU fds with O_CLOEXEC already.
  Napi::External<void> token = Napi::External<void>::New(env, nullptr);
  return GetAddonData(env).vm_fd.New(
      {token, Napi::Number::New(env, vmfd), Napi::Number::New(env, mmap_size)});
}

Napi::Value KvmSystem::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  return info.Env().Undefined();
}

}  // namespace nodekvm
