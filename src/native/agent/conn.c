/* One framed connection to isolad's agent socket: non-blocking connect, a bounded output buffer,
 * reads that never run past the current frame, and "a bad peer loses its connection, nothing more". */
#define _GNU_SOURCE
#include "agent.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct conn *conns[MAX_CONNS];
size_t nconns;

const char *errno_name(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case EAGAIN: return "EAGAIN";
    case EACCES: return "EACCES";
    case ENOTDIR: return "ENOTDIR";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOMEM: return "ENOMEM";
    default: return strerror(e);
  }
}

static const char *label(const struct conn *c, char *buf, size_t len) {
  if (c->kind == CONN_CONTROL) snprintf(buf, len, "control");
  else snprintf(buf, len, "request %u", c->request_id);
  return buf;
}

/* A unix-socket connect: EAGAIN (isolad's backlog full) is a failure like any other, retried by the caller. */
int unix_connect(const char *path, int *in_progress) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  size_t n = strlen(path);
  if (n >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(addr.sun_path, path, n);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  *in_progress = 0;
  int r;
  do r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno == EINPROGRESS) *in_progress = 1;
  else if (r < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

struct conn *conn_open(enum conn_kind kind, char *why, size_t whylen) {
  if (nconns == MAX_CONNS) {
    snprintf(why, whylen, "too many connections open");
    return NULL;
  }
  struct conn *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(why, whylen, "ENOMEM");
    return NULL;
  }
  int in_progress;
  c->fd = unix_connect(cfg.socket_path, &in_progress);
  if (c->fd < 0) {
    snprintf(why, whylen, "%s", errno_name(errno));
    free(c);
    return NULL;
  }
  c->kind = kind;
  c->connecting = in_progress;
  c->in_fd = c->out_fd = c->err_fd = -1;
  c->forced_code = -1;
  c->deadline = now_ms() + HELLO_TIMEOUT_MS;
  decoder_init(&c->dec, ACCEPT_HELLO);
  uint8_t hello[HELLO_FIXED + HELLO_MAX_IDENT];
  size_t n = encode_hello(hello, kind == CONN_CONTROL ? HELLO_FLAG_CONTROL : HELLO_FLAG_DATA, AGENT_IDENT);
  conn_queue(c, MSG_HELLO, hello, n);
  conns[nconns++] = c;
  return c;
}

int conn_queue(struct conn *c, uint32_t type, const void *payload, size_t len) {
  if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
  if (OUT_CAP - c->out_len < HEADER_SIZE + len && c->out_off > 0) {
    memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
    c->out_len -= c->out_off;
    c->out_off = 0;
  }
  if (len > MAX_PAYLOAD || OUT_CAP - c->out_len < HEADER_SIZE + len) return -1;
  encode_header(c->out + c->out_len, type, (uint32_t)len);
  if (len) memcpy(c->out + c->out_len + HEADER_SIZE, payload, len);
  c->out_len += HEADER_SIZE + len;
  return 0;
}

void conn_flush(struct conn *c) {
  if (c->dead || c->connecting) return;
  while (c->out_off < c->out_len) {
    ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) return;
    if (w < 0) {
      conn_drop(c, errno_name(errno));
      return;
    }
    c->out_off += (size_t)w;
  }
  c->out_off = c->out_len = 0;
  if (c->shut_after_flush && !c->lingering) {
    shutdown(c->fd, SHUT_WR);
    c->lingering = 1;
    c->deadline = now_ms() + LINGER_MS;
  }
}

void conn_drop(struct conn *c, const char *reason) {
  if (c->dead) return;
  c->dead = 1;
  close(c->fd);
  c->fd = -1;
  if (c->kind == CONN_CONTROL) control_on_close(c, reason);
  else data_on_close(c, reason);
}

static void protocol_error(struct conn *c, const char *what) {
  char l[32], reason[400];
  snprintf(reason, sizeof reason, "protocol error: %s", what);
  agent_log("%s: %s; connection dropped", label(c, l, sizeof l), reason);
  conn_drop(c, reason);
}

void conn_timeout(struct conn *c) {
  if (c->lingering) {
    conn_drop(c, NULL);
    return;
  }
  char l[32], reason[64];
  snprintf(reason, sizeof reason, "no HELLO within %d ms", HELLO_TIMEOUT_MS);
  agent_log("%s: %s; connection dropped", label(c, l, sizeof l), reason);
  conn_drop(c, reason);
}

int conn_wants_read(const struct conn *c) {
  if (c->dead || c->connecting) return 0;
  if (c->lingering) return 1;
  /* Control: room for the answer to a PING, so a peer that does not read cannot make us buffer more. */
  if (c->kind == CONN_CONTROL) return OUT_CAP - c->out_len >= 256;
  return !c->stdin_pending && !c->exit_sent;
}

static void linger_read(struct conn *c) {
  static uint8_t sink[16384];
  for (int i = 0; i < 64; i++) {
    ssize_t r = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) return;
    if (r <= 0) {
      conn_drop(c, NULL);
      return;
    }
  }
}

static void on_frame(struct conn *c) {
  if (!c->hello_seen) {
    struct hello h;
    char err[200];
    if (parse_hello(c->dec.payload, c->dec.len, &h, err, sizeof err) != 0) {
      protocol_error(c, err);
      return;
    }
    c->hello_seen = 1;
    if (!c->lingering) c->deadline = 0;
    c->dec.accept = c->kind == CONN_CONTROL ? ACCEPT_CONTROL : ACCEPT_DATA;
    if (c->kind == CONN_CONTROL) control_on_hello(c, &h);
    return;
  }
  if (c->kind == CONN_CONTROL) control_on_frame(c);
  else data_on_frame(c);
}

void conn_on_readable(struct conn *c) {
  if (c->lingering) {
    linger_read(c);
    return;
  }
  /* Bounded per wakeup, so one busy connection cannot starve the others. */
  for (int i = 0; i < 64 && conn_wants_read(c); i++) {
    size_t want;
    uint8_t *dst = decoder_want(&c->dec, &want);
    ssize_t r = recv(c->fd, dst, want, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) return;
    if (r < 0) {
      conn_drop(c, errno_name(errno));
      return;
    }
    char err[200];
    if (r == 0) {
      if (decoder_end(&c->dec, err, sizeof err) != 0) protocol_error(c, err);
      else conn_drop(c, NULL);
      return;
    }
    enum dec_result res = decoder_advance(&c->dec, (size_t)r, err, sizeof err);
    if (res == DEC_ERROR) {
      protocol_error(c, err);
      return;
    }
    if (res == DEC_FRAME) on_frame(c);
  }
}

void conn_free_dead(void) {
  size_t j = 0;
  for (size_t i = 0; i < nconns; i++) {
    struct conn *c = conns[i];
    if (!c->dead) {
      conns[j++] = c;
      continue;
    }
    free(c->command);
    free(c);
  }
  nconns = j;
}
