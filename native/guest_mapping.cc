#include "guest_mapping.h"

#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addon_data.h"
#include "common.h"

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21 << 26)
#endif

namespace nodekvm {

static constexpr size_t kPage = 4096;
static constexpr size_t kHugePage = 2 * 1024 * 1024;

void MappingState::Unmap() {
  std::lock_guard<std::mutex> lock(mu);
  if (addr != nullptr) {
    munmap(addr, size);
    addr = nullptr;
    Live().guest--;
    Live().guest_bytes -= static_cast<int64_t>(size);
  }
  if (memfd >= 0) {
    close(memfd);
    memfd = -1;
  }
}

Napi::Function GuestMapping::Init(Napi::Env env) {
  return DefineClass(env, "GuestMapping",
                     {
                         InstanceAccessor<&GuestMapping::Buffer>("buffer"),
                         InstanceAccessor<&GuestMapping::Size>("size"),
                         InstanceAccessor<&GuestMapping::Fd>("fd"),
                         InstanceAccessor<&GuestMapping::Closed>("closed"),
                         InstanceAccessor<&GuestMapping::SlotRefs>("slotRefs"),
                         InstanceMethod<&GuestMapping::Madvise>("madvise"),
                         InstanceMethod<&GuestMapping::Close>("close"),
                     });
}

// new GuestMapping(size, hugetlb, memfd, thp, populate, name)
GuestMapping::GuestMapping(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GuestMapping>(info) {
  Napi::Env env = info.Env();
  uint64_t size = ArgU64(info, 0, "size");
  bool hugetlb = ArgBool(info, 1, "hugetlb");
  bool use_memfd = ArgBool(info, 2, "memfd");
  bool thp = ArgBool(info, 3, "thp");
  bool populate = ArgBool(info, 4, "populate");
  std::string name = ArgString(info, 5, "name");
  size_t align = hugetlb ? kHugePage : kPage;
  if (size == 0 || size % align != 0) {
    ThrowRange(env, "size must be a non-zero multiple of " + std::to_string(align) + " bytes");
  }
  if (size > (uint64_t{1} << 46)) ThrowRange(env, "size is larger than 64 TiB");

  auto state = std::make_shared<MappingState>();
  int prot = PROT_READ | PROT_WRITE;
  int extra = populate ? MAP_POPULATE : 0;
  void* addr = MAP_FAILED;
  if (use_memfd) {
    unsigned int mfd_flags = MFD_CLOEXEC | (hugetlb ? (MFD_HUGETLB | MFD_HUGE_2MB) : 0);
    int fd = memfd_create(name.c_str(), mfd_flags);
    if (fd < 0) ThrowErrno(env, "memfd_create", errno);
    // memfds start 0777; guest RAM is for its owner (and whoever it hands the fd to), nobody else.
    fchmod(fd, 0600);
    if (ftruncate(fd, static_cast<off_t>(size)) < 0) {
      int e = errno;
      close(fd);
      ThrowErrno(env, "ftruncate", e);
    }
    addr = mmap(nullptr, size, prot, MAP_SHARED | extra, fd, 0);
    if (addr == MAP_FAILED) {
      int e = errno;
      close(fd);
      ThrowErrno(env, "mmap", e, hugetlb ? "the hugetlb pool may be too small" : "");
    }
    state->memfd = fd;
  } else if (hugetlb) {
    // No MAP_NORESERVE: the pool is reserved now, so a short pool fails here and never with SIGBUS later.
    addr = mmap(nullptr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB | extra, -1, 0);
    if (addr == MAP_FAILED) ThrowErrno(env, "mmap", errno, "the hugetlb pool may be too small");
  } else {
    // Over-allocate by 2 MiB and trim so THP can back the region with aligned huge pages.
    size_t span = thp ? size + kHugePage : size;
    void* raw = mmap(nullptr, span, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) ThrowErrno(env, "mmap", errno);
    uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    uintptr_t aligned = thp ? (start + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1) : start;
    if (aligned > start) munmap(raw, aligned - start);
    uintptr_t end = start + span;
    if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
    addr = reinterpret_cast<void*>(aligned);
    if (populate) madvise(addr, size, MADV_WILLNEED);
  }
  if (thp && madvise(addr, size, MADV_HUGEPAGE) < 0) {
    int e = errno;
    munmap(addr, size);
    if (state->memfd >= 0) close(state->memfd);
    state->memfd = -1;
    ThrowErrno(env, "madvise", e, "MADV_HUGEPAGE");
  }
  state->addr = static_cast<uint8_t*>(addr);
  state->size = size;
  Live().guest++;
  Live().guest_bytes += static_cast<int64_t>(size);
  state_ = state;

  auto* hint = new std::shared_ptr<MappingState>(state_);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, state_->addr, state_->size, [](Napi::Env, void*, std::shared_ptr<MappingState>* h) { delete h; },
      hint);
  buffer_ = Napi::Persistent(ab);
}

GuestMapping::~GuestMapping() {
  buffer_.Reset();
  // The state unmaps when the last owner (an ArrayBuffer or a memory slot) lets go.
}

GuestMapping* GuestMapping::Unwrap(const Napi::Value& v) {
  if (!v.IsObject()) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.InstanceOf(GetAddonData(v.Env()).guest_mapping.Value())) return nullptr;
  return Napi::ObjectWrap<GuestMapping>::Unwrap(o);
}

Napi::Value GuestMapping::Buffer(const Napi::CallbackInfo& info) {
  if (closed_) ThrowClosed(info.Env(), "GuestMapping");
  return buffer_.Value();
}

Napi::Value GuestMapping::Size(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(state_ ? state_->size : 0));
}

Napi::Value GuestMapping::Fd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), closed_ || !state_ ? -1 : state_->memfd);
}

Napi::Value GuestMapping::Closed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), closed_);
}

Napi::Value GuestMapping::SlotRefs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), state_ ? state_->slot_refs.load() : 0);
}

// madvise(offset, length, advice): e.g. MADV_DONTNEED (4) to hand ballooned pages back to the host.
Napi::Value GuestMapping::Madvise(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) ThrowClosed(env, "GuestMapping");
  uint64_t offset = ArgU64(info, 0, "offset");
  uint64_t length = ArgU64(info, 1, "length");
  int32_t advice = ArgI32(info, 2, "advice");
  if (offset % kPage != 0 || length % kPage != 0) ThrowRange(env, "offset and length must be page-aligned");
  if (offset > state_->size || length > state_->size - offset)
    ThrowRange(env, "range is outside the mapping");
  if (madvise(state_->addr + offset, length, advice) < 0) ThrowErrno(env, "madvise", errno);
  return env.Undefined();
}

Napi::Value GuestMapping::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) return env.Undefined();
  if (state_->slot_refs.load() > 0) {
    Napi::Error e = Napi::Error::New(
        env, "GuestMapping is still used by a KVM memory slot; delete the slot or close the VM first");
    e.Set("code", Napi::String::New(env, "ERR_KVM_MAPPING_IN_USE"));
    throw e;
  }
  // Detach first so no JS view can touch the pages after munmap.
  Napi::ArrayBuffer ab = buffer_.Value();
  if (!ab.IsDetached()) ab.Detach();
  buffer_.Reset();
  state_->Unmap();
  closed_ = true;
  return env.Undefined();
}

}  // namespace nodekvm
