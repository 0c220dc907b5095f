/* Qubes' updates proxy, both ends, as the agent runs them (a qube has no systemd):
 *  - service updates-proxy-setup (a template): a listener on 127.0.0.1:8082, bound to lo, whose every
 *    connection becomes `qrexec-client-vm --use-stdin-socket '' qubes.UpdatesProxy` (Qubes' socket-
 *    activated forwarder), and apt's 01qubes-proxy pointing there;
 *  - service qubes-updates-proxy (a netvm): tinyproxy with Qubes' config, restarted when it dies.
 * The agent never reads a byte of the proxied traffic: each connection belongs to a child, at most
 * MAX_FORWARDS at once (further ones wait in the listen backlog), so hostile bytes cannot reach it. */
#define _GNU_SOURCE
#include "agent.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FORWARDS 32
#define CLIENT_PROGRAM "/usr/lib/isola/isola-qrexec-client-vm"
#define TINYPROXY "/usr/bin/tinyproxy"
#define TINYPROXY_CONF "/etc/tinyproxy/tinyproxy-updates.conf"
#define APT_PROXY_LINE "Acquire::http::Proxy \"http://127.0.0.1:8082/\";\n"

static int listen_fd = -1;
static pid_t forwards[MAX_FORWARDS];
static size_t nforwards;
static char forward_command[MAX_PATH_LEN + 100];
static struct launch forward_launch;

static int proxy_wanted;
static pid_t proxy_pid;
static int64_t proxy_started_at, proxy_restart_at = -1, proxy_backoff_ms = 1000;
static const char *proxy_program, *proxy_conf;

int service_enabled(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; p && *p;) {
    const char *sp = strchr(p, ' ');
    size_t len = sp ? (size_t)(sp - p) : strlen(p);
    if (len == n && memcmp(p, name, n) == 0) return 1;
    if (!sp) break;
    p = sp + 1;
  }
  return 0;
}

static const char *env_or(const char *key, const char *fallback) {
  const char *v = getenv(key); /* overrides for tests on a host, as ISOLA_SERVICE_PATH */
  return v && *v ? v : fallback;
}

static void open_listener(void) {
  unsigned long port = strtoul(env_or("ISOLA_UPDATES_FORWARD_PORT", "8082"), NULL, 10);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || port < 1 || port > 65535) {
    agent_log("updates proxy forwarder: socket: %s", strerror(errno));
    if (fd >= 0) close(fd);
    return;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  /* Qubes' BindToDevice=lo, where the qube may (CAP_NET_RAW: an offline sandbox template has it not). Without
   * it 127.0.0.1 still takes loopback traffic only: the kernel drops 127/8 arriving on any other interface. */
  if (getuid() == 0 && setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) != 0 && errno != EPERM)
    agent_log("updates proxy forwarder: SO_BINDTODEVICE lo: %s", strerror(errno));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0) {
    agent_log("updates proxy forwarder: 127.0.0.1:%lu: %s", port, strerror(errno));
    close(fd);
    return;
  }
  listen_fd = fd;
  snprintf(forward_command, sizeof forward_command, "exec %s --use-stdin-socket '' qubes.UpdatesProxy", env_or("ISOLA_UPDATES_CLIENT", CLIENT_PROGRAM));
}

int updates_listen_fd(void) {
  return nforwards < MAX_FORWARDS && !shutting_down ? listen_fd : -1;
}

void updates_on_accept(void) {
  while (nforwards < MAX_FORWARDS) {
    int s = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (s < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) agent_log("updates proxy forwarder: accept: %s", strerror(errno));
      return;
    }
    /* The qube's default user, not root: the forwarder needs nothing but the qrexec client socket. */
    prepare_launch(&cfg.paths, cfg.default_user, forward_command, &forward_launch);
    char err[MAX_PATH_LEN + 200] = "";
    pid_t pid = forward_launch.kind == LAUNCH_PROGRAM ? start_launch_on_socket(&forward_launch, s, err, sizeof err) : -1;
    close(s);
    if (pid < 0 || err[0]) agent_log("updates proxy forwarder: %s", forward_launch.kind == LAUNCH_ERROR ? forward_launch.error : err);
    if (pid > 0) {
      forwards[nforwards++] = pid;
      track_group(pid);
    }
  }
}

static void start_proxy(void) {
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t pid = fork();
  if (pid == 0) {
    static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) dup2(null, 0);
    /* stdout and stderr stay the agent's: tinyproxy's log lines land in the qube's console log. tinyproxy
     * binds as root, then becomes the config's User (tinyproxy). */
    execl(proxy_program, "tinyproxy", "-d", "-c", proxy_conf, (char *)NULL);
    _exit(127);
  }
  int e = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (pid < 0) {
    agent_log("qubes-updates-proxy: fork: %s", strerror(e));
    proxy_restart_at = now_ms() + proxy_backoff_ms;
    return;
  }
  proxy_pid = pid;
  proxy_started_at = now_ms();
  track_group(pid);
}

void updates_init(const char *services) {
  if (service_enabled(services, "updates-proxy-setup")) open_listener();
  if (!service_enabled(services, "qubes-updates-proxy")) return;
  proxy_program = env_or("ISOLA_TINYPROXY", TINYPROXY);
  proxy_conf = env_or("ISOLA_TINYPROXY_CONF", TINYPROXY_CONF);
  if (access(proxy_program, X_OK) != 0 || access(proxy_conf, R_OK) != 0) {
    agent_log("qubes-updates-proxy: %s or %s is missing (install tinyproxy in the template): not started", proxy_program, proxy_conf);
    return;
  }
  proxy_wanted = 1;
  start_proxy();
}

int updates_child_exited(pid_t pid, int status) {
  for (size_t i = 0; i < nforwards; i++) {
    if (forwards[i] != pid) continue;
    forwards[i] = forwards[--nforwards];
    return 1;
  }
  if (!proxy_pid || pid != proxy_pid) return 0;
  proxy_pid = 0;
  if (shutting_down) return 1; /* stopped by the qube's shutdown: not restarted */
  int64_t now = now_ms();
  if (now - proxy_started_at > 60000) proxy_backoff_ms = 1000; /* it ran a while: not a crash loop */
  agent_log("qubes-updates-proxy: tinyproxy exited (%s %d); restarting in %lld ms", WIFSIGNALED(status) ? "signal" : "status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), (long long)proxy_backoff_ms);
  proxy_restart_at = now + proxy_backoff_ms;
  if (proxy_backoff_ms < 60000) proxy_backoff_ms *= 2;
  return 1;
}

void updates_tick(int64_t now) {
  if (!proxy_wanted || proxy_pid || proxy_restart_at < 0 || now < proxy_restart_at) return;
  proxy_restart_at = -1;
  if (!shutting_down) start_proxy();
}

int64_t updates_next_timer(void) {
  return proxy_wanted && !proxy_pid && !shutting_down ? proxy_restart_at : -1;
}

/* Qubes' update-proxy-configs: the file exists exactly where the forwarder runs (a template), so an
 * AppVM, whose root is the template's, does not send its apt to a port nobody listens on. */
void ensure_apt_proxy_conf(int enabled, const char *file) {
  struct stat st;
  int exists = lstat(file, &st) == 0;
  if (!enabled) {
    if (exists && unlink(file) != 0) agent_log("%s: %s", file, strerror(errno));
    return;
  }
  char have[sizeof APT_PROXY_LINE + 1];
  if (exists && S_ISREG(st.st_mode) && st.st_size == (off_t)strlen(APT_PROXY_LINE)) {
    int fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, have, sizeof have) : -1;
    if (fd >= 0) close(fd);
    if (n == (ssize_t)strlen(APT_PROXY_LINE) && memcmp(have, APT_PROXY_LINE, (size_t)n) == 0) return;
  }
  char tmp[MAX_PATH_LEN];
  if (snprintf(tmp, sizeof tmp, "%s.isola-new", file) >= (int)sizeof tmp) return;
  unlink(tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return; /* no /etc/apt/apt.conf.d: not an apt system */
  ssize_t w = write(fd, APT_PROXY_LINE, strlen(APT_PROXY_LINE));
  fchmod(fd, 0644);
  close(fd);
  if (w != (ssize_t)strlen(APT_PROXY_LINE) || rename(tmp, file) != 0) unlink(tmp);
}
