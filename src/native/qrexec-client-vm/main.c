/* qrexec-client-vm TARGET SERVICE[+ARGUMENT] [LOCAL_PROGRAM [ARGS]]: a qrexec call from inside a qube,
 * the C twin of src/agent/qrexec-client-vm.ts (same options, messages and exit codes) so that a call
 * does not pay Node's start (seconds in an hvm qube under TCG). stdin/stdout are the service's (or
 * LOCAL_PROGRAM's); the exit code is the service's, 126 if refused, 125 on a qrexec problem. */
#define _GNU_SOURCE
#include "../agent/proto.h"
#include "filter.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "qrexec-client-vm"
#define EXIT_QREXEC_PROBLEM 125
#define EXIT_REFUSED 126
#define EXIT_NOT_FOUND 127
#define HELLO_FLAG_CLIENT 0x4u
#define MAX_NOTICE 1024u
#define TARGET_DOMAIN 64u
#define DEFAULT_SOCKET "/run/qubes/qrexec-client.sock"

static const char USAGE[] = "usage: qrexec-client-vm [options] TARGET SERVICE[+ARGUMENT] [LOCAL_PROGRAM [ARGS...]]\n";
static const char HELP[] =
  "\n"
  "Call the qrexec service SERVICE in the qube TARGET (a name or @default, @dispvm, ...) if policy\n"
  "allows it: stdin and stdout are the service's, or LOCAL_PROGRAM's when given.\n"
  "\n"
  "options:\n"
  "  -t, --filter-escape-chars-stdout  replace escape and control characters in the service's stdout\n"
  "                                    (default when stdout is a terminal and no LOCAL_PROGRAM is given)\n"
  "  -T, --filter-escape-chars-stderr  the same for its stderr (default when stderr is a terminal)\n"
  "  --no-filter-escape-chars-stdout   opposite of --filter-escape-chars-stdout\n"
  "  --no-filter-escape-chars-stderr   opposite of --filter-escape-chars-stderr\n"
  "  --use-stdin-socket                stdin is a socket: the service's output goes to it too\n"
  "\n"
  "An empty TARGET ('') is @default: the policy's target= decides.\n";

static void write_all(int fd, const void *buf, size_t n);

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  write_all(2, line, (size_t)n);
}

/* errorText()'s wording for the errors a connect or spawn can meet, so both tools print the same line. */
static const char *error_text(int e) {
  switch (e) {
    case ENOENT: return "no such file or directory";
    case EACCES: return "permission denied";
    case EPERM: return "operation not permitted";
    case ENOTDIR: return "not a directory";
    case ECONNREFUSED: return "connection refused";
    case ECONNRESET: return "connection reset";
    case ENAMETOOLONG: return "file name too long";
    case ELOOP: return "too many levels of symbolic links";
    case ETIMEDOUT: return "timed out";
    default: return strerror(e);
  }
}

/* Blocking writes, also to a descriptor someone made non-blocking; a dead reader loses the bytes. */
static void write_all(int fd, const void *buf, size_t n) {
  const uint8_t *p = buf;
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      (void)poll(&pfd, 1, -1);
      continue;
    }
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

/* ---- frames from isolad: read exactly one frame at a time, checked from its header ---- */

enum phase { PH_HANDSHAKE, PH_DATA, PH_DATA_AFTER_STDOUT_EOF };

struct reader {
  uint8_t header[HEADER_SIZE];
  size_t got;
  int have_header;
  uint32_t type, len;
};

static uint8_t payload[MAX_PAYLOAD];

enum rd { RD_FRAME, RD_AGAIN, RD_EOF, RD_ERROR };

/* FramedSocket's checks (frame-reader.ts) for the data phase: the length first, then the type, then its size. */
static int check_data_header(enum phase ph, uint32_t type, uint32_t len, char *err, size_t errlen) {
  char name[64];
  if (len > MAX_PAYLOAD) {
    snprintf(err, errlen, "%s claims %u bytes, more than %u", type_name(type, name, sizeof name), len, MAX_PAYLOAD);
    return -1;
  }
  int ok = type == MSG_DATA_STDERR || type == MSG_DATA_EXIT_CODE || (type == MSG_DATA_STDOUT && ph == PH_DATA);
  if (!ok) {
    snprintf(err, errlen, "%s is not allowed here", type_name(type, name, sizeof name));
    return -1;
  }
  if (type == MSG_DATA_EXIT_CODE && len != 4) {
    snprintf(err, errlen, "%s with %u bytes (expected 4..4)", type_name(type, name, sizeof name), len);
    return -1;
  }
  return 0;
}

static enum rd read_frame(int fd, struct reader *r, enum phase ph, char *err, size_t errlen) {
  for (;;) {
    uint8_t *dst;
    size_t want;
    if (!r->have_header) {
      dst = r->header + r->got;
      want = HEADER_SIZE - r->got;
    } else {
      dst = payload + r->got;
      want = r->len - r->got;
    }
    if (want > 0) {
      ssize_t n = read(fd, dst, want);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return RD_AGAIN;
      if (n <= 0) {
        char name[64];
        err[0] = '\0';
        if (r->have_header)
          snprintf(err, errlen, "connection closed inside a %s payload", type_name(r->type, name, sizeof name));
        else if (r->got > 0)
          snprintf(err, errlen, "connection closed inside a frame header (%zu of %u bytes)", r->got, HEADER_SIZE);
        return RD_EOF; /* a reset is a close: TS's FramedSocket says no more either */
      }
      r->got += (size_t)n;
    }
    if (!r->have_header) {
      if (r->got < HEADER_SIZE) continue;
      r->type = get_u32(r->header);
      r->len = get_u32(r->header + 4);
      r->got = 0;
      if (ph == PH_HANDSHAKE && r->len > MAX_PAYLOAD) {
        snprintf(err, errlen, "oversized frame from isolad");
        return RD_ERROR;
      }
      if (ph != PH_HANDSHAKE && check_data_header(ph, r->type, r->len, err, errlen) != 0) return RD_ERROR;
      r->have_header = 1;
    }
    if (r->got < r->len) continue;
    r->have_header = 0;
    r->got = 0;
    return RD_FRAME;
  }
}

/* ---- connecting and the decision ---- */

static int connect_isolad(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) {
    say(PROG ": %s\n", error_text(ENAMETOOLONG));
    exit(EXIT_QREXEC_PROBLEM);
  }
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    say(PROG ": %s\n", error_text(errno));
    exit(EXIT_QREXEC_PROBLEM);
  }
  return fd;
}

static void send_call(int fd, const char *target, const char *call) {
  static uint8_t buf[2 * HEADER_SIZE + HELLO_FIXED + HELLO_MAX_IDENT + TARGET_DOMAIN + SERVICE_IDENT + 256];
  size_t hello_len = encode_hello(buf + HEADER_SIZE, HELLO_FLAG_CLIENT, PROG);
  encode_header(buf, MSG_HELLO, (uint32_t)hello_len);
  uint8_t *t = buf + HEADER_SIZE + hello_len;
  size_t call_len = strlen(call);
  size_t tlen = TARGET_DOMAIN + SERVICE_IDENT + call_len + 1;
  encode_header(t, MSG_TRIGGER_SERVICE3, (uint32_t)tlen);
  uint8_t *p = t + HEADER_SIZE;
  memset(p, 0, tlen);
  memcpy(p, target, strlen(target)); /* at most 63 bytes: checked by main */
  uint8_t rnd[8];
  if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (uint8_t)(getpid() >> (i % 4 * 8)); /* an id, not a secret */
  }
  for (size_t i = 0; i < sizeof rnd; i++) snprintf((char *)p + TARGET_DOMAIN + 2 * i, 3, "%02x", rnd[i]);
  p[TARGET_DOMAIN + 16] = 0;
  memcpy(p + TARGET_DOMAIN + SERVICE_IDENT, call, call_len);
  write_all(fd, buf, (size_t)(p + tlen - buf));
}

static void fail(const char *msg) {
  say(PROG ": %s\n", msg);
  exit(EXIT_QREXEC_PROBLEM);
}

/* Frames until isolad's decision; 1 connected, 0 refused. isolad's notices (an `ask`) go to stderr. */
static int await_decision(int fd, struct reader *r) {
  char err[256];
  int hello_seen = 0;
  for (;;) {
    enum rd res = read_frame(fd, r, PH_HANDSHAKE, err, sizeof err);
    if (res == RD_AGAIN) {
      struct pollfd pfd = {.fd = fd, .events = POLLIN};
      (void)poll(&pfd, 1, -1);
      continue;
    }
    if (res == RD_ERROR) fail(err);
    if (res == RD_EOF) fail("isolad closed the connection before deciding");
    if (!hello_seen) {
      struct hello h;
      if (r->type != MSG_HELLO) fail("isolad did not say hello");
      if (parse_hello(payload, r->len, &h, err, sizeof err) != 0) fail(err);
      hello_seen = 1;
      continue;
    }
    if (r->type == MSG_SERVICE_NOTICE && r->len <= MAX_NOTICE) {
      static char line[3 * MAX_NOTICE + 1];
      inert_line(payload, r->len, line);
      say(PROG ": %s\n", line);
      continue;
    }
    if (r->type == MSG_SERVICE_REFUSED) return 0;
    if (r->type == MSG_SERVICE_CONNECT) return 1;
    snprintf(err, sizeof err, "unexpected frame 0x%x", r->type);
    fail(err);
  }
}

/* ---- the data session ---- */

/* One output stream of the service: where it goes, its filter, and what is still to write there. */
struct output {
  int fd;
  int filtered;
  int dead; /* closed after the service's EOF, or its reader went away */
  int half_close; /* a socket that is also our input: its EOF is shutdown(SHUT_WR), not close */
  struct term_filter filter;
  uint8_t buf[MAX_PAYLOAD + 4];
  size_t off, len;
};

static struct output out_stdout, out_stderr;

/* Writes what it can now; 0 when all is written, 1 when the rest waits for POLLOUT. */
static int flush_output(struct output *o) {
  while (o->off < o->len) {
    ssize_t w = write(o->fd, o->buf + o->off, o->len - o->off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) return 1;
    if (w <= 0) {
      o->dead = 1; /* EPIPE and the like: the reader is gone, the call goes on */
      o->off = o->len = 0;
      return 0;
    }
    o->off += (size_t)w;
  }
  o->off = o->len = 0;
  return 0;
}

static void queue_output(struct output *o, const uint8_t *data, size_t n) {
  if (o->dead) return;
  if (o->filtered) o->len = filter_push(&o->filter, data, n, o->buf);
  else {
    memcpy(o->buf, data, n);
    o->len = n;
  }
  o->off = 0;
}

static void end_output(struct output *o, int close_fd) {
  if (o->dead) return;
  if (o->filtered) {
    uint8_t tail[4];
    size_t n = filter_end(&o->filter, tail);
    write_all(o->fd, tail, n);
  }
  if (close_fd) {
    if (o->half_close) shutdown(o->fd, SHUT_WR);
    else close(o->fd);
    o->dead = 1;
  }
}

static void drain_output(struct output *o) {
  if (o->dead || o->off >= o->len) return;
  write_all(o->fd, o->buf + o->off, o->len - o->off);
  o->off = o->len = 0;
}

/* The frame going to isolad: one STDIN frame at a time, so input never piles up in memory. */
static uint8_t sendbuf[HEADER_SIZE + MAX_PAYLOAD];
static size_t send_off, send_len;

/* Pumps in_fd into STDIN frames and STDOUT/STDERR frames into the outputs until the exit code.
 * Returns the service's exit code, or -1 (a line said why) when the stream broke first. */
static int run_session(int sock, struct reader *r, int in_fd) {
  char err[256];
  enum phase ph = PH_DATA;
  int in_open = 1, sock_writable = 1;
  for (;;) {
    struct output *pending = out_stdout.len > out_stdout.off ? &out_stdout : out_stderr.len > out_stderr.off ? &out_stderr : NULL;
    struct pollfd pfd[3];
    nfds_t n = 0;
    int i_sock = -1, i_in = -1, i_out = -1;
    short sock_events = (short)((pending ? 0 : POLLIN) | (send_len > send_off ? POLLOUT : 0));
    if (sock_events) {
      i_sock = (int)n;
      pfd[n++] = (struct pollfd){.fd = sock, .events = sock_events};
    }
    if (in_open && send_len == send_off) {
      i_in = (int)n;
      pfd[n++] = (struct pollfd){.fd = in_fd, .events = POLLIN};
    }
    if (pending) {
      i_out = (int)n;
      pfd[n++] = (struct pollfd){.fd = pending->fd, .events = POLLOUT};
    }
    if (poll(pfd, n, -1) < 0) {
      if (errno == EINTR) continue;
      fail(error_text(errno));
    }
    if (i_out >= 0 && pfd[i_out].revents) (void)flush_output(pending);
    if (i_sock >= 0 && (pfd[i_sock].revents & POLLOUT)) {
      while (send_off < send_len) {
        ssize_t w = send(sock, sendbuf + send_off, send_len - send_off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) break;
        if (w <= 0) {
          /* isolad stopped reading: our input is dropped, its output and exit code may still come */
          sock_writable = 0;
          in_open = 0;
          send_off = send_len = 0;
          break;
        }
        send_off += (size_t)w;
      }
      if (send_off == send_len) send_off = send_len = 0;
    }
    if (i_in >= 0 && pfd[i_in].revents) {
      ssize_t got = read(in_fd, sendbuf + HEADER_SIZE, MAX_PAYLOAD);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) in_open = 0; /* EOF, or an unreadable stdin (as Node: the same as EOF) */
      if (sock_writable) {
        encode_header(sendbuf, MSG_DATA_STDIN, got > 0 ? (uint32_t)got : 0);
        send_off = 0;
        send_len = HEADER_SIZE + (got > 0 ? (size_t)got : 0);
      }
    }
    if (i_sock < 0 || !(pfd[i_sock].revents & (POLLIN | POLLHUP | POLLERR)) || pending) continue;
    /* One frame per turn: its output is written (or waits) before the socket is read again. */
    enum rd res = read_frame(sock, r, ph, err, sizeof err);
    if (res == RD_AGAIN) continue;
    if (res == RD_EOF || res == RD_ERROR) {
      /* FramedSocket's reason: every broken frame is a "protocol error" there */
      if (err[0]) say(PROG ": data stream closed before the exit code (protocol error: %s)\n", err);
      else say(PROG ": data stream closed before the exit code\n");
      return -1;
    }
    if (r->type == MSG_DATA_STDOUT) {
      if (r->len == 0) {
        ph = PH_DATA_AFTER_STDOUT_EOF;
        end_output(&out_stdout, 1); /* the reader sees EOF now, as with Qubes' client */
      } else {
        queue_output(&out_stdout, payload, r->len);
        (void)flush_output(&out_stdout);
      }
    } else if (r->type == MSG_DATA_STDERR) {
      if (r->len > 0) {
        queue_output(&out_stderr, payload, r->len);
        (void)flush_output(&out_stderr);
      }
    } else {
      uint32_t code = get_u32(payload);
      if (code > 255) {
        say(PROG ": data stream closed before the exit code (protocol error: exit code %u is out of range 0..255)\n", code);
        return -1;
      }
      drain_output(&out_stdout);
      drain_output(&out_stderr);
      end_output(&out_stdout, 0);
      end_output(&out_stderr, 0);
      return (int)code;
    }
  }
}

/* ---- LOCAL_PROGRAM ---- */

struct local {
  pid_t pid;
  int to_child, from_child;
};

/* Qubes' LOCAL_PROGRAM: its stdin is the service's output, its stdout the service's input. */
static int spawn_local(char **argv, struct local *l) {
  int in[2], out[2], report[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0) return errno;
  pid_t pid = fork();
  if (pid < 0) return errno;
  if (pid == 0) {
    signal(SIGPIPE, SIG_DFL); /* ignored here, and an ignored signal stays so across exec */
    if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0) _exit(EXIT_QREXEC_PROBLEM);
    execvp(argv[0], argv);
    int e = errno;
    ssize_t w = write(report[1], &e, sizeof e);
    (void)w;
    _exit(EXIT_NOT_FOUND);
  }
  close(in[0]);
  close(out[1]);
  close(report[1]);
  int e = 0;
  ssize_t got;
  do got = read(report[0], &e, sizeof e);
  while (got < 0 && errno == EINTR);
  close(report[0]);
  if (got == (ssize_t)sizeof e) {
    (void)waitpid(pid, NULL, 0);
    close(in[1]);
    close(out[0]);
    return e;
  }
  /* Our own pipe ends: non-blocking, so a program that writes while we write to it cannot deadlock us. */
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  l->pid = pid;
  l->to_child = in[1];
  l->from_child = out[0];
  return 0;
}

static int wait_exit_code(pid_t pid) {
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return EXIT_QREXEC_PROBLEM;
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) & 0xff : EXIT_QREXEC_PROBLEM;
}

/* ---- the command line ---- */

static int use_stdin_socket;

static int set_filter_option(const char *a, int *fout, int *ferr) {
  /* Qubes' --use-stdin-socket: how a socket-activated forwarder (the updates proxy's) hands over its connection. */
  if (!strcmp(a, "--use-stdin-socket")) use_stdin_socket = 1;
  else if (!strcmp(a, "-t") || !strcmp(a, "--filter-escape-chars-stdout")) *fout = 1;
  else if (!strcmp(a, "-T") || !strcmp(a, "--filter-escape-chars-stderr")) *ferr = 1;
  else if (!strcmp(a, "--no-filter-escape-chars-stdout")) *fout = 0;
  else if (!strcmp(a, "--no-filter-escape-chars-stderr")) *ferr = 0;
  else if (a[0] == '-' && strlen(a) >= 3 && strspn(a + 1, "tT") == strlen(a + 1)) {
    for (const char *c = a + 1; *c; c++) *(*c == 't' ? fout : ferr) = 1; /* `-tT` as getopt reads it */
  } else return 0;
  return 1;
}

int main(int argc, char **argv) {
  int fout = -1, ferr = -1; /* -1: not given, the default depends on the terminal */
  int i = 1;
  /* Only before TARGET: after SERVICE, words belong to LOCAL_PROGRAM. */
  for (; i < argc && set_filter_option(argv[i], &fout, &ferr); i++) {}
  const char *target = i < argc ? argv[i] : NULL;
  const char *call = i + 1 < argc ? argv[i + 1] : NULL;
  char **local = i + 2 < argc ? argv + i + 2 : NULL;
  if (target && (!strcmp(target, "-h") || !strcmp(target, "--help"))) {
    write_all(1, USAGE, strlen(USAGE));
    write_all(1, HELP, strlen(HELP));
    return 0;
  }
  /* '' is Qubes' @default (qrexec-client-vm '' qubes.UpdatesProxy): only a missing TARGET is a usage error. */
  if (!target || !call || !*call || target[0] == '-') {
    write_all(2, USAGE, strlen(USAGE));
    return 2;
  }
  if (strlen(target) > 63 || strlen(call) > 255) {
    say(PROG ": target or service name too long\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN); /* a reader that goes away is an EPIPE to handle, not our death */
  const char *env = getenv("ISOLA_CLIENT_SOCKET");
  int sock = connect_isolad(env && *env ? env : DEFAULT_SOCKET);
  send_call(sock, target, call);
  fcntl(sock, F_SETFL, O_NONBLOCK);
  static struct reader r;
  if (!await_decision(sock, &r)) {
    say("Request refused\n");
    return EXIT_REFUSED;
  }
  /* Qubes' defaults: stderr filtered on a terminal; stdout too, unless a LOCAL_PROGRAM reads it. */
  out_stderr.fd = 2;
  out_stderr.filtered = ferr >= 0 ? ferr : isatty(2);
  if (!local) {
    out_stdout.fd = use_stdin_socket ? 0 : 1;
    out_stdout.half_close = use_stdin_socket;
    out_stdout.filtered = use_stdin_socket ? 0 : fout >= 0 ? fout : isatty(1);
    int code = run_session(sock, &r, 0);
    return code < 0 ? EXIT_QREXEC_PROBLEM : code;
  }
  struct local l = {.pid = -1, .to_child = -1, .from_child = -1};
  int e = spawn_local(local, &l);
  if (e) {
    close(sock);
    say(PROG ": cannot run %s: '%s': %s\n", local[0], local[0], error_text(e));
    return EXIT_NOT_FOUND;
  }
  out_stdout.fd = l.to_child;
  out_stdout.filtered = 0;
  int remote = run_session(sock, &r, l.from_child);
  close(sock);
  if (!out_stdout.dead) close(l.to_child);
  int local_code = wait_exit_code(l.pid);
  if (local_code != 0) return local_code;
  return remote < 0 ? EXIT_QREXEC_PROBLEM : remote;
}
