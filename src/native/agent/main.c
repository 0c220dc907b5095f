/* isola-agent: the process isolad talks to inside every qube, and the qube's init (PID 1). Keeps one
 * control connection to isolad, runs the commands it is sent, reaps every orphan, and stops the qube
 * on MSG_SHUTDOWN or SIGTERM. Protocol: docs/agent-protocol.md. */
#define _GNU_SOURCE
#include "agent.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct agent_config cfg;
static int sig_pipe[2];

static const char *const SERVICE_PATH[] = {"/run/qubes-rpc", "/usr/local/etc/qubes-rpc", "/etc/qubes-rpc", "/usr/lib/isola/qubes-rpc", NULL};
static const char *const RPC_CONFIG_PATH[] = {"/usr/local/etc/qubes/rpc-config", "/etc/qubes/rpc-config", "/usr/lib/isola/rpc-config", NULL};

static void on_signal(int sig) {
  int saved = errno;
  char b = (char)sig;
  ssize_t w = write(sig_pipe[1], &b, 1);
  (void)w; /* full pipe: a wakeup is already pending */
  errno = saved;
}

static void install_signals(void) {
  if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
    agent_log("cannot create the signal pipe: %s", strerror(errno));
    exit(1);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&sa.sa_mask);
  /* As PID 1 a signal without a handler is dropped by the kernel: each one we mean is handled. */
  sigaction(SIGCHLD, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
}

/* Pipes and sockets must never land on 0-2, where a child's dup2 would mix them up. */
static void ensure_std_fds(void) {
  for (int fd = 0; fd < 3; fd++) {
    if (fcntl(fd, F_GETFD) >= 0) continue;
    int n = open("/dev/null", O_RDWR);
    if (n >= 0 && n != fd) {
      dup2(n, fd);
      close(n);
    }
  }
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t old = rl.rlim_cur, want = 4 * MAX_CONNS + 64;
  if (old >= want) return;
  rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
  if (setrlimit(RLIMIT_NOFILE, &rl) == 0) spawn_set_child_nofile(old);
}

static void load_config(void) {
  const char *v;
  cfg.socket_path = (v = getenv("ISOLA_AGENT_SOCKET")) && *v ? v : "/run/isola/agent.sock";
  cfg.default_user = (v = getenv("ISOLA_DEFAULT_USER")) && *v ? v : "user";
  cfg.shutdown_timeout = 10;
  if ((v = getenv("ISOLA_SHUTDOWN_TIMEOUT")) && *v) {
    char *end;
    unsigned long t = strtoul(v, &end, 10);
    if (!*end && t > 0 && t < 86400) cfg.shutdown_timeout = (unsigned)t;
  }
  /* kill(-1) reaches every process we may signal: only right when this pid namespace is the qube's own. */
  cfg.poweroff = (v = getenv("ISOLA_AGENT_POWEROFF")) && strcmp(v, "1") == 0;
  cfg.kill_all = getpid() == 1 || ((v = getenv("ISOLA_SHUTDOWN_KILL_ALL")) && strcmp(v, "1") == 0);
  search_path_init(&cfg.paths.services, getenv("ISOLA_SERVICE_PATH"), SERVICE_PATH);
  search_path_init(&cfg.paths.configs, getenv("ISOLA_RPC_CONFIG_PATH"), RPC_CONFIG_PATH);
  /* The overrides are for tests on a host, like the two search paths above. */
  cfg.paths.passwd = (v = getenv("ISOLA_PASSWD_PATH")) && *v ? v : "/etc/passwd";
  cfg.paths.group = (v = getenv("ISOLA_GROUP_PATH")) && *v ? v : "/etc/group";
}

static int valid_qube_name(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > 31 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z'))) return 0;
  for (size_t i = 1; i < n; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) return 0;
  }
  return 1;
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (!updates_child_exited(pid, status)) data_child_exited(pid, status);
  }
}

static void on_signals(void) {
  char buf[64];
  ssize_t n;
  int chld = 0;
  while ((n = read(sig_pipe[0], buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] == SIGCHLD) chld = 1;
      else if (buf[i] == SIGTERM) start_shutdown(cfg.shutdown_timeout, "SIGTERM");
      else if (buf[i] == SIGINT) start_shutdown(cfg.shutdown_timeout, "SIGINT");
    }
  }
  if (chld) reap();
}

enum { W_SOCKET, W_STDIN, W_STDOUT, W_STDERR, W_UPDATES };
static struct pollfd pfds[2 + 4 * MAX_CONNS];
static struct { struct conn *c; int what; } slots[2 + 4 * MAX_CONNS];

static size_t add(size_t n, int fd, short events, struct conn *c, int what) {
  pfds[n].fd = fd;
  pfds[n].events = events;
  pfds[n].revents = 0;
  slots[n].c = c;
  slots[n].what = what;
  return n + 1;
}

static size_t build_poll_set(void) {
  size_t n = add(0, sig_pipe[0], POLLIN, NULL, 0);
  if (updates_listen_fd() >= 0) n = add(n, updates_listen_fd(), POLLIN, NULL, W_UPDATES);
  for (size_t i = 0; i < nconns; i++) {
    struct conn *c = conns[i];
    if (c->dead) continue;
    short ev = c->connecting ? POLLOUT : (short)((conn_wants_read(c) ? POLLIN : 0) | (c->out_len > c->out_off ? POLLOUT : 0));
    n = add(n, c->fd, ev, c, W_SOCKET);
    if (c->kind != CONN_DATA || !c->started || c->exit_sent) continue;
    if ((c->stdin_pending || c->shut_wr_pending) && c->in_fd >= 0) n = add(n, c->in_fd, POLLOUT, c, W_STDIN);
    if (c->out_len == c->out_off) {
      if (c->out_fd >= 0) n = add(n, c->out_fd, POLLIN, c, W_STDOUT);
      if (c->err_fd >= 0) n = add(n, c->err_fd, POLLIN, c, W_STDERR);
    }
  }
  return n;
}

static void on_socket_event(struct conn *c, short re) {
  if (c->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err) {
      conn_drop(c, errno_name(err));
      return;
    }
    c->connecting = 0;
    conn_flush(c);
    if (!c->dead && c->kind == CONN_DATA && !c->started) data_start(c);
    return;
  }
  if (re & POLLOUT) conn_flush(c);
  if (c->dead) return;
  if (re & POLLIN) conn_on_readable(c);
  else if (re & (POLLHUP | POLLERR)) {
    /* The peer is gone while we hold its input back: nothing we send can arrive any more. */
    if (conn_wants_read(c)) conn_on_readable(c);
    else conn_drop(c, re & POLLERR ? "connection error" : NULL);
  }
}

static int64_t next_timeout(int64_t now) {
  int64_t t = -1;
  int64_t cand[3] = {control_next_timer(), shutdown_next_timer(), updates_next_timer()};
  for (int i = 0; i < 3; i++) {
    if (cand[i] >= 0 && (t < 0 || cand[i] < t)) t = cand[i];
  }
  for (size_t i = 0; i < nconns; i++) {
    int64_t d = conns[i]->deadline;
    if (d && !conns[i]->dead && (t < 0 || d < t)) t = d;
  }
  if (t < 0) return -1;
  return t <= now ? 0 : t - now;
}

static void run(void) {
  for (;;) {
    int64_t now = now_ms();
    control_tick(now);
    shutdown_tick(now);
    updates_tick(now);
    for (size_t i = 0; i < nconns; i++) {
      struct conn *c = conns[i];
      if (!c->dead && c->deadline && now >= c->deadline && (c->lingering || !c->hello_seen)) conn_timeout(c);
      else if (!c->dead && c->deadline && now >= c->deadline) c->deadline = 0;
    }
    conn_free_dead();
    size_t n = build_poll_set();
    int64_t timeout = next_timeout(now_ms());
    int r = poll(pfds, n, timeout > 60000 ? 60000 : (int)timeout);
    if (r < 0 && errno != EINTR) {
      agent_log("poll: %s", strerror(errno));
      sleep(1);
      continue;
    }
    if (pfds[0].revents) on_signals();
    for (size_t i = 1; i < n && r > 0; i++) {
      short re = pfds[i].revents;
      struct conn *c = slots[i].c;
      if (re && slots[i].what == W_UPDATES) {
        updates_on_accept();
        continue;
      }
      if (!re || c->dead) continue;
      switch (slots[i].what) {
        case W_SOCKET: on_socket_event(c, re); break;
        case W_STDIN: data_on_stdin_writable(c); break;
        case W_STDOUT: data_on_output(c, 0); break;
        case W_STDERR: data_on_output(c, 1); break;
      }
    }
    conn_free_dead();
  }
}

int main(int argc, char **argv) {
  ensure_std_fds();
  /* Entry points for tests of what a qube's start writes, on files the test chooses. */
  if (argc == 4 && strcmp(argv[1], "--hosts-entry") == 0) {
    ensure_hosts_entry(argv[2], argv[3]);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "--resolv-conf") == 0) {
    ensure_resolv_conf(argv[2], argv[3]);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "--apt-proxy-conf") == 0) {
    ensure_apt_proxy_conf(strcmp(argv[2], "on") == 0, argv[3]);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "--install-tools") == 0) {
    install_tool_wrappers(argv[2], argv[3]);
    return 0;
  }
  log_init();
  load_config();
  install_signals();
  raise_nofile();
  srandom((unsigned)(now_ms() ^ (getpid() << 16)));
  /* Only in a real qube (as root): tests run the agent on a host as a plain process. */
  const char *qube = getenv("ISOLA_QUBE_NAME");
  if (getuid() == 0 && qube && valid_qube_name(qube)) {
    install_tool_wrappers("/usr/lib/isola", "/usr/local/bin");
    ensure_hosts_entry(qube, "/etc/hosts");
    const char *dns = getenv("ISOLA_DNS");
    if (dns && *dns) ensure_resolv_conf(dns, "/etc/resolv.conf");
    ensure_apt_proxy_conf(service_enabled(getenv("ISOLA_SERVICES"), "updates-proxy-setup"), "/etc/apt/apt.conf.d/01qubes-proxy");
  }
  updates_init(getenv("ISOLA_SERVICES"));
  run();
  return 0;
}
