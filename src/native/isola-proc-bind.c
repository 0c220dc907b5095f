/* isola-proc-bind: an OCI createContainer hook that covers host files in /proc with the qube's own.
 * Usage (the hook's argv): isola-proc-bind /proc/DEST CONTENT [/proc/DEST CONTENT...]
 *
 * /proc/cmdline and /proc/sys/kernel/random/boot_id are the host's; a VM has its own. runc refuses
 * bind mounts under /proc (bar a few lxcfs files), so this runs where the runtime runs createContainer
 * hooks: in the qube's mount and user namespaces, after its mounts, before pivot_root and seccomp,
 * with the working directory at the qube's rootfs. The files live in a small detached tmpfs made
 * here (no host file is involved), which is then made read-only; each is bound read-only, nosuid,
 * nodev, noexec over its DEST. The rootfs is qube-controlled, so /proc is resolved inside it
 * (RESOLVE_IN_ROOT, as runc resolves its own mounts), must be procfs, and nothing below it may leave
 * procfs. Any failure exits non-zero, and the runtime then refuses to start the qube. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_CONTENT 4096

static int fail(const char *what, const char *path) {
  fprintf(stderr, "isola-proc-bind: %s %s: %s\n", what, path, strerror(errno ? errno : EINVAL));
  return 1;
}

/* The runtime writes the container state to stdin; read it all so its write never sees EPIPE. */
static void drain_stdin(void) {
  char buf[4096];
  while (read(0, buf, sizeof buf) > 0) {
  }
}

static int open_in(int dir, const char *path, unsigned long long flags, unsigned long long resolve) {
  struct open_how how = {.flags = flags | O_PATH | O_CLOEXEC | O_NOFOLLOW, .resolve = resolve};
  return (int)syscall(SYS_openat2, dir, path, &how, sizeof how);
}

static int on_procfs(int fd) {
  struct statfs sfs;
  return fstatfs(fd, &sfs) == 0 && sfs.f_type == PROC_SUPER_MAGIC;
}

/* Writes CONTENT to a new file NAME in the scratch tmpfs. */
static int write_file(int scratch, const char *name, const char *content) {
  size_t len = strlen(content);
  int fd = openat(scratch, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
  if (fd < 0) return fail("create", name);
  if (len > MAX_CONTENT || write(fd, content, len) != (ssize_t)len) return fail("write", name);
  close(fd);
  return 0;
}

/* Binds scratch/NAME over DEST, which must be a regular file on the qube's procfs. */
static int bind_over(int proc, int scratch, const char *name, const char *dest) {
  struct stat st;
  int dst = open_in(proc, dest + strlen("/proc/"), 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
  if (dst < 0) return fail("open", dest);
  errno = 0;
  if (fstat(dst, &st) || !S_ISREG(st.st_mode) || !on_procfs(dst)) return fail("not a file on procfs:", dest);
  int tree = open_tree(scratch, name, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) return fail("open_tree", name);
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
  if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr)) return fail("mount_setattr", name);
  if (move_mount(tree, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)) return fail("move_mount onto", dest);
  close(tree);
  close(dst);
  return 0;
}

int main(int argc, char **argv) {
  char name[16];
  if (argc < 3 || argc % 2 == 0 || argc > 17) {
    fprintf(stderr, "usage: isola-proc-bind /proc/DEST CONTENT [/proc/DEST CONTENT...] (at most 8)\n");
    return 2;
  }
  for (int i = 1; i < argc; i += 2) {
    if (strncmp(argv[i], "/proc/", 6) != 0 || argv[i][6] == '\0') return fail("destination outside /proc:", argv[i]);
  }
  drain_stdin();
  /* /proc itself is a mount point (crossing onto it is the point); below it nothing may leave it. */
  int proc = open_in(AT_FDCWD, "proc", O_DIRECTORY, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
  if (proc < 0) return fail("open", "/proc in the rootfs");
  if (!on_procfs(proc)) return fail("not procfs:", "/proc in the rootfs");

  int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
  if (fs < 0) return fail("fsopen", "tmpfs");
  if (fsconfig(fs, FSCONFIG_SET_STRING, "size", "64k", 0) || fsconfig(fs, FSCONFIG_SET_STRING, "nr_inodes", "16", 0) ||
      fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0555", 0) || fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0)) {
    return fail("fsconfig", "tmpfs");
  }
  int scratch = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  if (scratch < 0) return fail("fsmount", "tmpfs");
  for (int i = 1; i < argc; i += 2) {
    snprintf(name, sizeof name, "f%d", i / 2);
    if (write_file(scratch, name, argv[i + 1])) return 1;
  }
  /* Read-only at the superblock: no remount of a bind can make these writable again. */
  if (fsconfig(fs, FSCONFIG_SET_FLAG, "ro", NULL, 0) || fsconfig(fs, FSCONFIG_CMD_RECONFIGURE, NULL, NULL, 0)) {
    return fail("make read-only", "tmpfs");
  }
  for (int i = 1; i < argc; i += 2) {
    snprintf(name, sizeof name, "f%d", i / 2);
    if (bind_over(proc, scratch, name, argv[i])) return 1;
  }
  return 0;
}
