/*
 * Console test: "hello from the virtio console" on port 0's transmitq, then kit output moves to the console;
 * one line typed by the host comes back as "KIT console echo: <line>" (a two-descriptor chain).
 */
#include "console.h"
#include "kit-tests.h"

static struct vconsole console;

void test_console(struct vdev* d) {
  vcons_init(&console, d, 0x10);
  static const char hello[] = "hello from the virtio console\n";
  vcons_write(&console, hello, sizeof hello - 1, 0x11);
  vcons_use_as_sink(&console);
  kit_printf("KIT console waiting for a line\n");
  static char line[128];
  size_t n = vcons_read_line(&console, line, sizeof line - 1, 0x12);
  line[n] = '\n';
  static const char prefix[] = "KIT console echo: ";
  vcons_write2(&console, prefix, sizeof prefix - 1, line, n + 1, 0x13);
  kit_printf("KIT console ok: transmitq %u chains, %u notifications\n", console.tx.completions,
             console.tx.kicks);
}
