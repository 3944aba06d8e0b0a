/* The freestanding runtime behind kit.h. */
#include "kit.h"

extern char __heap_start[];

void* memset(void* dst, int c, size_t n) {
  void* d = dst;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

void* memcpy(void* dst, const void* src, size_t n) {
  void* d = dst;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

int memcmp(const void* a, const void* b, size_t n) {
  const unsigned char* x = a;
  const unsigned char* y = b;
  for (size_t i = 0; i < n; i++) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

size_t strlen(const char* s) {
  size_t n = 0;
  while (s[n] != 0) n++;
  return n;
}

/* --- Output ------------------------------------------------------------------------------------------------
 */

void kit_debug_sink(const char* line, size_t len) {
  for (size_t i = 0; i < len; i++) outb(DEBUG_CONSOLE_PORT, (uint8_t)line[i]);
}

static kit_sink_fn sink = kit_debug_sink;
static char line_buf[512];
static size_t line_len;

void kit_set_sink(kit_sink_fn s) {
  kit_flush();
  sink = s != 0 ? s : kit_debug_sink;
}

void kit_flush(void) {
  if (line_len == 0) return;
  size_t n = line_len;
  line_len = 0;
  sink(line_buf, n);
}

static void put_char(char c) {
  line_buf[line_len++] = c;
  if (c == '\n' || line_len == sizeof line_buf) kit_flush();
}

/* A formatter writing through a callback: enough of printf for diagnostics (%s %c %d %u %x %p, l/ll, width).
 */
typedef void (*emit_fn)(void* ctx, char c);

static void format(emit_fn emit, void* ctx, const char* fmt, va_list ap) {
  for (; *fmt != 0; fmt++) {
    if (*fmt != '%') {
      emit(ctx, *fmt);
      continue;
    }
    fmt++;
    char pad = ' ';
    if (*fmt == '0') {
      pad = '0';
      fmt++;
    }
    int width = 0;
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    int longs = 0;
    while (*fmt == 'l') {
      longs++;
      fmt++;
    }
    char tmp[24];
    int n = 0;
    const char* s = 0;
    switch (*fmt) {
      case 's':
        s = va_arg(ap, const char*);
        if (s == 0) s = "(null)";
        break;
      case 'c':
        tmp[n++] = (char)va_arg(ap, int);
        break;
      case 'd':
      case 'u':
      case 'x':
      case 'p': {
        uint64_t v;
        bool neg = false;
        if (*fmt == 'p') {
          v = (uint64_t)(uintptr_t)va_arg(ap, void*);
          emit(ctx, '0');
          emit(ctx, 'x');
        } else if (*fmt == 'd') {
          int64_t sv = longs > 0 ? va_arg(ap, int64_t) : va_arg(ap, int);
          neg = sv < 0;
          v = neg ? (uint64_t)(-(sv + 1)) + 1 : (uint64_t)sv;
        } else {
          v = longs > 0 ? va_arg(ap, uint64_t) : va_arg(ap, unsigned int);
        }
        unsigned base = (*fmt == 'x' || *fmt == 'p') ? 16 : 10;
        char digits[24];
        int d = 0;
        do {
          digits[d++] = "0123456789abcdef"[v % base];
          v /= base;
        } while (v != 0);
        if (neg) tmp[n++] = '-';
        for (int i = d + (neg ? 1 : 0); i < width && pad == '0'; i++) tmp[n++] = '0';
        while (d > 0) tmp[n++] = digits[--d];
        break;
      }
      case '%':
        tmp[n++] = '%';
        break;
      default:
        tmp[n++] = '?';
        break;
    }
    int len = s != 0 ? (int)strlen(s) : n;
    for (int i = len; i < width; i++) emit(ctx, ' ');
    for (int i = 0; i < len; i++) emit(ctx, s != 0 ? s[i] : tmp[i]);
  }
}

static void emit_line(void* ctx, char c) {
  (void)ctx;
  put_char(c);
}

void kit_vprintf(const char* fmt, va_list ap) { format(emit_line, 0, fmt, ap); }

void kit_printf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kit_vprintf(fmt, ap);
  va_end(ap);
}

struct buf_ctx {
  char* buf;
  size_t size;
  size_t len;
};

static void emit_buf(void* ctx, char c) {
  struct buf_ctx* b = ctx;
  if (b->len + 1 < b->size) b->buf[b->len] = c;
  b->len++;
}

int kit_snprintf(char* buf, size_t size, const char* fmt, ...) {
  struct buf_ctx b = {buf, size, 0};
  va_list ap;
  va_start(ap, fmt);
  format(emit_buf, &b, fmt, ap);
  va_end(ap);
  if (size > 0) buf[b.len < size ? b.len : size - 1] = 0;
  return (int)b.len;
}

/* --- Exit --------------------------------------------------------------------------------------------------
 */

void kit_exit(uint8_t code) {
  kit_flush();
  outb(DEBUG_EXIT_PORT, code);
  for (;;) cpu_relax(); /* the VM stops at the write above */
}

void kit_fail(uint8_t code, const char* fmt, ...) {
  /* The sink's device may be the one that failed: report (and flush what is pending) on the debug console. */
  sink = kit_debug_sink;
  kit_flush();
  kit_printf("KIT FAIL 0x%02x: ", code);
  va_list ap;
  va_start(ap, fmt);
  kit_vprintf(fmt, ap);
  va_end(ap);
  kit_printf("\n");
  kit_exit(code);
}

/* --- Memory ------------------------------------------------------------------------------------------------
 */

static uintptr_t heap = (uintptr_t)__heap_start;

void* kit_alloc(size_t size, size_t align) {
  if (align < 16) align = 16;
  uintptr_t at = (heap + align - 1) & ~(uintptr_t)(align - 1);
  heap = at + size;
  memset((void*)at, 0, size);
  return (void*)at;
}

uint64_t kit_heap_end(void) { return heap; }

void kit_delay(uint64_t ticks) {
  uint64_t start = rdtsc();
  while (rdtsc() - start < ticks) cpu_relax();
}
