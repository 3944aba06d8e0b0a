/*
 * Freestanding runtime for node-kvm test guests: port I/O, a line-buffered printf, memory helpers, a bump
 * allocator for DMA memory, TSC-based timeouts and the exit path.
 *
 * Guests run in 64-bit user mode (CPL3, IOPL 3) with an identity map of the first 4 GiB, interrupts off and
 * no IDT: any fault is a triple fault, which stops the VM with reason 'error'. They end by writing their
 * status to the debug-exit port (0 = success).
 */
#ifndef NODE_KVM_GUEST_KIT_H
#define NODE_KVM_GUEST_KIT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ports (lib/arch/x86_64/layout.ts). */
#define DEBUG_CONSOLE_PORT 0xe9
#define DEBUG_EXIT_PORT 0x501

/* Identity-mapped, so a guest-virtual address is its guest-physical address. */
#define GPA(p) ((uint64_t)(uintptr_t)(p))

/* A wait for the device or the host gives up after this many TSC ticks (~10-30 s on today's hosts). */
#define KIT_TIMEOUT_TICKS (1ULL << 35)

static inline void outb(uint16_t port, uint8_t value) {
  __asm__ volatile("outb %0, %1" ::"a"(value), "Nd"(port));
}

static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

/* x86-64 keeps loads and stores in order (TSO) except store→load: a compiler barrier covers the rest. */
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void full_fence(void) { __asm__ volatile("mfence" ::: "memory"); }

void* memset(void* dst, int c, size_t n);
void* memcpy(void* dst, const void* src, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);

/* Output: lines go to the current sink (the debug console port until a program installs another one). */
typedef void (*kit_sink_fn)(const char* line, size_t len);
void kit_set_sink(kit_sink_fn sink);
void kit_debug_sink(const char* line, size_t len);
void kit_printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void kit_vprintf(const char* fmt, va_list ap);
int kit_snprintf(char* buf, size_t size, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void kit_flush(void);

/* Ends the run: flushes output and writes `code` to the debug-exit port. */
__attribute__((noreturn)) void kit_exit(uint8_t code);
/* Prints "KIT FAIL 0x<code>: <message>" on the debug console (whatever the sink) and exits with `code`. */
__attribute__((noreturn, format(printf, 2, 3))) void kit_fail(uint8_t code, const char* fmt, ...);
#define KIT_CHECK(cond, code, ...)            \
  do {                                        \
    if (!(cond)) kit_fail(code, __VA_ARGS__); \
  } while (0)

/* DMA memory: zeroed, never freed, from the end of the image up. */
void* kit_alloc(size_t size, size_t align);
/* First address kit_alloc has not handed out yet. */
uint64_t kit_heap_end(void);

/* Spins for about `ticks` TSC ticks. */
void kit_delay(uint64_t ticks);

#endif
