/* What a qube's root filesystem gets at each start (best effort, as client-tools.ts and hosts-entry.ts
 * did): wrappers for the in-qube Node tools in /usr/local/bin, and the qube's name in /etc/hosts. */
#define _GNU_SOURCE
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HOSTS (1024 * 1024)

/* command name -> the bundle (or shell script) in the lib dir and its first arguments */
static const struct { const char *tool, *bundle, *fixed; } TOOLS[] = {
  {"qrexec-client-vm", "isola-qrexec-client-vm", ""}, /* C: no Node start per call (seconds under TCG) */
  {"qvm-copy", "qvm-copy.js", "qvm-copy"},
  {"qvm-copy-to-vm", "qvm-copy.js", "qvm-copy-to-vm"},
  {"qvm-move", "qvm-copy.js", "qvm-move"},
  {"qvm-move-to-vm", "qvm-copy.js", "qvm-move-to-vm"},
  {"qvm-open-in-vm", "qvm-open-in-vm.js", "qvm-open-in-vm"},
  {"qvm-open-in-dvm", "qvm-open-in-vm.js", "qvm-open-in-dvm"},
  {"isola-clipboard", "isola-clipboard", ""},
};

static int write_all(int fd, const char *s, size_t n) {
  while (n) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static int is_elf(const char *path) {
  char magic[4];
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, magic, sizeof magic);
  close(fd);
  return n == (ssize_t)sizeof magic && memcmp(magic, "\x7f" "ELF", 4) == 0;
}

void install_tool_wrappers(const char *lib_dir, const char *bin_dir) {
  for (size_t i = 0; i < sizeof TOOLS / sizeof TOOLS[0]; i++) {
    char target[MAX_PATH_LEN], bundle[MAX_PATH_LEN], text[3 * MAX_PATH_LEN];
    struct stat st;
    snprintf(target, sizeof target, "%s/%s", bin_dir, TOOLS[i].tool);
    snprintf(bundle, sizeof bundle, "%s/%s", lib_dir, TOOLS[i].bundle);
    if (stat(bundle, &st) != 0) continue;
    mkdir(bin_dir, 0755);
    if (is_elf(bundle)) {
      /* A program of ours runs as it is: no shell between, and its argv[0] is the tool's name. symlink()
       * fails on an existing name, so a tool the qube already has is left alone as below. */
      if (symlink(bundle, target) != 0) { /* exists, or a read-only root: LIB/isola-qrexec-client-vm still runs */ }
      continue;
    }
    /* O_EXCL: a tool the qube already has (or a symlink it put there) is left alone. */
    int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0755);
    if (fd < 0) continue; /* exists, or a read-only root: the tools stay reachable as node LIB/TOOL.js */
    size_t len = strlen(TOOLS[i].bundle);
    const char *runner = len > 3 && strcmp(TOOLS[i].bundle + len - 3, ".js") == 0 ? "/usr/bin/node" : "/bin/sh";
    int n = snprintf(text, sizeof text, "#!/bin/sh\nexec %s %s %s \"$@\"\n", runner, bundle, TOOLS[i].fixed);
    if (n > 0 && (size_t)n < sizeof text) (void)write_all(fd, text, (size_t)n);
    fchmod(fd, 0755);
    close(fd);
  }
}

static int is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* /etc/hosts with exactly one `127.0.1.1` line, naming the qube; other lines are kept as they are. */
int with_hosts_entry(const char *hosts, size_t len, const char *name, char *out, size_t cap, size_t *out_len) {
  size_t o = 0, pos = 0;
  int any = len > 0;
  if (len > 0 && hosts[len - 1] == '\n') len--; /* the final newline is not a line of its own */
  while (any && pos <= len) {
    const char *nl = memchr(hosts + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - hosts) : len;
    const char *l = hosts + pos;
    size_t n = end - pos;
    pos = end + 1;
    size_t i = 0;
    while (i < n && is_ws(l[i])) i++;
    int ours = n - i > 9 && memcmp(l + i, "127.0.1.1", 9) == 0 && is_ws(l[i + 9]);
    if (!ours) {
      if (o + n + 1 > cap) return -1;
      memcpy(out + o, l, n);
      o += n;
      out[o++] = '\n';
    }
    if (!nl) break;
  }
  int w = snprintf(out + o, cap - o, "127.0.1.1\t%s\n", name);
  if (w < 0 || (size_t)w >= cap - o) return -1;
  *out_len = o + (size_t)w;
  return 0;
}

void ensure_hosts_entry(const char *name, const char *file) {
  char *cur = malloc(MAX_HOSTS), *want = malloc(MAX_HOSTS + 512);
  size_t len = 0, want_len;
  if (!cur || !want) goto out;
  int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0) {
    for (;;) {
      ssize_t r = read(fd, cur + len, MAX_HOSTS - len);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      len += (size_t)r;
      if (len == MAX_HOSTS) {
        close(fd);
        goto out; /* not a hosts file we should rewrite */
      }
    }
    close(fd);
  }
  if (with_hosts_entry(cur, len, name, want, MAX_HOSTS + 512, &want_len) != 0) goto out;
  if (want_len == len && memcmp(cur, want, len) == 0) goto out;
  char tmp[MAX_PATH_LEN];
  if (snprintf(tmp, sizeof tmp, "%s.isola-tmp", file) >= (int)sizeof tmp) goto out;
  unlink(tmp);
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) goto out; /* a read-only root: the qube works, only name lookups of itself are slow */
  int ok = write_all(fd, want, want_len) == 0;
  fchmod(fd, 0644);
  close(fd);
  if (!ok || rename(tmp, file) != 0) unlink(tmp);
out:
  free(cur);
  free(want);
}

/* /etc/resolv.conf naming the qube's DNS servers (Qubes' virtual 10.139.1.1/.2, which its netvm forwards),
 * as Qubes' network setup writes it at each start. servers: IPv4 addresses separated by spaces. */
void ensure_resolv_conf(const char *servers, const char *file) {
  char want[512];
  size_t o = 0;
  const char *p = servers;
  while (*p) {
    while (*p == ' ') p++;
    size_t n = strspn(p, "0123456789.");
    if (n == 0 || n > 15 || (p[n] != ' ' && p[n] != '\0')) {
      if (*p) return; /* not a list of addresses: leave the file alone */
      break;
    }
    int w = snprintf(want + o, sizeof want - o, "nameserver %.*s\n", (int)n, p);
    if (w < 0 || (size_t)w >= sizeof want - o) return;
    o += (size_t)w;
    p += n;
  }
  if (o == 0) return;
  char tmp[MAX_PATH_LEN];
  if (snprintf(tmp, sizeof tmp, "%s.isola-tmp", file) >= (int)sizeof tmp) return;
  unlink(tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return; /* a read-only root: names do not resolve, nothing else breaks */
  int ok = write_all(fd, want, o) == 0;
  fchmod(fd, 0644);
  close(fd);
  if (!ok || rename(tmp, file) != 0) unlink(tmp);
}
