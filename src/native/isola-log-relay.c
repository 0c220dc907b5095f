/* isola-log-relay: how a sandboxed qube's console reaches its host log without the qube ever holding
 * a host file descriptor.
 * Usage: isola-log-relay LOGFILE MAXBYTES KEEP -- RUNTIME [ARG...]
 * Opens LOGFILE, makes a pipe and forks. The child becomes the relay: a new session, away from isolad
 * (qubes outlive isolad, and so must the reader of their console, or the qube's writes would fail
 * with EPIPE), reading the pipe until every writer (the qube's processes) is gone, so it dies with the
 * qube. It escapes every byte that is not printable ASCII (the log is inert on a terminal, and a qube
 * cannot forge lines in another format) and keeps LOGFILE under MAXBYTES, rotating to LOGFILE.1 ..
 * LOGFILE.KEEP. The parent execs RUNTIME with stdout/stderr on the pipe's write end and stdin on an
 * empty pipe, so isolad gets the runtime's exit status as before. Exit 125: bad usage or log. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK 65536
#define MAX_KEEP 9

static const char *log_path;
static unsigned long max_bytes, keep;
static int log_fd = -1;
static unsigned long log_size;

static int parse_num(const char *s, unsigned long lo, unsigned long hi, unsigned long *out) {
  char *end;
  if (*s < '0' || *s > '9') return -1;
  errno = 0;
  *out = strtoul(s, &end, 10);
  return errno || *end || *out < lo || *out > hi ? -1 : 0;
}

static int open_log(int flags) {
  int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC | flags, 0600);
  struct stat st;
  if (fd < 0) return -1;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
    close(fd);
    errno = EINVAL;
    return -1;
  }
  log_fd = fd;
  log_size = (unsigned long)st.st_size;
  return 0;
}

/* LOGFILE.KEEP is dropped, each older file moves up one, LOGFILE starts empty. */
static void rotate(void) {
  char from[PATH_MAX], to[PATH_MAX];
  close(log_fd);
  log_fd = -1;
  for (unsigned long i = keep; i > 0; i--) {
    if (i == 1) snprintf(from, sizeof from, "%s", log_path);
    else snprintf(from, sizeof from, "%s.%lu", log_path, i - 1);
    snprintf(to, sizeof to, "%s.%lu", log_path, i);
    rename(from, to);
  }
  if (open_log(O_TRUNC)) _exit(1); /* the host's log dir went away: nothing left to keep */
}

static void write_capped(const char *buf, size_t len) {
  while (len > 0) {
    if (log_size >= max_bytes) rotate();
    size_t n = max_bytes - log_size < len ? max_bytes - log_size : len;
    ssize_t w = write(log_fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(1);
    buf += w;
    len -= (size_t)w;
    log_size += (unsigned long)w;
  }
}

static void relay(int in) {
  static unsigned char raw[CHUNK];
  static char out[CHUNK * 4];
  static const char hex[] = "0123456789abcdef";
  for (;;) {
    ssize_t n = read(in, raw, sizeof raw);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);
    size_t o = 0;
    for (ssize_t i = 0; i < n; i++) {
      unsigned char c = raw[i];
      if (c == '\\') {
        out[o++] = '\\';
        out[o++] = '\\';
      } else if ((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t') {
        out[o++] = (char)c;
      } else {
        out[o++] = '\\';
        out[o++] = 'x';
        out[o++] = hex[c >> 4];
        out[o++] = hex[c & 15];
      }
    }
    write_capped(out, o);
  }
}

int main(int argc, char **argv) {
  int out[2], in[2];
  if (argc < 6 || strcmp(argv[4], "--") || argv[1][0] != '/' ||
      parse_num(argv[2], 4096, 1UL << 30, &max_bytes) || parse_num(argv[3], 0, MAX_KEEP, &keep)) {
    fprintf(stderr, "usage: isola-log-relay /LOGFILE MAXBYTES KEEP -- RUNTIME [ARG...]\n");
    return 125;
  }
  log_path = argv[1];
  if (strlen(log_path) > PATH_MAX - 8) {
    fprintf(stderr, "isola-log-relay: log path too long\n");
    return 125;
  }
  if (open_log(0)) {
    fprintf(stderr, "isola-log-relay: %s: %s\n", log_path, strerror(errno));
    return 125;
  }
  if (pipe2(out, O_CLOEXEC) || pipe2(in, O_CLOEXEC)) {
    fprintf(stderr, "isola-log-relay: pipe: %s\n", strerror(errno));
    return 125;
  }
  close(in[1]); /* the qube's stdin: an empty pipe, reads return end-of-file */
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "isola-log-relay: fork: %s\n", strerror(errno));
    return 125;
  }
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    close(out[1]);
    close(in[0]);
    setsid();
    if (chdir("/")) _exit(1);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* Let go of isolad's stdio (a pipe to its own log) so nothing waits on this process. */
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) _exit(1);
    relay(out[0]);
  }
  close(out[0]);
  close(log_fd);
  int err = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(out[1], 2) < 0) return 125;
  close(in[0]);
  close(out[1]);
  execvp(argv[5], argv + 5);
  if (err >= 0) dprintf(err, "isola-log-relay: cannot run %s: %s\n", argv[5], strerror(errno));
  return 127;
}
