// <linux/kvm.h> for C++. Some uapi headers (Debian 12's among them) declare flexible arrays through an
// empty struct, which is 1 byte in C++: sizeof(kvm_cpuid2) becomes 12 instead of 8 and the ioctl numbers
// that encode it (KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2, KVM_GET_MSRS, ...) change. Declare them as
// the C ABI does, then check the sizes the kernel expects.
#pragma once

#include <linux/stddef.h>
#undef __DECLARE_FLEX_ARRAY
#define __DECLARE_FLEX_ARRAY(TYPE, NAME) TYPE NAME[0]

#include <linux/kvm.h>

static_assert(sizeof(struct kvm_cpuid2) == 8, "kvm_cpuid2 header must be 8 bytes");
static_assert(sizeof(struct kvm_msrs) == 8, "kvm_msrs header must be 8 bytes");
static_assert(sizeof(struct kvm_msr_list) == 4, "kvm_msr_list header must be 4 bytes");
static_assert(KVM_GET_SUPPORTED_CPUID == 0xc008ae05, "KVM_GET_SUPPORTED_CPUID ioctl number");
static_assert(KVM_SET_CPUID2 == 0x4008ae90, "KVM_SET_CPUID2 ioctl number");
static_assert(KVM_GET_MSRS == 0xc008ae88, "KVM_GET_MSRS ioctl number");
