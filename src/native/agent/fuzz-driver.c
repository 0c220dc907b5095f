/* Standalone driver for fuzz-frames.c (no libFuzzer here): a deterministic seeded stream of random
 * inputs and of valid frame streams mutated the ways a hostile peer would (truncated, oversized len,
 * wrong type for the state, HELLO out of order, floods), for a bounded time. A sanitizer report aborts.
 * Usage: fuzz-frames [SECONDS [SEED]] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT (4 * (MAX_PAYLOAD + 64))

static uint64_t rng;
static uint32_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}
static uint32_t below(uint32_t n) {
  return n ? next() % n : 0;
}

static uint8_t buf[MAX_INPUT];
static size_t len;

static void put(const void *p, size_t n) {
  if (len + n > sizeof buf) return;
  memcpy(buf + len, p, n);
  len += n;
}

static void frame(uint32_t type, const void *payload, uint32_t n) {
  uint8_t h[HEADER_SIZE];
  encode_header(h, type, n);
  put(h, sizeof h);
  put(payload, n);
}

static void hello(void) {
  uint8_t p[HELLO_FIXED + HELLO_MAX_IDENT];
  frame(MSG_HELLO, p, (uint32_t)encode_hello(p, 0, "isolad"));
}

static const char *const CMDS[] = {
  "user:echo hi", "DEFAULT:id", "root:QUBESRPC qubes.Filecopy+ work", "user:nogui:true",
  "user:QUBESRPC test.Echo+a+b dom0", "x$:QUBESRPC  a+ b", "user:", ":cmd", "a.b-c:QUBESRPC x+y Zz.-_",
  "user:\xc3\xa9\xe2\x82\xac", "user:\xed\xa0\x80", "user:\xc0\xaf", "user:QUBESRPC ../x+ work",
};

static void exec_frame(uint32_t type) {
  uint8_t p[600];
  const char *c = CMDS[below(sizeof CMDS / sizeof CMDS[0])];
  size_t n = strlen(c);
  put_u32(p, below(4) == 0 ? next() : 0);
  put_u32(p + 4, next());
  memcpy(p + 8, c, n);
  p[8 + n] = 0;
  frame(type, p, (uint32_t)(9 + n));
}

static void valid_stream(void) {
  int data = below(2);
  buf[len++] = 0; /* mode: frames */
  buf[len++] = (uint8_t)(data | (below(256) & ~1u));
  if (below(8)) hello();
  int frames = (int)below(40);
  for (int i = 0; i < frames; i++) {
    uint8_t p[MAX_PAYLOAD];
    if (data) {
      uint32_t n = below(8) == 0 ? MAX_PAYLOAD : below(3000);
      memset(p, (int)below(256), n);
      frame(MSG_DATA_STDIN, p, below(10) == 0 ? 0 : n);
      continue;
    }
    switch (below(7)) {
      case 0: case 1: exec_frame(below(2) ? MSG_EXEC_CMDLINE : MSG_JUST_EXEC); break;
      case 2: { uint32_t n = below(70); memset(p, 'p', n); frame(MSG_PING, p, n); break; }
      case 3: put_u32(p, next()); frame(MSG_SHUTDOWN, p, 4); break;
      case 4: memset(p, 0, 32); frame(below(2) ? MSG_SERVICE_REFUSED : MSG_PONG, p, 32); break;
      case 5: hello(); break; /* HELLO out of order */
      case 6: frame(below(0x500), p, below(100)); break; /* a type this state does not take */
    }
  }
}

static void flood(void) {
  buf[len++] = 0;
  buf[len++] = (uint8_t)(below(256) & ~1u);
  hello();
  while (len + 80 < sizeof buf) frame(MSG_PING, "flood", 5);
}

static void mutate(void) {
  int rounds = (int)below(6);
  for (int i = 0; i < rounds && len > 2; i++) {
    size_t at = 2 + below((uint32_t)(len - 2));
    switch (below(5)) {
      case 0: buf[at] ^= (uint8_t)(1u << below(8)); break;
      case 1: len = at; break;                                          /* truncated */
      case 2: if (at + 4 <= len) put_u32(buf + at, 0xffffffffu - below(3)); break; /* oversized len */
      case 3: if (at + 4 <= len) put_u32(buf + at, MSG_DATA_STDOUT + below(0x300)); break;
      case 4: buf[at] = (uint8_t)next(); break;
    }
  }
}

static const char *const TEXT_PIECES[] = {
  "force-user = 'root'\n", "force-user=\"alice\"  # c\n", "# comment\n", "\n", "  wait-for-session = 1\n",
  "force-user = root; rm\n", "force-user = ''\n", "=x\n", "user:x:1000:1000::/home/user:/bin/bash\n",
  "sudo:x:27:user,other\n", "user::notanumber:1:::\n", "127.0.1.1 debian-12\n", "127.0.0.1 localhost\n",
  "\t127.0.1.1\tx\n", "user:x:4294967295:0:::\n", "a:b:c", ":::::::\n", "\xff\xfe\0\0\r\n",
};

static void text_input(void) {
  buf[len++] = (uint8_t)(1 + below(4));
  int pieces = (int)below(20);
  for (int i = 0; i < pieces; i++) {
    const char *p = TEXT_PIECES[below(sizeof TEXT_PIECES / sizeof TEXT_PIECES[0])];
    put(p, strcmp(p, "\xff\xfe") == 0 ? 6 : strlen(p));
  }
  if (below(3) == 0) put("QUBESRPC test.Echo+x work", 25);
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 5.0;
  rng = argc > 2 ? strtoull(argv[2], NULL, 0) : 0x15014a9e7;
  if (!rng) rng = 1;
  unsigned long runs = 0;
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 >= seconds) break;
    len = 0;
    switch (below(10)) {
      case 0: case 1: {
        len = below(4096);
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)next();
        break;
      }
      case 2: flood(); break;
      case 3: case 4: text_input(); mutate(); break;
      default: valid_stream(); mutate(); break;
    }
    LLVMFuzzerTestOneInput(buf, len);
    runs++;
  }
  printf("fuzz-frames: %lu inputs in %.1f s, no sanitizer report\n", runs, seconds);
  return 0;
}
