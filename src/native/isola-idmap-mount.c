/* isola-idmap-mount: bind-mount SRC on DST as an idmapped mount (on-disk uid/gid N appears as
 * BASE+N), so a qube's user namespace sees a template stored with real root ownership as its own.
 * Node cannot call open_tree/mount_setattr/move_mount, and util-linux 2.38 has no X-mount.idmap.
 * Usage: isola-idmap-mount BASE COUNT SRC DST */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int die(const char *what, const char *path) {
  fprintf(stderr, "isola-idmap-mount: %s %s: %s\n", what, path ? path : "", strerror(errno));
  return 1;
}

static int write_map(pid_t pid, const char *file, unsigned long base, unsigned long count) {
  char path[64], line[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int n = snprintf(line, sizeof line, "0 %lu %lu\n", base, count);
  int ok = write(fd, line, n) == n;
  close(fd);
  return ok ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: isola-idmap-mount BASE COUNT SRC DST\n");
    return 2;
  }
  char *end;
  errno = 0;
  unsigned long base = strtoul(argv[1], &end, 10);
  if (errno || *end || base == 0) { fprintf(stderr, "isola-idmap-mount: bad BASE\n"); return 2; }
  unsigned long count = strtoul(argv[2], &end, 10);
  if (errno || *end || count == 0 || count > 0x10000000UL) { fprintf(stderr, "isola-idmap-mount: bad COUNT\n"); return 2; }

  /* A child holds a user namespace with the mapping; its ns fd describes the idmap. */
  int sync_pipe[2];
  if (pipe2(sync_pipe, O_CLOEXEC)) return die("pipe", NULL);
  pid_t pid = fork();
  if (pid < 0) return die("fork", NULL);
  if (pid == 0) {
    char c;
    close(sync_pipe[1]);
    if (unshare(CLONE_NEWUSER)) _exit(1);
    /* Tell nothing; just wait for the parent to finish with our namespace. */
    if (read(sync_pipe[0], &c, 1) < 0) _exit(1);
    _exit(0);
  }
  close(sync_pipe[0]);
  /* Wait until the child is in its own user namespace. */
  char self_ns[64], child_ns[64], buf1[64], buf2[64];
  snprintf(self_ns, sizeof self_ns, "/proc/self/ns/user");
  snprintf(child_ns, sizeof child_ns, "/proc/%d/ns/user", (int)pid);
  for (int i = 0; i < 2000; i++) {
    ssize_t a = readlink(self_ns, buf1, sizeof buf1 - 1), b = readlink(child_ns, buf2, sizeof buf2 - 1);
    if (a > 0 && b > 0 && (a != b || memcmp(buf1, buf2, a) != 0)) break;
    usleep(500);
  }
  int rc = 1;
  int ns = -1, tree = -1;
  if (write_map(pid, "uid_map", base, count) || write_map(pid, "gid_map", base, count)) { die("write id map for", argv[3]); goto out; }
  ns = open(child_ns, O_RDONLY | O_CLOEXEC);
  if (ns < 0) { die("open", child_ns); goto out; }
  tree = syscall(SYS_open_tree, AT_FDCWD, argv[3], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) { die("open_tree", argv[3]); goto out; }
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = ns;
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr)) { die("mount_setattr idmap on", argv[3]); goto out; }
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, argv[4], MOVE_MOUNT_F_EMPTY_PATH)) { die("move_mount to", argv[4]); goto out; }
  rc = 0;
out:
  close(sync_pipe[1]);
  waitpid(pid, NULL, 0);
  return rc;
}
