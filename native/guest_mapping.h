// Guest memory backing: an mmap (anonymous, hugetlb, or memfd) exposed to JS as an external ArrayBuffer.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

namespace nodekvm {

// Owned jointly by the JS object, its ArrayBuffer and every memory slot using it, so the mapping
// outlives all users; Unmap() runs exactly once.
struct MappingState {
  uint8_t* addr = nullptr;
  size_t size = 0;
  int memfd = -1;
  std::atomic<int> slot_refs{0};
  std::mutex mu;

  void Unmap();
  ~MappingState() { Unmap(); }
};

class GuestMapping : public Napi::ObjectWrap<GuestMapping> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit GuestMapping(const Napi::CallbackInfo& info);
  ~GuestMapping() override;

  std::shared_ptr<MappingState> state() const { return state_; }
  static GuestMapping* Unwrap(const Napi::Value& v);

 private:
  Napi::Value Buffer(const Napi::CallbackInfo& info);
  Napi::Value Size(const Napi::CallbackInfo& info);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Closed(const Napi::CallbackInfo& info);
  Napi::Value SlotRefs(const Napi::CallbackInfo& info);
  Napi::Value Madvise(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  std::shared_ptr<MappingState> state_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
  bool closed_ = false;
};

}  // namespace nodekvm
