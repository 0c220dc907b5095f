#include "log.h"
#include "clock.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BURST 20.0
#define PER_SECOND 2.0
#define MAX_LINE 600

static double tokens = BURST;
static int64_t last_refill;
static unsigned long suppressed;

void log_init(void) {
  /* Our stderr is the qube's console pipe (or a test's): a reader that stops must not stop the agent.
   * Commands never inherit it (they get pipes or /dev/null), so the flag changes nothing for them. */
  int fl = fcntl(2, F_GETFL);
  if (fl >= 0) (void)fcntl(2, F_SETFL, fl | O_NONBLOCK);
  last_refill = now_ms();
}

static void emit(const char *line, size_t n) {
  ssize_t r = write(2, line, n);
  (void)r; /* EAGAIN, EPIPE: the line is lost */
}

void agent_log(const char *fmt, ...) {
  int64_t t = now_ms();
  tokens += (double)(t - last_refill) / 1000.0 * PER_SECOND;
  if (tokens > BURST) tokens = BURST;
  last_refill = t;
  if (tokens < 1.0) {
    suppressed++;
    return;
  }
  tokens -= 1.0;
  char raw[MAX_LINE], line[MAX_LINE * 4 + 32];
  if (suppressed) {
    int n = snprintf(line, sizeof line, "isola-agent: ... %lu similar lines suppressed\n", suppressed);
    if (n > 0) emit(line, (size_t)n);
    suppressed = 0;
  }
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(raw, sizeof raw, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1;
  size_t o = (size_t)snprintf(line, sizeof line, "isola-agent: ");
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)raw[i];
    if (c >= 0x20 && c <= 0x7e && c != '\\') {
      line[o++] = (char)c;
    } else {
      line[o++] = '\\';
      if (c == '\\') {
        line[o++] = '\\';
        continue;
      }
      line[o++] = 'x';
      line[o++] = hex[c >> 4];
      line[o++] = hex[c & 15];
    }
  }
  line[o++] = '\n';
  emit(line, o);
}
