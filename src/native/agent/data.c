/* A command's data connection: HELLO{DATA} + DATA_CONNECT, then the process is started and its stdin,
 * stdout and stderr relayed with flow control both ways (one frame in flight per direction), the exit
 * code sent once it exited and both pipes are drained; a lost connection hangs up on its process group. */
#define _GNU_SOURCE
#include "agent.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct launch launch; /* large; used by one request at a time */

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void finish(struct conn *c, int code) {
  uint8_t b[4];
  put_u32(b, (uint32_t)code);
  if (conn_queue(c, MSG_DATA_EXIT_CODE, b, 4) != 0) {
    conn_drop(c, "internal error: no room for the exit code");
    return;
  }
  c->exit_sent = 1;
  close_fd(&c->in_fd);
  close_fd(&c->out_fd);
  close_fd(&c->err_fd);
  c->stdin_pending = 0;
  c->shut_after_flush = 1;
  conn_flush(c);
}

static void fail(struct conn *c, const char *message, int code) {
  char line[MAX_PATH_LEN + 1200];
  int n = snprintf(line, sizeof line, "%s\n", message);
  size_t len = n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  conn_queue(c, MSG_DATA_STDERR, line, len);
  conn_queue(c, MSG_DATA_STDOUT, NULL, 0);
  finish(c, code);
}

void data_request(uint32_t request_id, const char *user, const char *command, size_t command_len) {
  char why[64];
  struct conn *c = conn_open(CONN_DATA, why, sizeof why);
  if (!c) {
    agent_log("request %u: cannot connect to isolad (%s)", request_id, why);
    return;
  }
  c->request_id = request_id;
  snprintf(c->user, sizeof c->user, "%s", user);
  c->command = malloc(command_len + 1);
  if (!c->command) {
    conn_drop(c, "ENOMEM");
    return;
  }
  memcpy(c->command, command, command_len);
  c->command[command_len] = '\0';
  uint8_t id[4];
  put_u32(id, request_id);
  conn_queue(c, MSG_DATA_CONNECT, id, 4);
  /* Spawn only once connected: a command whose output has nowhere to go must not run at all. */
  if (!c->connecting) data_start(c);
}

static void start_socket_service(struct conn *c, struct launch *l) {
  int in_progress;
  int fd = unix_connect(l->path, &in_progress);
  ssize_t w = -1;
  if (fd >= 0 && !in_progress) {
    do w = send(fd, l->descriptor, l->descriptor_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w < 0 && errno == EINTR);
  }
  if (w != (ssize_t)l->descriptor_len) {
    int e = fd < 0 ? errno : in_progress ? EAGAIN : w < 0 ? errno : EAGAIN;
    if (fd >= 0) close(fd);
    agent_log("socket service %s: %s", l->path, strerror(e));
    char msg[MAX_PATH_LEN + 100];
    snprintf(msg, sizeof msg, "cannot connect to service socket: %s", strerror(e));
    fail(c, msg, EXIT_QREXEC_PROBLEM);
    return;
  }
  c->socket_service = 1;
  c->in_fd = fd;
  c->out_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (c->out_fd < 0) {
    close_fd(&c->in_fd);
    fail(c, "cannot connect to service socket: out of descriptors", EXIT_QREXEC_PROBLEM);
  }
}

/* Qubes' /dev/tcp service: a non-blocking connect, relayed like a socket service once it completes
 * (writes wait for POLLOUT, a refused connect is the first read's error, reported as below). */
static void start_tcp_service(struct conn *c, struct launch *l) {
  struct sockaddr_in sa;
  int fd = -1, e = 0;
  if (parse_dev_tcp(l->path, &sa) != 0) e = EINVAL;
  else if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) e = errno;
  else if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) e = errno;
  if (e) {
    if (fd >= 0) close(fd);
    agent_log("tcp service %s: %s", l->path, strerror(e));
    char msg[MAX_PATH_LEN + 100];
    snprintf(msg, sizeof msg, "cannot connect to service socket: %s", strerror(e));
    fail(c, msg, EXIT_QREXEC_PROBLEM);
    return;
  }
  c->socket_service = 1;
  c->in_fd = fd;
  c->out_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (c->out_fd < 0) {
    close_fd(&c->in_fd);
    fail(c, "cannot connect to service socket: out of descriptors", EXIT_QREXEC_PROBLEM);
  }
}

void data_start(struct conn *c) {
  c->started = 1;
  struct launch *l = &launch;
  prepare_launch(&cfg.paths, c->user, c->command, l);
  if (l->kind == LAUNCH_ERROR) {
    fail(c, l->error, l->exit_code);
    return;
  }
  if (l->kind == LAUNCH_SOCKET || l->kind == LAUNCH_TCP) {
    if (l->kind == LAUNCH_SOCKET) start_socket_service(c, l);
    else start_tcp_service(c, l);
    conn_flush(c);
    return;
  }
  struct child_stdio io;
  char err[MAX_PATH_LEN + 200];
  pid_t pid = start_launch(l, 1, &io, err, sizeof err);
  free(c->command); /* argv[2] of `sh -c` until here */
  c->command = NULL;
  if (pid < 0) {
    fail(c, err, EXIT_QREXEC_PROBLEM);
    return;
  }
  c->pid = pid;
  c->in_fd = io.in;
  c->out_fd = io.out;
  c->err_fd = io.err;
  track_group(pid);
  if (err[0]) {
    char line[sizeof err + 2];
    int n = snprintf(line, sizeof line, "%s\n", err);
    conn_queue(c, MSG_DATA_STDERR, line, n < 0 ? 0 : (size_t)n);
    c->forced_code = EXIT_QREXEC_PROBLEM;
  }
  conn_flush(c);
}

/* The caller's EOF to a socket service: a half-close, or, while a TCP connect is in progress (ENOTCONN), once
 * the socket is writable (the connect finished; a failed one leaves its error for the output side to report). */
static void shut_service_input(struct conn *c) {
  if (shutdown(c->in_fd, SHUT_WR) != 0 && errno == ENOTCONN && !c->shut_wr_pending) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->in_fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
      c->shut_wr_pending = 1; /* still connecting: poll for POLLOUT */
      return;
    }
    if (err) c->service_errno = err;
  }
  c->shut_wr_pending = 0;
  close_fd(&c->in_fd);
}

void data_on_stdin_writable(struct conn *c) {
  if (c->shut_wr_pending) {
    c->shut_wr_pending = 0;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->in_fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) c->service_errno = err;
    else shutdown(c->in_fd, SHUT_WR);
    close_fd(&c->in_fd);
    return;
  }
  while (c->stdin_pending && c->in_fd >= 0) {
    ssize_t w = write(c->in_fd, c->dec.payload + c->stdin_off, c->dec.len - c->stdin_off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) return;
    if (w < 0) {
      /* The command closed its stdin (or died): later input has nowhere to go, but keep reading. */
      if (c->socket_service && errno != EPIPE) c->service_errno = errno; /* e.g. a refused connect */
      close_fd(&c->in_fd);
      break;
    }
    c->stdin_off += (size_t)w;
    if (c->stdin_off == c->dec.len) break;
  }
  c->stdin_pending = 0;
}

void data_on_frame(struct conn *c) {
  if (c->exit_sent) return;
  if (c->dec.len == 0) {
    c->dec.accept = ACCEPT_NOTHING;
    if (c->in_fd >= 0 && c->socket_service) shut_service_input(c);
    else close_fd(&c->in_fd);
    return;
  }
  if (c->in_fd < 0) return;
  c->stdin_pending = 1;
  c->stdin_off = 0;
  data_on_stdin_writable(c);
}

void data_on_output(struct conn *c, int is_stderr) {
  int *fd = is_stderr ? &c->err_fd : &c->out_fd;
  if (*fd < 0 || c->out_len != c->out_off || c->dead || c->exit_sent) return; /* one frame in flight */
  ssize_t r;
  do r = read(*fd, c->out + HEADER_SIZE, MAX_PAYLOAD);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno == EAGAIN) return;
  if (r > 0) {
    c->out_off = 0;
    c->out_len = HEADER_SIZE + (size_t)r;
    encode_header(c->out, is_stderr ? MSG_DATA_STDERR : MSG_DATA_STDOUT, (uint32_t)r);
    conn_flush(c);
    return;
  }
  int e = r < 0 ? errno : c->socket_service ? c->service_errno : 0;
  close_fd(fd);
  if (is_stderr) {
    data_progress(c);
    return;
  }
  if (c->socket_service) {
    if (e) {
      agent_log("socket service of request %u: %s", c->request_id, strerror(e));
      char msg[200];
      snprintf(msg, sizeof msg, "cannot connect to service socket: %s", strerror(e));
      fail(c, msg, EXIT_QREXEC_PROBLEM);
      return;
    }
    conn_queue(c, MSG_DATA_STDOUT, NULL, 0);
    finish(c, 0);
    return;
  }
  conn_queue(c, MSG_DATA_STDOUT, NULL, 0);
  conn_flush(c);
  data_progress(c);
}

void data_progress(struct conn *c) {
  if (c->dead || c->exit_sent || c->socket_service || !c->started || !c->exited) return;
  if (c->out_fd >= 0 || c->err_fd >= 0) return;
  finish(c, c->forced_code >= 0 ? c->forced_code : c->exit_code);
}

void data_on_close(struct conn *c, const char *reason) {
  if (c->started && !c->exit_sent) {
    /* isolad or its client went away: hang up on the command as a terminal would. */
    if (reason) agent_log("request %u: data connection lost (%s); sending SIGHUP", c->request_id, reason);
    if (c->pid > 0) kill(-c->pid, SIGHUP);
  }
  close_fd(&c->in_fd);
  close_fd(&c->out_fd);
  close_fd(&c->err_fd);
  c->pid = 0;
}

void data_child_exited(pid_t pid, int status) {
  for (size_t i = 0; i < nconns; i++) {
    struct conn *c = conns[i];
    if (c->kind != CONN_DATA || c->dead || c->pid != pid || c->exited) continue;
    c->exited = 1;
    c->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : EXIT_QREXEC_PROBLEM;
    data_progress(c);
    return;
  }
}

void just_exec(const char *user, const char *command) {
  struct launch *l = &launch;
  prepare_launch(&cfg.paths, user, command, l);
  if (l->kind != LAUNCH_PROGRAM) {
    agent_log("JUST_EXEC as %s failed: %s", user, l->kind == LAUNCH_ERROR ? l->error : "a socket service cannot be run without data");
    return;
  }
  struct child_stdio io;
  char err[MAX_PATH_LEN + 200];
  pid_t pid = start_launch(l, 0, &io, err, sizeof err);
  if (pid > 0) track_group(pid);
  if (err[0]) agent_log("JUST_EXEC as %s failed: %s", user, err);
}
