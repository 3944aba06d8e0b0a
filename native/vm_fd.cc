#include "vm_fd.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include "addon_data.h"
#include "common.h"
#include "kvm_abi.h"

namespace nodekvm {

Napi::Function VmFd::Init(Napi::Env env) {
  return DefineClass(env, "VmFd",
                     {
                         InstanceAccessor<&VmFd::Fd>("fd"),
                         InstanceAccessor<&VmFd::Closed>("closed"),
                         InstanceMethod<&VmFd::CheckExtension>("checkExtension"),
                         InstanceMethod<&VmFd::SetUserMemoryRegion>("setUserMemoryRegion"),
                         InstanceMethod<&VmFd::SetTssAddr>("setTssAddr"),
                         InstanceMethod<&VmFd::SetIdentityMapAddr>("setIdentityMapAddr"),
                         InstanceMethod<&VmFd::CreateIrqchip>("createIrqchip"),
                         InstanceMethod<&VmFd::CreatePit2>("createPit2"),
                         InstanceMethod<&VmFd::IrqLine>("irqLine"),
                         InstanceMethod<&VmFd::Ioeventfd>("ioeventfd"),
                         InstanceMethod<&VmFd::Irqfd>("irqfd"),
                         InstanceMethod<&VmFd::GetDirtyLog>("getDirtyLog"),
                         InstanceMethod<&VmFd::GetClock>("getClock"),
                         InstanceMethod<&VmFd::SetClock>("setClock"),
                         InstanceMethod<&VmFd::CreateVcpu>("createVcpu"),
                         InstanceMethod<&VmFd::Close>("close"),
                     });
}

// Constructed only by KvmSystem.createVm(): (token, fd, vcpuMmapSize).
VmFd::VmFd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VmFd>(info) {
  if (info.Length() != 3 || !IsNativeToken(info[0])) {
    ThrowType(info.Env(), "VmFd cannot be constructed directly; use KvmSystem.createVm()");
  }
  fd_ = ArgFd(info, 1, "fd");
  vcpu_mmap_size_ = ArgI32(info, 2, "vcpuMmapSize");
}

VmFd::~VmFd() {
  if (fd_ >= 0) close(fd_);
  ReleaseSlots();
}

void VmFd::ReleaseSlots() {
  for (auto& entry : slots_) entry.second.mapping->slot_refs--;
  slots_.clear();
}

int VmFd::CheckedFd(Napi::Env env) {
  if (fd_ < 0) ThrowClosed(env, "VmFd");
  return fd_;
}

Napi::Value VmFd::Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

Napi::Value VmFd::Closed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), fd_ < 0); }

// KVM_CHECK_EXTENSION on the VM fd (some answers are per VM).
Napi::Value VmFd::CheckExtension(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  uint32_t cap = ArgU32(info, 0, "cap");
  int r = ioctl(fd, KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
  if (r < 0) ThrowErrno(info.Env(), "KVM_CHECK_EXTENSION", errno);
  return Napi::Number::New(info.Env(), r);
}

// KVM_SET_USER_MEMORY_REGION(slot, flags, guestPhysAddr, size, mapping, mappingOffset).
// size 0 deletes the slot (mapping may be null then).
Napi::Value VmFd::SetUserMemoryRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = CheckedFd(env);
  uint32_t slot = ArgU32(info, 0, "slot");
  uint32_t flags = ArgU32(info, 1, "flags");
  uint64_t gpa = ArgU64(info, 2, "guestPhysAddr");
  uint64_t size = ArgU64(info, 3, "size");
  uint64_t offset = ArgU64(info, 5, "mappingOffset");
  std::shared_ptr<MappingState> mapping;
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  if (size != 0) {
    GuestMapping* m = GuestMapping::Unwrap(info[4]);
    if (m == nullptr) ThrowType(env, "mapping must be a GuestMapping");
    mapping = m->state();
    if (!mapping || mapping->addr == nullptr) ThrowClosed(env, "GuestMapping");
    if (offset > mapping->size || size > mapping->size - offset) {
      ThrowRange(env, "mappingOffset + size exceeds the mapping");
    }
    region.userspace_addr = reinterpret_cast<uint64_t>(mapping->addr + offset);
  }
  if (IoctlRetry(fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    ThrowErrno(env, "KVM_SET_USER_MEMORY_REGION", errno, "slot " + std::to_string(slot));
  }
  auto old = slots_.find(slot);
  if (old != slots_.end()) {
    old->second.mapping->slot_refs--;
    slots_.erase(old);
  }
  if (mapping) {
    mapping->slot_refs++;
    slots_[slot] = Slot{mapping, size};
  }
  return env.Undefined();
}

// KVM_SET_TSS_ADDR(addr): three pages of guest-physical space KVM needs on Intel hosts.
Napi::Value VmFd::SetTssAddr(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  uint64_t addr = ArgU64(info, 0, "addr");
  if (IoctlRetry(fd, KVM_SET_TSS_ADDR, reinterpret_cast<void*>(addr)) < 0) {
    ThrowErrno(info.Env(), "KVM_SET_TSS_ADDR", errno);
  }
  return info.Env().Undefined();
}

// KVM_SET_IDENTITY_MAP_ADDR(addr)
Napi::Value VmFd::SetIdentityMapAddr(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  uint64_t addr = ArgU64(info, 0, "addr");
  if (IoctlRetry(fd, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) {
    ThrowErrno(info.Env(), "KVM_SET_IDENTITY_MAP_ADDR", errno);
  }
  return info.Env().Undefined();
}

// KVM_CREATE_IRQCHIP: in-kernel PIC, IOAPIC and LAPICs.
Napi::Value VmFd::CreateIrqchip(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  if (IoctlRetry(fd, KVM_CREATE_IRQCHIP, nullptr) < 0) ThrowErrno(info.Env(), "KVM_CREATE_IRQCHIP", errno);
  return info.Env().Undefined();
}

// KVM_CREATE_PIT2(flags)
Napi::Value VmFd::CreatePit2(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  kvm_pit_config config{};
  config.flags = info.Length() > 0 ? ArgU32(info, 0, "flags") : 0;
  if (IoctlRetry(fd, KVM_CREATE_PIT2, &config) < 0) ThrowErrno(info.Env(), "KVM_CREATE_PIT2", errno);
  return info.Env().Undefined();
}

// KVM_IRQ_LINE(irq, level)
Napi::Value VmFd::IrqLine(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  kvm_irq_level level{};
  level.irq = ArgU32(info, 0, "irq");
  level.level = ArgU32(info, 1, "level");
  if (IoctlRetry(fd, KVM_IRQ_LINE, &level) < 0) ThrowErrno(info.Env(), "KVM_IRQ_LINE", errno);
  return info.Env().Undefined();
}

// KVM_IOEVENTFD(eventfd, addr, len, flags, datamatch)
Napi::Value VmFd::Ioeventfd(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  kvm_ioeventfd io{};
  io.fd = ArgFd(info, 0, "eventfd");
  io.addr = ArgU64(info, 1, "addr");
  io.len = ArgU32(info, 2, "len");
  io.flags = ArgU32(info, 3, "flags");
  io.datamatch = ArgU64(info, 4, "datamatch");
  if (IoctlRetry(fd, KVM_IOEVENTFD, &io) < 0) ThrowErrno(info.Env(), "KVM_IOEVENTFD", errno);
  return info.Env().Undefined();
}

// KVM_IRQFD(eventfd, gsi, flags, resamplefd)
Napi::Value VmFd::Irqfd(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  kvm_irqfd irqfd{};
  irqfd.fd = ArgFd(info, 0, "eventfd");
  irqfd.gsi = ArgU32(info, 1, "gsi");
  irqfd.flags = ArgU32(info, 2, "flags");
  irqfd.resamplefd = static_cast<uint32_t>(ArgI32(info, 3, "resamplefd"));
  if (IoctlRetry(fd, KVM_IRQFD, &irqfd) < 0) ThrowErrno(info.Env(), "KVM_IRQFD", errno);
  return info.Env().Undefined();
}

// KVM_GET_DIRTY_LOG(slot, bitmap): one bit per page of the slot, cleared in KVM on read.
Napi::Value VmFd::GetDirtyLog(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  kvm_dirty_log log{};
  log.slot = ArgU32(info, 0, "slot");
  Bytes bitmap = ArgBytes(info, 1, "bitmap");
  auto it = slots_.find(log.slot);
  if (it != slots_.end()) {
    // KVM writes ceil(pages / 64) u64 words; refuse a buffer it could overflow.
    uint64_t pages = it->second.size / 4096;
    uint64_t needed = (pages + 63) / 64 * 8;
    if (bitmap.length < needed) {
      ThrowRange(info.Env(), "bitmap must be at least " + std::to_string(needed) + " bytes for this slot");
    }
  }
  log.dirty_bitmap = bitmap.data;
  if (IoctlRetry(fd, KVM_GET_DIRTY_LOG, &log) < 0) ThrowErrno(info.Env(), "KVM_GET_DIRTY_LOG", errno);
  return info.Env().Undefined();
}

// KVM_GET_CLOCK(buffer of sizeof(kvm_clock_data))
Napi::Value VmFd::GetClock(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  Bytes b = ArgBytes(info, 0, "buffer", sizeof(kvm_clock_data));
  if (IoctlRetry(fd, KVM_GET_CLOCK, b.data) < 0) ThrowErrno(info.Env(), "KVM_GET_CLOCK", errno);
  return info.Env().Undefined();
}

// KVM_SET_CLOCK(buffer of sizeof(kvm_clock_data))
Napi::Value VmFd::SetClock(const Napi::CallbackInfo& info) {
  int fd = CheckedFd(info.Env());
  Bytes b = ArgBytes(info, 0, "buffer", sizeof(kvm_clock_data));
  if (IoctlRetry(fd, KVM_SET_CLOCK, b.data) < 0) ThrowErrno(info.Env(), "KVM_SET_CLOCK", errno);
  return info.Env().Undefined();
}

// KVM_CREATE_VCPU(id) → VcpuFd
Napi::Value VmFd::CreateVcpu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = CheckedFd(env);
  uint32_t id = ArgU32(info, 0, "id");
  int vcpufd = IoctlRetry(fd, KVM_CREATE_VCPU, reinterpret_cast<void*>(static_cast<uintptr_t>(id)));
  if (vcpufd < 0) ThrowErrno(env, "KVM_CREATE_VCPU", errno, "vcpu " + std::to_string(id));
  Napi::External<void> token = Napi::External<void>::New(env, nullptr);
  return GetAddonData(env).vcpu_fd.New({token, Napi::Number::New(env, vcpufd),
                                        Napi::Number::New(env, vcpu_mmap_size_), Napi::Number::New(env, id)});
}

Napi::Value VmFd::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  ReleaseSlots();
  return info.Env().Undefined();
}

}  // namespace nodekvm
