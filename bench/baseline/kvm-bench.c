// The raw-ioctl C baseline of `npm run bench`: the same guest loops as the JS side, driven with plain KVM
// ioctls, so every JS number can be taken as a ratio against C measured moments apart under the same load.
//
// Usage: kvm-bench <guest-dir>        then one command per line on stdin, one reply line on stdout:
//   exit <real|cpl3> <pio|mmio> <n>   n exits to userspace (+1 end marker); reply: ns=<chunk time> exits=<n>
//   ioeventfd <pio|mmio> <n>          CPL3 guest, n writes that signal an eventfd in KVM; ns=, signalled=
//   lifecycle <n>                     n times open /dev/kvm .. first exit (HLT) .. destroy; ns=, and the
//                                     phases: setup_ns= (open .. registers), run_ns=, teardown_ns=
//   touch <4k|hugetlb|thp> <mib>      guest (CPL3, 2 MiB guest pages) writes one byte per 4 KiB of fresh
//                                     memory; ns= (the KVM_RUN only), setup_ns=, teardown_ns=
//   blk <read|write> <path> <size> <n> <region> <buffers>
//                                     n sequential pread/pwrite of size bytes, wrapping in region, cycling
//                                     through `buffers` buffers (as the guest cycles its request slots)
//   rss <ram-mib> <touch-mib>         a VM whose guest touches touch-mib; rss_kb=, guest_kb= (this process)
//   hold                              keep one more idle VM (real mode, never run) in this process
//   reset                             close every VM this process keeps (exit/ioeventfd loops, hold)
//   quit
// Errors reply "err <message>". Guest binaries (<guest-dir>/<name>.bin) are assembled by the bench from
// bench/guest/*.S; the JS side loads the very same files.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif

// Guest layout, shared with bench/guest/*.S and bench/*.ts (and lib/arch/x86_64/layout.ts for long mode).
#define LOW_SIZE 0xC0000ul  // slot 0: [0, 768 KiB); 0xD0000 stays unbacked, so accesses there are MMIO
#define CODE_ADDR 0x1000ul
#define PARAM_COUNT 0x800ul  // u32: loop iterations per chunk
#define PARAM_START 0x808ul  // u64: touch start
#define PARAM_END 0x810ul    // u64: touch end
#define DATA_PORT 0x3f8
#define MMIO_ADDR 0xD0000ul
#define DONE_PORT 0x99
#define TOUCH_GPA (1ul << 30)
// Long-mode tables, as lib/arch/x86_64 builds them.
#define BOOT_GDT 0x500ul
#define BOOT_IDT 0x540ul
#define BOOT_TSS 0x10000ul
#define BOOT_STACK_TOP 0x8ff0ul
#define PML4_START 0x9000ul
#define PDPT_START 0xa000ul
#define PD_START 0xb000ul
#define TSS_SIZE 104
#define TSS_TOTAL (TSS_SIZE + 0x10000 / 8 + 1)
#define SEL_CODE32 0x08
#define SEL_CODE 0x10
#define SEL_DATA 0x18
#define SEL_TSS 0x20
#define SEL_USER_DATA (0x30 | 3)
#define SEL_USER_CODE64 (0x38 | 3)

static const char* guest_dir;
static char errbuf[512];

static int fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return -1;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int load_guest(const char* name, uint8_t* mem, size_t at, size_t room) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.bin", guest_dir, name);
  FILE* f = fopen(path, "rb");
  if (!f) return fail("cannot open %s: %s", path, strerror(errno));
  size_t n = fread(mem + at, 1, room, f);
  fclose(f);
  return n > 0 ? 0 : fail("%s is empty", path);
}

// --- VMs
// ----------------------------------------------------------------------------------------------------

struct vm {
  int kvm, fd, vcpu;
  struct kvm_run* run;
  size_t run_size;
  uint8_t* low;
  size_t low_size;
  uint8_t* extra;
  size_t extra_size;
};

static void vm_close(struct vm* v) {
  if (v->run) munmap(v->run, v->run_size);
  if (v->vcpu >= 0) close(v->vcpu);
  if (v->fd >= 0) close(v->fd);
  if (v->low) munmap(v->low, v->low_size);
  if (v->extra) munmap(v->extra, v->extra_size);
  if (v->kvm >= 0) close(v->kvm);
  memset(v, 0, sizeof *v);
  v->kvm = v->fd = v->vcpu = -1;
}

static int set_slot(struct vm* v, uint32_t slot, uint64_t gpa, void* host, size_t size) {
  struct kvm_userspace_memory_region r = {.slot = slot,
                                          .flags = 0,
                                          .guest_phys_addr = gpa,
                                          .memory_size = size,
                                          .userspace_addr = (uint64_t)host};
  if (ioctl(v->fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
    return fail("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
  return 0;
}

// open → CREATE_VM → slot 0 (low memory, 4 KiB pages) → CREATE_VCPU → mmap kvm_run.
static int vm_open(struct vm* v, size_t low_size) {
  memset(v, 0, sizeof *v);
  v->kvm = v->fd = v->vcpu = -1;
  v->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (v->kvm < 0) return fail("open /dev/kvm: %s", strerror(errno));
  if (ioctl(v->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) return fail("KVM API version mismatch");
  v->fd = ioctl(v->kvm, KVM_CREATE_VM, 0);
  if (v->fd < 0) return fail("KVM_CREATE_VM: %s", strerror(errno));
  void* low =
      mmap(NULL, low_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (low == MAP_FAILED) return fail("mmap: %s", strerror(errno));
  v->low = low;
  v->low_size = low_size;
  if (set_slot(v, 0, 0, v->low, low_size) < 0) return -1;
  v->vcpu = ioctl(v->fd, KVM_CREATE_VCPU, 0);
  if (v->vcpu < 0) return fail("KVM_CREATE_VCPU: %s", strerror(errno));
  int size = ioctl(v->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size <= 0) return fail("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
  v->run_size = (size_t)size;
  void* run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
  if (run == MAP_FAILED) return fail("mmap kvm_run: %s", strerror(errno));
  v->run = run;
  return 0;
}

// Real mode, every segment at base 0, caching on (as lib/arch/x86_64/modes.ts setupRealMode).
static int setup_real(struct vm* v) {
  struct kvm_sregs s;
  if (ioctl(v->vcpu, KVM_GET_SREGS, &s) < 0) return fail("KVM_GET_SREGS: %s", strerror(errno));
  struct kvm_segment* segs[] = {&s.cs, &s.ds, &s.es, &s.fs, &s.gs, &s.ss};
  for (int i = 0; i < 6; i++) {
    struct kvm_segment* g = segs[i];
    memset(g, 0, sizeof *g);
    g->limit = 0xffff;
    g->type = i == 0 ? 0xb : 0x3;
    g->present = 1;
    g->s = 1;
  }
  s.cr0 &= ~(1ull | (1ull << 31) | (1ull << 30) | (1ull << 29));
  if (ioctl(v->vcpu, KVM_SET_SREGS, &s) < 0) return fail("KVM_SET_SREGS: %s", strerror(errno));
  struct kvm_regs r;
  memset(&r, 0, sizeof r);
  r.rip = CODE_ADDR;
  r.rsp = BOOT_STACK_TOP;
  r.rflags = 2;
  if (ioctl(v->vcpu, KVM_SET_REGS, &r) < 0) return fail("KVM_SET_REGS: %s", strerror(errno));
  return 0;
}

static uint64_t descriptor(uint32_t base, uint32_t limit, unsigned type, unsigned s, unsigned dpl, unsigned l,
                           unsigned db, unsigned g) {
  uint32_t lim = g ? limit >> 12 : limit;
  uint64_t access = (1u << 7) | (dpl << 5) | (s << 4) | type;
  uint64_t flags = (g << 3) | (db << 2) | (l << 1);
  return (lim & 0xffffull) | ((uint64_t)(base & 0xffffff) << 16) | (access << 40) |
         ((uint64_t)((lim >> 16) & 0xf) << 48) | (flags << 52) | ((uint64_t)(base >> 24) << 56);
}

static void flat(struct kvm_segment* g, uint16_t sel, unsigned type, unsigned dpl, unsigned l) {
  memset(g, 0, sizeof *g);
  g->limit = 0xffffffff;
  g->selector = sel;
  g->type = type;
  g->present = 1;
  g->dpl = dpl;
  g->db = l ? 0 : 1;
  g->s = 1;
  g->l = l;
  g->g = 1;
}

// 64-bit long mode at CPL3 with IOPL 3, 4 GiB identity map with 2 MiB user pages (as setupLongMode cpl3).
static int setup_cpl3(struct vm* v) {
  uint8_t* m = v->low;
  uint64_t* gdt = (uint64_t*)(m + BOOT_GDT);
  memset(gdt, 0, 64);
  gdt[SEL_CODE32 >> 3] = descriptor(0, 0xffffffff, 0xb, 1, 0, 0, 1, 1);
  gdt[SEL_CODE >> 3] = descriptor(0, 0xffffffff, 0xb, 1, 0, 1, 0, 1);
  gdt[SEL_DATA >> 3] = descriptor(0, 0xffffffff, 0x3, 1, 0, 0, 1, 1);
  gdt[SEL_TSS >> 3] = descriptor(BOOT_TSS, TSS_TOTAL - 1, 0xb, 0, 0, 0, 0, 0);
  gdt[(SEL_TSS >> 3) + 1] = 0;
  gdt[SEL_USER_DATA >> 3] = descriptor(0, 0xffffffff, 0x3, 1, 3, 0, 1, 1);
  gdt[SEL_USER_CODE64 >> 3] = descriptor(0, 0xffffffff, 0xb, 1, 3, 1, 0, 1);
  uint8_t* tss = m + BOOT_TSS;
  memset(tss, 0, TSS_TOTAL);
  uint64_t rsp0 = BOOT_STACK_TOP;
  memcpy(tss + 4, &rsp0, 8);
  uint16_t iomap = TSS_SIZE;
  memcpy(tss + 102, &iomap, 2);
  tss[TSS_TOTAL - 1] = 0xff;
  const uint64_t fl = 1 | 2 | 4;  // present, writable, user
  uint64_t *pml4 = (uint64_t*)(m + PML4_START), *pdpt = (uint64_t*)(m + PDPT_START);
  memset(pml4, 0, 4096);
  memset(pdpt, 0, 4096);
  pml4[0] = PDPT_START | fl;
  for (uint64_t gib = 0; gib < 4; gib++) {
    uint64_t* pd = (uint64_t*)(m + PD_START + gib * 4096);
    pdpt[gib] = (PD_START + gib * 4096) | fl;
    for (uint64_t i = 0; i < 512; i++) {
      uint64_t addr = (gib << 30) + (i << 21);
      uint64_t uc = addr >= 0xC0000000ull ? (1 << 4) | (1 << 3) : 0;
      pd[i] = addr | fl | (1 << 7) | uc;
    }
  }
  struct kvm_sregs s;
  if (ioctl(v->vcpu, KVM_GET_SREGS, &s) < 0) return fail("KVM_GET_SREGS: %s", strerror(errno));
  s.gdt.base = BOOT_GDT;
  s.gdt.limit = 63;
  s.idt.base = BOOT_IDT;
  s.idt.limit = 0;
  flat(&s.cs, SEL_USER_CODE64, 0xb, 3, 1);
  struct kvm_segment* data[] = {&s.ds, &s.es, &s.fs, &s.gs, &s.ss};
  for (int i = 0; i < 5; i++) flat(data[i], SEL_USER_DATA, 0x3, 3, 0);
  memset(&s.tr, 0, sizeof s.tr);
  s.tr.base = BOOT_TSS;
  s.tr.limit = TSS_TOTAL - 1;
  s.tr.selector = SEL_TSS;
  s.tr.type = 0xb;
  s.tr.present = 1;
  s.cr3 = PML4_START;
  s.cr4 |= (1 << 5) | (1 << 9) | (1 << 10);  // PAE, OSFXSR, OSXMMEXCPT
  s.cr0 = (s.cr0 & ~((1ull << 30) | (1ull << 29))) | 1 | 2 | 16 | 32 | (1 << 16) | (1 << 18) | (1ull << 31);
  s.efer |= (1 << 8) | (1 << 10);  // LME, LMA
  if (ioctl(v->vcpu, KVM_SET_SREGS, &s) < 0) return fail("KVM_SET_SREGS: %s", strerror(errno));
  struct kvm_regs r;
  memset(&r, 0, sizeof r);
  r.rip = CODE_ADDR;
  r.rsp = BOOT_STACK_TOP;
  r.rflags = 0x3002;  // IOPL 3
  if (ioctl(v->vcpu, KVM_SET_REGS, &r) < 0) return fail("KVM_SET_REGS: %s", strerror(errno));
  return 0;
}

static int vm_prepare(struct vm* v, int cpl3, const char* guest) {
  if (vm_open(v, LOW_SIZE) < 0) return -1;
  if (load_guest(guest, v->low, CODE_ADDR, BOOT_STACK_TOP - 0x1000 - CODE_ADDR) < 0) return -1;
  return cpl3 ? setup_cpl3(v) : setup_real(v);
}

// Runs one chunk: `count` loop iterations, then the DONE_PORT marker. Returns exits to userspace (marker
// excluded), or -1.
static long run_chunk(struct vm* v, uint32_t count) {
  memcpy(v->low + PARAM_COUNT, &count, 4);
  long exits = 0;
  for (;;) {
    if (ioctl(v->vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR) continue;
      return fail("KVM_RUN: %s", strerror(errno));
    }
    struct kvm_run* r = v->run;
    if (r->exit_reason == KVM_EXIT_IO) {
      if (r->io.port == DONE_PORT) return exits;
      exits++;
    } else if (r->exit_reason == KVM_EXIT_MMIO) {
      exits++;
    } else {
      return fail("unexpected exit %u", r->exit_reason);
    }
  }
}

// Persistent VMs per variant (as the JS side keeps its own), created on first use.
static struct vm exit_vms[2][2];
static int exit_ready[2][2];
static struct vm ioefd_vms[2];
static int ioefd_fds[2] = {-1, -1};

static int cmd_exit(const char* mode, const char* kind, uint32_t n) {
  int cpl3 = strcmp(mode, "cpl3") == 0, mmio = strcmp(kind, "mmio") == 0;
  if ((!cpl3 && strcmp(mode, "real")) || (!mmio && strcmp(kind, "pio"))) return fail("bad exit variant");
  struct vm* v = &exit_vms[cpl3][mmio];
  if (!exit_ready[cpl3][mmio]) {
    char name[64];
    snprintf(name, sizeof name, "exit-%s-%s", kind, cpl3 ? "cpl3" : "real");
    if (vm_prepare(v, cpl3, name) < 0) return -1;
    exit_ready[cpl3][mmio] = 1;
  }
  uint64_t t0 = now_ns();
  long exits = run_chunk(v, n);
  uint64_t t1 = now_ns();
  if (exits < 0) return -1;
  if ((uint32_t)exits != n) return fail("expected %u exits, got %ld", n, exits);
  printf("ok ns=%llu exits=%ld\n", (unsigned long long)(t1 - t0), exits);
  return 0;
}

static int cmd_ioeventfd(const char* kind, uint32_t n) {
  int mmio = strcmp(kind, "mmio") == 0;
  if (!mmio && strcmp(kind, "pio")) return fail("bad ioeventfd variant");
  struct vm* v = &ioefd_vms[mmio];
  if (ioefd_fds[mmio] < 0) {
    if (vm_prepare(v, 1, mmio ? "exit-mmio-cpl3" : "exit-pio-cpl3") < 0) return -1;
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0) return fail("eventfd: %s", strerror(errno));
    struct kvm_ioeventfd io = {.datamatch = 0,
                               .addr = mmio ? MMIO_ADDR : DATA_PORT,
                               .len = 1,
                               .fd = efd,
                               .flags = mmio ? 0 : KVM_IOEVENTFD_FLAG_PIO};
    if (ioctl(v->fd, KVM_IOEVENTFD, &io) < 0) return fail("KVM_IOEVENTFD: %s", strerror(errno));
    ioefd_fds[mmio] = efd;
  }
  uint64_t t0 = now_ns();
  long exits = run_chunk(v, n);
  uint64_t t1 = now_ns();
  if (exits < 0) return -1;
  uint64_t signalled = 0;
  if (read(ioefd_fds[mmio], &signalled, 8) != 8) signalled = 0;
  printf("ok ns=%llu exits=%ld signalled=%llu\n", (unsigned long long)(t1 - t0), exits,
         (unsigned long long)signalled);
  return 0;
}

// One VM from nothing to its first exit and back to nothing, as the JS side does it with Kvm.open() ..
// close(): open, API version, CREATE_VM, a 2 MiB slot, CREATE_VCPU, mmap kvm_run, real-mode registers,
// KVM_RUN returning HLT, then munmap/close everything.
static uint64_t phase_ns[3];  // lifecycle: setup (open .. registers), first KVM_RUN, teardown

static int lifecycle_once(void) {
  struct vm v;
  uint64_t t0 = now_ns();
  int rc = vm_open(&v, 2u << 20);
  if (rc == 0) {
    v.low[CODE_ADDR] = 0xf4;  // hlt
    rc = setup_real(&v);
  }
  uint64_t t1 = now_ns();
  if (rc == 0 && ioctl(v.vcpu, KVM_RUN, 0) < 0) rc = fail("KVM_RUN: %s", strerror(errno));
  if (rc == 0 && v.run->exit_reason != KVM_EXIT_HLT)
    rc = fail("lifecycle: exit %u, not HLT", v.run->exit_reason);
  uint64_t t2 = now_ns();
  vm_close(&v);
  uint64_t t3 = now_ns();
  phase_ns[0] += t1 - t0;
  phase_ns[1] += t2 - t1;
  phase_ns[2] += t3 - t2;
  return rc;
}

static int cmd_lifecycle(uint32_t n) {
  memset(phase_ns, 0, sizeof phase_ns);
  uint64_t t0 = now_ns();
  for (uint32_t i = 0; i < n; i++)
    if (lifecycle_once() < 0) return -1;
  printf("ok ns=%llu setup_ns=%llu run_ns=%llu teardown_ns=%llu\n", (unsigned long long)(now_ns() - t0),
         (unsigned long long)phase_ns[0], (unsigned long long)phase_ns[1], (unsigned long long)phase_ns[2]);
  return 0;
}

static void* map_backing(const char* backing, size_t size) {
  void* p;
  if (strcmp(backing, "hugetlb") == 0) {
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1,
             0);
    return p == MAP_FAILED ? NULL : p;
  }
  int thp = strcmp(backing, "thp") == 0;
  size_t span = thp ? size + (2u << 20) : size;
  p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return NULL;
  if (!thp) return p;
  // Trim to a 2 MiB-aligned span, as the addon does, so THP can use aligned huge pages.
  uintptr_t start = (uintptr_t)p, aligned = (start + (2u << 20) - 1) & ~((uintptr_t)(2u << 20) - 1);
  if (aligned > start) munmap(p, aligned - start);
  uintptr_t end = start + span;
  if (end > aligned + size) munmap((void*)(aligned + size), end - (aligned + size));
  madvise((void*)aligned, size, MADV_HUGEPAGE);
  return (void*)aligned;
}

static int cmd_touch(const char* backing, uint32_t mib) {
  if (strcmp(backing, "4k") && strcmp(backing, "hugetlb") && strcmp(backing, "thp"))
    return fail("bad backing");
  size_t size = (size_t)mib << 20;
  uint64_t t0 = now_ns();
  struct vm v;
  if (vm_prepare(&v, 1, "touch-cpl3") < 0) {
    vm_close(&v);
    return -1;
  }
  v.extra = map_backing(backing, size);
  if (!v.extra) {
    vm_close(&v);
    return fail("mmap %s %u MiB: %s", backing, mib, strerror(errno));
  }
  v.extra_size = size;
  if (set_slot(&v, 1, TOUCH_GPA, v.extra, size) < 0) {
    vm_close(&v);
    return -1;
  }
  uint64_t start = TOUCH_GPA, end = TOUCH_GPA + size;
  memcpy(v.low + PARAM_START, &start, 8);
  memcpy(v.low + PARAM_END, &end, 8);
  uint64_t t1 = now_ns();
  long exits = run_chunk(&v, 1);
  uint64_t t2 = now_ns();
  // The guest writes 1 to the first byte of every page: check the first and the last.
  int touched = exits >= 0 && v.extra[0] == 1 && v.extra[size - 4096] == 1;
  vm_close(&v);
  uint64_t t3 = now_ns();
  if (exits < 0) return -1;
  if (!touched) return fail("the guest did not touch the memory");
  printf("ok ns=%llu setup_ns=%llu teardown_ns=%llu\n", (unsigned long long)(t2 - t1),
         (unsigned long long)(t1 - t0), (unsigned long long)(t3 - t2));
  return 0;
}

static int cmd_blk(const char* op, const char* path, uint32_t size, uint32_t n, uint64_t region,
                   uint32_t nbuf) {
  int write_op = strcmp(op, "write") == 0;
  if (!write_op && strcmp(op, "read")) return fail("bad blk op");
  if (nbuf == 0 || nbuf > 64) return fail("buffers must be 1..64");
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return fail("open %s: %s", path, strerror(errno));
  uint8_t* buf = aligned_alloc(4096, (size_t)size * nbuf);
  if (!buf) {
    close(fd);
    return fail("out of memory");
  }
  memset(buf, 0x5a, (size_t)size * nbuf);
  static uint64_t pos[2];
  uint64_t t0 = now_ns();
  for (uint32_t i = 0; i < n; i++) {
    if (pos[write_op] + size > region) pos[write_op] = 0;
    uint8_t* b = buf + (size_t)(i % nbuf) * size;
    ssize_t r =
        write_op ? pwrite(fd, b, size, (off_t)pos[write_op]) : pread(fd, b, size, (off_t)pos[write_op]);
    if (r != (ssize_t)size) {
      free(buf);
      close(fd);
      return fail("%s: %s", op, r < 0 ? strerror(errno) : "short transfer");
    }
    pos[write_op] += size;
  }
  uint64_t t1 = now_ns();
  free(buf);
  close(fd);
  printf("ok ns=%llu\n", (unsigned long long)(t1 - t0));
  return 0;
}

static long status_kb(const char* field) {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kb = -1;
  size_t n = strlen(field);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':') kb = strtol(line + n + 1, NULL, 10);
  fclose(f);
  return kb;
}

// Rss of the mapping that starts at addr, from /proc/self/smaps.
static long mapping_rss_kb(void* addr) {
  FILE* f = fopen("/proc/self/smaps", "r");
  if (!f) return -1;
  char line[512], want[32];
  snprintf(want, sizeof want, "%lx-", (unsigned long)addr);
  int in = 0;
  long kb = -1;
  while (fgets(line, sizeof line, f)) {
    if (strchr(line, '-') && strncmp(line, want, strlen(want)) == 0)
      in = 1;
    else if (in && strncmp(line, "Rss:", 4) == 0) {
      kb = strtol(line + 4, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kb;
}

static int cmd_rss(uint32_t ram_mib, uint32_t touch_mib) {
  if (touch_mib > ram_mib) return fail("touch > ram");
  struct vm v;
  if (vm_prepare(&v, 1, "touch-cpl3") < 0) {
    vm_close(&v);
    return -1;
  }
  size_t size = (size_t)ram_mib << 20;
  v.extra = map_backing("4k", size);
  v.extra_size = size;
  if (!v.extra || set_slot(&v, 1, TOUCH_GPA, v.extra, size) < 0) {
    vm_close(&v);
    return fail("rss setup: %s", errbuf);
  }
  uint64_t start = TOUCH_GPA, end = TOUCH_GPA + ((uint64_t)touch_mib << 20);
  memcpy(v.low + PARAM_START, &start, 8);
  memcpy(v.low + PARAM_END, &end, 8);
  if (run_chunk(&v, 1) < 0) {
    vm_close(&v);
    return -1;
  }
  long rss = status_kb("VmRSS"), guest = mapping_rss_kb(v.extra) + mapping_rss_kb(v.low);
  vm_close(&v);
  printf("ok rss_kb=%ld guest_kb=%ld\n", rss, guest);
  return 0;
}

static struct vm held_vm;
static int held = 0;

// A VM that just exists: KVM does measurably less work creating and destroying VMs in a process that already
// has one, so the lifecycle section runs both sides with and without such a VM.
static int cmd_hold(void) {
  if (!held) {
    if (vm_prepare(&held_vm, 0, "exit-pio-real") < 0) {
      vm_close(&held_vm);
      return -1;
    }
    held = 1;
  }
  printf("ok held=1\n");
  return 0;
}

static void close_all(void) {
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++)
      if (exit_ready[i][j]) {
        vm_close(&exit_vms[i][j]);
        exit_ready[i][j] = 0;
      }
  for (int i = 0; i < 2; i++)
    if (ioefd_fds[i] >= 0) {
      close(ioefd_fds[i]);
      ioefd_fds[i] = -1;
      vm_close(&ioefd_vms[i]);
    }
  if (held) {
    vm_close(&held_vm);
    held = 0;
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <guest-dir>  (then commands on stdin; see the source)\n", argv[0]);
    return 2;
  }
  guest_dir = argv[1];
  setvbuf(stdout, NULL, _IOLBF, 0);
  memset(exit_vms, 0, sizeof exit_vms);
  char line[2048];
  while (fgets(line, sizeof line, stdin)) {
    char cmd[32] = "", a[1024] = "", b[1024] = "";
    unsigned long long x = 0, y = 0, z = 0, w = 0;
    int rc;
    errbuf[0] = 0;
    sscanf(line, "%31s", cmd);
    if (strcmp(cmd, "quit") == 0) break;
    if (strcmp(cmd, "exit") == 0 && sscanf(line, "%*s %1023s %1023s %llu", a, b, &x) == 3) {
      rc = cmd_exit(a, b, (uint32_t)x);
    } else if (strcmp(cmd, "ioeventfd") == 0 && sscanf(line, "%*s %1023s %llu", a, &x) == 2) {
      rc = cmd_ioeventfd(a, (uint32_t)x);
    } else if (strcmp(cmd, "lifecycle") == 0 && sscanf(line, "%*s %llu", &x) == 1) {
      rc = cmd_lifecycle((uint32_t)x);
    } else if (strcmp(cmd, "touch") == 0 && sscanf(line, "%*s %1023s %llu", a, &x) == 2) {
      rc = cmd_touch(a, (uint32_t)x);
    } else if (strcmp(cmd, "blk") == 0 &&
               sscanf(line, "%*s %1023s %1023s %llu %llu %llu %llu", a, b, &x, &y, &z, &w) == 6) {
      rc = cmd_blk(a, b, (uint32_t)x, (uint32_t)y, z, (uint32_t)w);
    } else if (strcmp(cmd, "hold") == 0) {
      rc = cmd_hold();
    } else if (strcmp(cmd, "reset") == 0) {
      close_all();
      printf("ok reset=1\n");
      rc = 0;
    } else if (strcmp(cmd, "rss") == 0 && sscanf(line, "%*s %llu %llu", &x, &y) == 2) {
      rc = cmd_rss((uint32_t)x, (uint32_t)y);
    } else {
      rc = fail("unknown command: %s", cmd);
    }
    if (rc < 0) printf("err %s\n", errbuf[0] ? errbuf : "failed");
  }
  close_all();
  return 0;
}
