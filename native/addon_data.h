// Per-environment (main thread or worker) constructors for objects the addon creates itself.
#pragma once

#include <napi.h>

namespace nodekvm {

struct AddonData {
  Napi::FunctionReference vm_fd;
  Napi::FunctionReference vcpu_fd;
  Napi::FunctionReference guest_mapping;
};

inline AddonData& GetAddonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// Passed as the first constructor argument by native factories; JS cannot forge it.
inline bool IsNativeToken(const Napi::Value& v) { return v.IsExternal(); }

}  // namespace nodekvm
