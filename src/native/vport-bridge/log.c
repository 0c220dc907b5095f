/* Log lines on stderr (the guest's console): never blocking, bytes outside printable ASCII escaped (reasons may
 * quote what the host sent one day), rate-limited to a burst of 20 and then 2 a second. */
#include "bridge.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define BURST 20.0
#define PER_SECOND 2.0
#define MAX_LINE 600

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double tokens = BURST;
static int64_t last_refill;
static unsigned long suppressed;
static int nonblocking;

static void emit(const char *line, size_t n)
{
	ssize_t r = write(2, line, n);
	(void)r; /* a full or dead console loses the line; the bridge goes on */
}

void bridge_log(const char *fmt, ...)
{
	if (!nonblocking) {
		int fl = fcntl(2, F_GETFL);
		if (fl >= 0) (void)fcntl(2, F_SETFL, fl | O_NONBLOCK);
		nonblocking = 1;
		last_refill = now_ms();
	}
	int64_t t = now_ms();
	tokens += (double)(t - last_refill) / 1000.0 * PER_SECOND;
	if (tokens > BURST) tokens = BURST;
	last_refill = t;
	if (tokens < 1.0) {
		suppressed++;
		return;
	}
	tokens -= 1.0;
	char raw[MAX_LINE], line[MAX_LINE * 4 + 64];
	if (suppressed) {
		int n = snprintf(line, sizeof line, "isola-vport-bridge: ... %lu similar lines suppressed\n", suppressed);
		if (n > 0) emit(line, (size_t)n);
		suppressed = 0;
	}
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(raw, sizeof raw, fmt, ap);
	va_end(ap);
	if (n < 0) return;
	size_t len = (size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1;
	size_t o = (size_t)snprintf(line, sizeof line, "isola-vport-bridge: ");
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)raw[i];
		if (c >= 0x20 && c <= 0x7e && c != '\\') {
			line[o++] = (char)c;
			continue;
		}
		line[o++] = '\\';
		if (c == '\\') {
			line[o++] = '\\';
			continue;
		}
		line[o++] = 'x';
		line[o++] = hex[c >> 4];
		line[o++] = hex[c & 15];
	}
	line[o++] = '\n';
	emit(line, o);
}
