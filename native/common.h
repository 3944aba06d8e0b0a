// Shared helpers for the native layer: errno → JS errors, argument readers, closed-object checks.
// The native layer executes; the TypeScript layer above it owns policy and friendly messages.
#pragma once

#include <napi.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>

namespace nodekvm {

// Throws an Error shaped like Node's system errors: message "<syscall> failed: <CODE> (<strerror>)",
// with properties code ("EEXIST"), errno (positive number) and syscall ("KVM_SET_USER_MEMORY_REGION").
[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall, int err, const std::string& detail = "");

// Throws Error{code: "ERR_KVM_CLOSED"} for use of an object after close().
[[noreturn]] void ThrowClosed(Napi::Env env, const char* what);

[[noreturn]] void ThrowType(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& message);

// Argument readers: TypeError on a wrong type, RangeError when the value does not fit.
uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name);  // Number or BigInt
uint32_t ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name);
int32_t ArgI32(const Napi::CallbackInfo& info, size_t i, const char* name);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name);
int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name);  // non-negative int32
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);

// A Uint8Array argument whose byte length must equal `expected` (0 = any length).
struct Bytes {
  uint8_t* data;
  size_t length;
};
Bytes ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* name, size_t expected = 0);

// Number of the real-time signal used to kick a vCPU thread out of KVM_RUN.
int KickSignal();
// Installs a no-op handler for KickSignal() without SA_RESTART, once per process.
void InstallKickHandler();

// What the addon has mapped and not yet unmapped, over every thread of the process: leak tests compare these
// exactly, where /proc/self/maps also moves with V8's and malloc's own pools.
struct LiveMappings {
  std::atomic<int64_t> guest{0};        // GuestMapping regions
  std::atomic<int64_t> guest_bytes{0};  // their total size
  std::atomic<int64_t> vcpu_run{0};     // kvm_run pages
};
LiveMappings& Live();

// ioctl retried on EINTR where the call is restartable (everything except KVM_RUN).
int IoctlRetry(int fd, unsigned long request, void* arg);

}  // namespace nodekvm
