/* Frame decoding and payload validation for isola-agent, mirroring src/qrexec/protocol.ts and
 * frame-reader.ts (isolad's side): same limits, same accept sets, same error texts where it matters. */
#include "proto.h"

#include <stdio.h>
#include <string.h>

void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void encode_header(uint8_t out[HEADER_SIZE], uint32_t type, uint32_t len) {
  put_u32(out, type);
  put_u32(out + 4, len);
}

size_t encode_hello(uint8_t *out, uint32_t flags, const char *ident) {
  memcpy(out, "ISOLAQRX", 8);
  put_u32(out + 8, PROTOCOL_VERSION);
  put_u32(out + 12, flags);
  size_t n = 0;
  for (; ident[n] && n < HELLO_MAX_IDENT; n++) {
    unsigned char c = (unsigned char)ident[n];
    out[HELLO_FIXED + n] = c >= 0x20 && c <= 0x7e ? c : '?';
  }
  return HELLO_FIXED + n;
}

const char *type_name(uint32_t type, char *buf, size_t buflen) {
  static const struct { uint32_t type; const char *name; } names[] = {
    {MSG_DATA_STDIN, "MSG_DATA_STDIN"}, {MSG_DATA_STDOUT, "MSG_DATA_STDOUT"},
    {MSG_DATA_STDERR, "MSG_DATA_STDERR"}, {MSG_DATA_EXIT_CODE, "MSG_DATA_EXIT_CODE"},
    {MSG_EXEC_CMDLINE, "MSG_EXEC_CMDLINE"}, {MSG_JUST_EXEC, "MSG_JUST_EXEC"},
    {MSG_SERVICE_CONNECT, "MSG_SERVICE_CONNECT"}, {MSG_SERVICE_REFUSED, "MSG_SERVICE_REFUSED"},
    {MSG_CONNECTION_TERMINATED, "MSG_CONNECTION_TERMINATED"}, {MSG_TRIGGER_SERVICE3, "MSG_TRIGGER_SERVICE3"},
    {MSG_HELLO, "MSG_HELLO"}, {MSG_DATA_CONNECT, "MSG_DATA_CONNECT"}, {MSG_SHUTDOWN, "MSG_SHUTDOWN"},
    {MSG_PING, "MSG_PING"}, {MSG_PONG, "MSG_PONG"}, {MSG_SERVICE_NOTICE, "MSG_SERVICE_NOTICE"},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (names[i].type == type) {
      snprintf(buf, buflen, "%s (0x%x)", names[i].name, type);
      return buf;
    }
  }
  snprintf(buf, buflen, "unknown type 0x%x", type);
  return buf;
}

/* payloadLimits() of protocol.ts: [min, max] per type, judged from the header alone. */
static void limits(uint32_t type, uint32_t *min, uint32_t *max) {
  *min = 0;
  *max = MAX_PAYLOAD;
  switch (type) {
    case MSG_HELLO: *min = HELLO_FIXED; *max = HELLO_FIXED + HELLO_MAX_IDENT; break;
    case MSG_DATA_EXIT_CODE: case MSG_DATA_CONNECT: case MSG_SHUTDOWN: *min = *max = 4; break;
    case MSG_PING: case MSG_PONG: *max = 64; break;
    case MSG_SERVICE_NOTICE: *min = 1; *max = 1024; break;
    case MSG_SERVICE_REFUSED: *min = *max = SERVICE_IDENT; break;
    case MSG_EXEC_CMDLINE: case MSG_JUST_EXEC: case MSG_SERVICE_CONNECT: *min = 9; break;
    case MSG_CONNECTION_TERMINATED: *min = 8; break;
    case MSG_TRIGGER_SERVICE3: *min = 64 + SERVICE_IDENT + 1; break;
    default: break;
  }
}

static int accepted(enum accept_set set, uint32_t type) {
  switch (set) {
    case ACCEPT_HELLO: return type == MSG_HELLO;
    case ACCEPT_CONTROL:
      return type == MSG_EXEC_CMDLINE || type == MSG_JUST_EXEC || type == MSG_SERVICE_CONNECT ||
             type == MSG_SERVICE_REFUSED || type == MSG_SHUTDOWN || type == MSG_PING || type == MSG_PONG;
    case ACCEPT_DATA: return type == MSG_DATA_STDIN;
    case ACCEPT_NOTHING: return 0;
  }
  return 0;
}

void decoder_init(struct decoder *d, enum accept_set accept) {
  d->accept = accept;
  d->have_header = 0;
  d->frame_ready = 0;
  d->type = d->len = 0;
  d->got = 0;
}

uint8_t *decoder_want(struct decoder *d, size_t *n) {
  if (d->frame_ready) {
    d->frame_ready = 0;
    d->have_header = 0;
    d->got = 0;
  }
  if (!d->have_header) {
    *n = HEADER_SIZE - d->got;
    return d->header + d->got;
  }
  *n = d->len - d->got;
  return d->payload + d->got;
}

enum dec_result decoder_advance(struct decoder *d, size_t n, char *err, size_t errlen) {
  char name[64];
  d->got += n;
  if (!d->have_header) {
    if (d->got < HEADER_SIZE) return DEC_MORE;
    d->type = get_u32(d->header);
    d->len = get_u32(d->header + 4);
    d->got = 0;
    if (d->len > MAX_PAYLOAD) {
      snprintf(err, errlen, "%s claims %u bytes, more than %u", type_name(d->type, name, sizeof name), d->len, MAX_PAYLOAD);
      return DEC_ERROR;
    }
    if (!accepted(d->accept, d->type)) {
      snprintf(err, errlen, "%s is not allowed here", type_name(d->type, name, sizeof name));
      return DEC_ERROR;
    }
    uint32_t min, max;
    limits(d->type, &min, &max);
    if (d->len < min || d->len > max) {
      snprintf(err, errlen, "%s with %u bytes (expected %u..%u)", type_name(d->type, name, sizeof name), d->len, min, max);
      return DEC_ERROR;
    }
    d->have_header = 1;
  }
  if (d->got < d->len) return DEC_MORE;
  d->frame_ready = 1;
  return DEC_FRAME;
}

int decoder_end(const struct decoder *d, char *err, size_t errlen) {
  char name[64];
  if (d->frame_ready) return 0;
  if (d->have_header) {
    snprintf(err, errlen, "connection closed inside the payload of %s", type_name(d->type, name, sizeof name));
    return -1;
  }
  if (d->got > 0) {
    snprintf(err, errlen, "connection closed inside a frame header (%zu of %u bytes)", d->got, HEADER_SIZE);
    return -1;
  }
  return 0;
}

enum dec_result decoder_feed(struct decoder *d, const uint8_t *buf, size_t n, size_t *used, char *err, size_t errlen) {
  *used = 0;
  while (*used < n) {
    size_t want;
    uint8_t *dst = decoder_want(d, &want);
    size_t take = n - *used < want ? n - *used : want;
    memcpy(dst, buf + *used, take);
    *used += take;
    enum dec_result r = decoder_advance(d, take, err, errlen);
    if (r != DEC_MORE) return r;
  }
  return DEC_MORE;
}

int parse_hello(const uint8_t *untrusted, size_t len, struct hello *out, char *err, size_t errlen) {
  if (len < HELLO_FIXED || len > HELLO_FIXED + HELLO_MAX_IDENT) {
    snprintf(err, errlen, "HELLO payload of %zu bytes (expected %u..%u)", len, HELLO_FIXED, HELLO_FIXED + HELLO_MAX_IDENT);
    return -1;
  }
  if (memcmp(untrusted, "ISOLAQRX", 8) != 0) {
    snprintf(err, errlen, "bad magic in HELLO (not an Isola qrexec peer)");
    return -1;
  }
  uint32_t version = get_u32(untrusted + 8);
  if (version != PROTOCOL_VERSION) {
    snprintf(err, errlen, "peer speaks protocol version %u, this side speaks %u", version, PROTOCOL_VERSION);
    return -1;
  }
  size_t n = len - HELLO_FIXED;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = untrusted[HELLO_FIXED + i];
    if (c < 0x20 || c > 0x7e) {
      snprintf(err, errlen, "HELLO ident is not printable ASCII");
      return -1;
    }
    out->ident[i] = (char)c;
  }
  out->ident[n] = '\0';
  out->flags = get_u32(untrusted + 12);
  return 0;
}

/* Strict as TextDecoder('utf-8', {fatal: true}): no overlong forms, no surrogates, nothing past U+10FFFF. */
int utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) { need = 1; cp = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { need = 2; cp = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { need = 3; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n - i - 1 < need) return 0;
    for (size_t k = 1; k <= need; k++) {
      uint8_t cc = s[i + k];
      if ((cc & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += need + 1;
  }
  return 1;
}

int parse_exec_params(const uint8_t *untrusted, size_t len, struct exec_params *out, char *err, size_t errlen) {
  if (len < 9) {
    snprintf(err, errlen, "exec_params of %zu bytes is too short", len);
    return -1;
  }
  const uint8_t *cmd = untrusted + 8;
  size_t n = len - 8;
  if (cmd[n - 1] != 0) {
    snprintf(err, errlen, "exec_params cmdline is not NUL-terminated");
    return -1;
  }
  if (memchr(cmd, 0, n - 1) != NULL) {
    snprintf(err, errlen, "exec_params cmdline contains a NUL byte");
    return -1;
  }
  if (!utf8_valid(cmd, n - 1)) {
    snprintf(err, errlen, "exec_params cmdline is not valid UTF-8");
    return -1;
  }
  out->connect_domain = get_u32(untrusted);
  out->connect_port = get_u32(untrusted + 4);
  out->cmdline = (const char *)cmd;
  out->cmdline_len = n - 1;
  return 0;
}

static int name_char(char c, int first) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') return 1;
  return !first && (c == '.' || c == '-');
}

/* [A-Za-z0-9_][A-Za-z0-9_.-]{0,31}, and with allow_dollar an optional trailing '$' (Debian's adduser). */
int is_login_name(const char *s, size_t n, int allow_dollar) {
  if (allow_dollar && n > 1 && s[n - 1] == '$') n--;
  if (n < 1 || n > 32) return 0;
  for (size_t i = 0; i < n; i++) {
    if (!name_char(s[i], i == 0)) return 0;
  }
  return 1;
}

int parse_cmdline(const char *cmdline, size_t len, struct cmdline *out, char *err, size_t errlen) {
  const char *colon = memchr(cmdline, ':', len);
  if (!colon) {
    snprintf(err, errlen, "cmdline has no USER: prefix");
    return -1;
  }
  size_t ulen = (size_t)(colon - cmdline);
  if (!is_login_name(cmdline, ulen, 1)) {
    /* The name is shown as bytes escaped by the logger; 40 of them are plenty to recognise it. */
    snprintf(err, errlen, "cmdline user '%.*s' is not a valid user name", (int)(ulen > 40 ? 40 : ulen), cmdline);
    return -1;
  }
  memcpy(out->user, cmdline, ulen);
  out->user[ulen] = '\0';
  const char *cmd = colon + 1;
  size_t clen = len - ulen - 1;
  if (clen >= 6 && memcmp(cmd, "nogui:", 6) == 0) {
    cmd += 6;
    clen -= 6;
  }
  if (clen == 0) {
    snprintf(err, errlen, "cmdline has an empty command");
    return -1;
  }
  out->command = cmd;
  out->command_len = clen;
  return 0;
}
