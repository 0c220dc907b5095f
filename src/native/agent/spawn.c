#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static rlim_t child_nofile_soft = 0;

void spawn_set_child_nofile(rlim_t soft) {
  child_nofile_soft = soft;
}

static void set_env(struct launch *l, size_t i, const char *key, const char *value) {
  snprintf(l->env_store[i], sizeof l->env_store[i], "%s=%s", key, value);
  l->envp[i] = l->env_store[i];
}

void prepare_launch(const struct spawn_paths *paths, const char *user_name, const char *command, struct launch *l) {
  struct service_request req;
  char force_user[64] = "";
  int is_service = strncmp(command, "QUBESRPC ", 9) == 0;
  l->kind = LAUNCH_PROGRAM;
  l->error[0] = '\0';
  if (is_service) {
    int bad = parse_service_request(command, strlen(command), &req);
    if (bad != 0) {
      l->kind = LAUNCH_ERROR;
      l->exit_code = EXIT_QREXEC_PROBLEM;
      snprintf(l->error, sizeof l->error, "%s", bad == SERVICE_INVALID ? "invalid service name, argument or source" : "malformed service request");
      return;
    }
    enum found_kind k = find_service(&paths->services, &req, l->path, sizeof l->path);
    if (k == FOUND_NONE) {
      l->kind = LAUNCH_ERROR;
      l->exit_code = EXIT_NOT_FOUND;
      snprintf(l->error, sizeof l->error, "service %s+%s does not exist in this qube", req.service, req.argument);
      return;
    }
    if (k == FOUND_TCP) {
      l->kind = LAUNCH_TCP; /* Qubes sends no descriptor to a TCP service: it gets the caller's bytes only */
      return;
    }
    if (k == FOUND_SOCKET) {
      l->kind = LAUNCH_SOCKET;
      int n = snprintf(l->descriptor, sizeof l->descriptor, "%s+%s %s", req.service, req.argument, req.source);
      l->descriptor_len = (size_t)n + 1; /* the NUL is part of Qubes' descriptor */
      return;
    }
    char why[MAX_PATH_LEN + 300];
    if (service_config(&paths->configs, &req, force_user, sizeof force_user, why, sizeof why) != 0) {
      l->kind = LAUNCH_ERROR;
      l->exit_code = EXIT_QREXEC_PROBLEM;
      snprintf(l->error, sizeof l->error, "service %s+%s: %s", req.service, req.argument, why);
      return;
    }
    /* The service's rpc-config decides over the caller (Qubes: qubes.VMRootShell is force-user=root). */
    if (force_user[0]) user_name = force_user;
  }
  if (lookup_user(paths->passwd, user_name, &l->user) != 0) {
    l->kind = LAUNCH_ERROR;
    l->exit_code = EXIT_NOT_FOUND;
    snprintf(l->error, sizeof l->error, "user %s does not exist in qube", user_name);
    return;
  }
  uid_t me = getuid();
  l->switch_user = l->user.uid != me;
  if (l->switch_user && me != 0) {
    l->kind = LAUNCH_ERROR;
    l->exit_code = EXIT_CANNOT_EXECUTE;
    snprintf(l->error, sizeof l->error, "cannot run as %s: isola-agent is not root", user_name);
    return;
  }
  l->ngroups = l->switch_user ? user_groups(paths->group, &l->user, l->groups, MAX_GROUPS) : 0;
  struct stat st;
  snprintf(l->cwd, sizeof l->cwd, "%s", stat(l->user.home, &st) == 0 && S_ISDIR(st.st_mode) ? l->user.home : "/");
  /* Only these: the agent's own environment (socket path, qube name) is no business of the command. */
  size_t e = 0;
  set_env(l, e++, "HOME", l->user.home);
  set_env(l, e++, "USER", l->user.name);
  set_env(l, e++, "LOGNAME", l->user.name);
  set_env(l, e++, "SHELL", l->user.shell);
  set_env(l, e++, "PATH", SAFE_PATH);
  if (is_service) {
    set_env(l, e++, "QREXEC_REMOTE_DOMAIN", req.source);
    set_env(l, e++, "QREXEC_SERVICE_ARGUMENT", req.argument);
    char full[520];
    snprintf(full, sizeof full, "%s+%s", req.service, req.argument);
    set_env(l, e++, "QREXEC_SERVICE_FULL_NAME", full);
    snprintf(l->argument, sizeof l->argument, "%s", req.argument);
    l->argv[0] = l->path;
    l->argv[1] = req.argument[0] ? l->argument : NULL;
    l->argv[2] = NULL;
  } else {
    snprintf(l->path, sizeof l->path, "/bin/sh");
    l->argv[0] = "sh";
    l->argv[1] = "-c";
    l->argv[2] = (char *)command;
    l->argv[3] = NULL;
  }
  l->envp[e] = NULL;
}

struct report {
  int stage; /* 1: becoming the user, 2: exec */
  int err;
};

static void report_and_exit(int fd, int stage) {
  struct report r = {stage, errno};
  ssize_t w = write(fd, &r, sizeof r);
  (void)w;
  _exit(EXIT_QREXEC_PROBLEM);
}

static void child(struct launch *l, int with_stdio, const int *in, const int *out, const int *err, int report_fd) {
  /* Dispositions the agent set must not reach the command: ignored signals stay ignored across exec. */
  static const int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGPIPE};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  /* Own session and process group: shutdown and a lost data connection signal the command and
   * everything it started. */
  setsid();
  if (with_stdio == 2) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(in[0], 0) < 0 || dup2(in[0], 1) < 0 || dup2(null, 2) < 0) report_and_exit(report_fd, 2);
  } else if (with_stdio) {
    if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) report_and_exit(report_fd, 2);
  } else {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) report_and_exit(report_fd, 2);
  }
  if (child_nofile_soft) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
      rl.rlim_cur = child_nofile_soft;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  /* As root, before the switch: a home the user cannot enter still is where they start (as before). */
  if (chdir(l->cwd) != 0 && chdir("/") != 0) report_and_exit(report_fd, 2);
  if (l->switch_user) {
    if (setgroups(l->ngroups, l->groups) != 0 || setresgid(l->user.gid, l->user.gid, l->user.gid) != 0 ||
        setresuid(l->user.uid, l->user.uid, l->user.uid) != 0) {
      report_and_exit(report_fd, 1);
    }
  }
  execve(l->path, l->argv, l->envp);
  report_and_exit(report_fd, 2);
}

static void close_pair(int *p) {
  if (p[0] >= 0) close(p[0]);
  if (p[1] >= 0) close(p[1]);
  p[0] = p[1] = -1;
}

/* with_stdio: 0 /dev/null, 1 pipes (ours in io), 2 `sock` as stdin and stdout. */
static pid_t launch(struct launch *l, int with_stdio, int sock, struct child_stdio *io, char *err, size_t errlen) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1}, rep[2] = {-1, -1};
  io->in = io->out = io->err = -1;
  if (pipe2(rep, O_CLOEXEC) != 0 ||
      (with_stdio == 1 && (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0))) {
    snprintf(err, errlen, "cannot start command: pipe: %s", strerror(errno));
    close_pair(in), close_pair(out), close_pair(errp), close_pair(rep);
    return -1;
  }
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  pid_t pid = fork();
  if (pid == 0) {
    close(rep[0]);
    if (with_stdio == 2) in[0] = sock;
    child(l, with_stdio, in, out, errp, rep[1]);
  }
  int fork_errno = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  close(rep[1]);
  if (pid < 0) {
    snprintf(err, errlen, "cannot start command: fork: %s", strerror(fork_errno));
    close(rep[0]);
    close_pair(in), close_pair(out), close_pair(errp);
    return -1;
  }
  if (with_stdio == 1) {
    close(in[0]), close(out[1]), close(errp[1]);
    io->in = in[1];
    io->out = out[0];
    io->err = errp[0];
    fcntl(io->in, F_SETFL, O_NONBLOCK);
    fcntl(io->out, F_SETFL, O_NONBLOCK);
    fcntl(io->err, F_SETFL, O_NONBLOCK);
  }
  /* Closed by the exec (nothing to read) or carrying why the child could not get there. */
  struct report r;
  ssize_t n;
  do n = read(rep[0], &r, sizeof r);
  while (n < 0 && errno == EINTR);
  close(rep[0]);
  err[0] = '\0';
  if (n == (ssize_t)sizeof r) {
    if (r.stage == 1) snprintf(err, errlen, "cannot start command: cannot become %u:%u: %s", (unsigned)l->user.uid, (unsigned)l->user.gid, strerror(r.err));
    else snprintf(err, errlen, "cannot start command: %s: %s", l->path, strerror(r.err));
  }
  return pid;
}

pid_t start_launch(struct launch *l, int with_stdio, struct child_stdio *io, char *err, size_t errlen) {
  return launch(l, with_stdio ? 1 : 0, -1, io, err, errlen);
}

pid_t start_launch_on_socket(struct launch *l, int sock, char *err, size_t errlen) {
  struct child_stdio io;
  return launch(l, 2, sock, &io, err, errlen);
}
