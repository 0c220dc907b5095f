/* Fuzz target for what isolad (or anything posing as it) can make the agent parse: the frame stream
 * of a control or data connection through every state, exec_params and cmdlines, service requests,
 * and the qube-written files the agent reads (rpc-config, passwd, group, hosts). Built with gcc's
 * sanitizers by fuzz-driver.c, or where clang exists:
 *   clang -fsanitize=fuzzer,address fuzz-frames.c proto.c services.c users.c setup.c */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "proto.h"
#include "services.h"
#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static struct decoder dec;

/* d->payload is a copy of exactly d->len bytes (see frames()), so reading past the frame is caught. */
static void on_control_frame(const struct decoder *frame, const uint8_t *payload) {
  struct { uint32_t type, len; const uint8_t *payload; } f = {frame->type, frame->len, payload}, *d = &f;
  char err[200];
  struct exec_params p;
  struct cmdline cl;
  struct service_request r;
  switch (d->type) {
    case MSG_EXEC_CMDLINE:
    case MSG_JUST_EXEC:
    case MSG_SERVICE_CONNECT:
      if (parse_exec_params(d->payload, d->len, &p, err, sizeof err) != 0) return;
      CHECK(p.cmdline[p.cmdline_len] == '\0' && strlen(p.cmdline) == p.cmdline_len);
      if (parse_cmdline(p.cmdline, p.cmdline_len, &cl, err, sizeof err) != 0) return;
      CHECK(cl.command_len > 0 && cl.command[cl.command_len] == '\0' && strlen(cl.user) <= MAX_USER_NAME);
      if (parse_service_request(cl.command, cl.command_len, &r) == 0) {
        CHECK(strlen(r.service) >= 1 && strchr(r.service, '/') == NULL && strchr(r.argument, '/') == NULL);
      }
      return;
    case MSG_SHUTDOWN:
      CHECK(d->len == 4);
      (void)get_u32(d->payload);
      return;
    case MSG_PING: {
      uint8_t pong[HEADER_SIZE + 64];
      CHECK(d->len <= 64);
      encode_header(pong, MSG_PONG, d->len);
      memcpy(pong + HEADER_SIZE, d->payload, d->len);
      return;
    }
    case MSG_SERVICE_REFUSED:
      CHECK(d->len == SERVICE_IDENT);
      return;
    case MSG_PONG:
      return;
    default:
      abort(); /* the accept set let through a type the control state does not take */
  }
}

/* The byte stream in chunks of the sizes a socket might return, through HELLO, then control or data. */
static void frames(const uint8_t *data, size_t size) {
  if (size < 2) return;
  int as_data = data[0] & 1;
  size_t chunk = (size_t)data[1] % 97 + 1;
  data += 2;
  size -= 2;
  decoder_init(&dec, ACCEPT_HELLO);
  int hello_seen = 0;
  char err[200];
  size_t pos = 0;
  while (pos < size) {
    size_t want;
    uint8_t *dst = decoder_want(&dec, &want);
    CHECK(want > 0 && want <= MAX_PAYLOAD);
    size_t n = size - pos < want ? size - pos : want;
    if (n > chunk) n = chunk;
    memcpy(dst, data + pos, n);
    pos += n;
    enum dec_result r = decoder_advance(&dec, n, err, sizeof err);
    if (r == DEC_ERROR) return; /* the connection is dropped */
    if (r == DEC_MORE) continue;
    CHECK(dec.len <= MAX_PAYLOAD);
    if (!hello_seen) {
      struct hello h;
      CHECK(dec.type == MSG_HELLO);
      uint8_t *copy = malloc(dec.len);
      if (!copy) return;
      memcpy(copy, dec.payload, dec.len);
      int bad = parse_hello(copy, dec.len, &h, err, sizeof err);
      free(copy);
      if (bad) return;
      CHECK(strlen(h.ident) == dec.len - HELLO_FIXED);
      hello_seen = 1;
      dec.accept = as_data ? ACCEPT_DATA : ACCEPT_CONTROL;
    } else if (as_data) {
      CHECK(dec.type == MSG_DATA_STDIN);
      if (dec.len == 0) dec.accept = ACCEPT_NOTHING;
    } else {
      uint8_t *copy = malloc(dec.len ? dec.len : 1);
      if (!copy) return;
      memcpy(copy, dec.payload, dec.len);
      on_control_frame(&dec, copy);
      free(copy);
    }
  }
  (void)decoder_end(&dec, err, sizeof err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t mode = data[0] % 5;
  data++;
  size--;
  /* Copies without a terminator: a parser that reads past the end is caught by the sanitizer. */
  char *text = malloc(size ? size : 1);
  if (!text) return 0;
  memcpy(text, data, size);
  char err[300], user[64];
  struct qube_user u;
  switch (mode) {
    case 0:
      frames(data, size);
      break;
    case 1:
      if (parse_rpc_config(text, size, user, sizeof user, err, sizeof err) == 0) CHECK(user[0] == '\0' || is_login_name(user, strlen(user), 0));
      break;
    case 2:
      if (parse_passwd(text, size, "user", &u) == 0) {
        gid_t gids[MAX_GROUPS];
        size_t n = parse_groups(text, size, &u, gids, MAX_GROUPS);
        CHECK(n >= 1 && n <= MAX_GROUPS && gids[0] == u.gid);
      }
      break;
    case 3: {
      size_t cap = size + 64, out_len;
      char *out = malloc(cap);
      if (out && with_hosts_entry(text, size, "work", out, cap, &out_len) == 0) CHECK(out_len <= cap && out[out_len - 1] == '\n');
      free(out);
      break;
    }
    case 4: {
      struct service_request r;
      if (parse_service_request(text, size, &r) == 0) CHECK(strlen(r.source) >= 1 && strlen(r.source) <= 31);
      struct exec_params p;
      if (parse_exec_params((const uint8_t *)text, size, &p, err, sizeof err) == 0) CHECK(utf8_valid((const uint8_t *)p.cmdline, p.cmdline_len));
      break;
    }
  }
  free(text);
  return 0;
}
