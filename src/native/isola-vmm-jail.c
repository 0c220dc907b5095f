/* isola-vmm-jail: runs an hvm qube's QEMU with the least privilege, as Firecracker's jailer does.
 * Usage: isola-vmm-jail --uid U --gid G --state-dir DIR [--ro PATH]... [--rw PATH]... [--dev PATH]...
 *                       [--disk-{ro,rw}[-direct] FILE]... [--listen SOCKET]... [--tap NAME] -- QEMU [ARG...]
 * QEMU is what a guest attacks first; if it falls, the attacker must find itself as an unprivileged uid
 * of its own (the qube's), without capabilities, in new mount, pid, ipc, uts and network namespaces whose
 * root is an empty read-only tmpfs holding only the listed binds (each at its own path: QEMU's arguments
 * need no rewriting). --ro/--rw bind a file or directory read-only/read-write (nosuid, nodev); --dev binds
 * a device node (/dev/null, /dev/kvm). The binds are opened before the new root exists, and mounted from
 * those descriptors, so a path swapped after the check cannot redirect a bind. Disks are not bound: the
 * jail opens each (as root) and QEMU inherits disk i, in the order given, read-only as descriptor 3+2i
 * and, if writable, read-write as 4+2i (QEMU opens an image read-only first, then reopens it for
 * writing): QEMU's `-add-fd fd=3+2i,set=i+1`, `file=/dev/fdset/i+1`. QEMU needs no permission on the image
 * file, cannot reach its directory, and cannot open a read-only disk for writing. `-direct` opens with
 * O_DIRECT, which QEMU's cache.direct=on needs on the descriptor itself (it cannot add it to a dup).
 * --listen binds a unix socket at SOCKET (which must not exist; root's, mode 0600) and listens on it as
 * root; QEMU inherits listener j after the disks, as descriptor 3+2*ndisks+j (`-chardev socket,fd=N,
 * server=on`). QEMU owns no socket file: one that fell cannot swap the path isolad connects to (QMP, the
 * agent ports) for another qube's socket.
 * --tap creates the tap device NAME in the new network namespace (as root, before anything is dropped)
 * and QEMU inherits it after the listeners (`-netdev tap,fd=N`): QEMU, without CAP_NET_ADMIN, can read
 * and write frames on it but not configure it, create another one, or see the host's interfaces.
 * isolad wires it from outside (src/net/vm-link.ts).
 * Detaches: forks a supervisor in a new session that stays outside the namespaces (waits for QEMU and
 * records how it ended), writes DIR/pid (QEMU's host pid) once QEMU is exec'd, and exits 0; a failure
 * before the exec goes to DIR/error (one line) and exit 1. When QEMU ends, DIR/exit says how
 * ("exited N" or "killed SIGNAME"). DIR must be root's (the qube's uid could otherwise forge the pid). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>

#define MAX_BINDS 64
#define MAX_DISKS 32
#define MAX_LISTEN 8
#define FIRST_DISK_FD 3
#define HIGH_FD 256
#define NEW_ROOT "/tmp"

enum kind { RO, RW, DEV };
struct bind {
  const char *path;
  enum kind kind;
  int fd;
  int is_dir;
};

static struct bind binds[MAX_BINDS];
static int nbinds;
static int disk_fds[2 * MAX_DISKS]; /* read-only, read-write (-1 for a read-only disk) */
static int ndisks;
static int listen_fds[MAX_LISTEN];
static int nlisten;
static const char *tap_name; /* --tap: created in the new network namespace */
static int tap_fd = -1;
static int state_fd = -1;
static int report_fd = -1; /* the child's error line goes to the supervisor through this pipe */

static void die(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (report_fd >= 0) {
    if (write(report_fd, msg, strlen(msg)) < 0) { /* nothing more to do */ }
    _exit(127);
  }
  fprintf(stderr, "isola-vmm-jail: %s\n", msg);
  if (state_fd >= 0) {
    int fd = openat(state_fd, "error", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dprintf(fd, "%s\n", msg);
      close(fd);
    }
  }
  exit(1);
}

/* Absolute, no empty, `.` or `..` component: what a bind or the state dir may be. */
static int safe_path(const char *p) {
  if (p[0] != '/' || strlen(p) >= PATH_MAX) return 0;
  for (const char *s = p; *s;) {
    while (*s == '/') s++;
    const char *e = strchrnul(s, '/');
    size_t n = (size_t)(e - s);
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
    if (n == 0 && *e) return 0;
    s = e;
  }
  return p[1] != '\0';
}

static unsigned long parse_id(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (*s < '0' || *s > '9' || errno || *end || v == 0 || v >= 0xfffffffful) die("%s '%s': not an unprivileged id", what, s);
  return v;
}

static void write_state(const char *name, const char *fmt, ...) {
  char tmp[64], buf[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  snprintf(tmp, sizeof tmp, ".%s.tmp", name);
  int fd = openat(state_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, buf, (size_t)n) != n || close(fd) != 0 || renameat(state_fd, tmp, state_fd, name) != 0)
    fprintf(stderr, "isola-vmm-jail: cannot write %s: %s\n", name, strerror(errno));
}

static void mkdirs(const char *path) {
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) die("mkdir %s: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) die("mkdir %s: %s", buf, strerror(errno));
}

/* In the new mount namespace (a mount of another one cannot be bound), before the tmpfs hides anything. */
static void open_binds(void) {
  struct stat st;
  for (int b = 0; b < nbinds; b++) {
    binds[b].fd = open(binds[b].path, O_PATH | O_CLOEXEC);
    if (binds[b].fd < 0 || fstat(binds[b].fd, &st) != 0) die("bind %s: %s", binds[b].path, strerror(errno));
    binds[b].is_dir = S_ISDIR(st.st_mode);
    if (binds[b].kind == DEV && !S_ISCHR(st.st_mode)) die("bind %s: not a character device", binds[b].path);
    if (binds[b].kind != DEV && !S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) die("bind %s: not a file or directory", binds[b].path);
  }
}

static void bind_one(const struct bind *b) {
  char target[PATH_MAX], src[64];
  snprintf(target, sizeof target, "%s%s", NEW_ROOT, b->path);
  if (b->is_dir) {
    mkdirs(target);
  } else {
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", target);
    *strrchr(parent, '/') = '\0';
    mkdirs(parent);
    int fd = open(target, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) die("create %s: %s", target, strerror(errno));
    if (fd >= 0) close(fd);
  }
  snprintf(src, sizeof src, "/proc/self/fd/%d", b->fd);
  if (mount(src, target, NULL, MS_BIND, NULL) != 0) die("bind %s: %s", b->path, strerror(errno));
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID;
  if (b->kind != DEV) flags |= MS_NODEV;
  if (b->kind == RO) flags |= MS_RDONLY;
  if (mount(NULL, target, NULL, flags, NULL) != 0) die("remount %s: %s", b->path, strerror(errno));
}

static void drop_privileges(unsigned long uid, unsigned long gid) {
  for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) die("drop capability %d: %s", cap, strerror(errno));
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) die("clear ambient capabilities: %s", strerror(errno));
  if (setgroups(0, NULL) != 0) die("setgroups: %s", strerror(errno));
  if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) die("setresgid %lu: %s", gid, strerror(errno));
  /* From root to a non-zero uid without SECBIT_KEEP_CAPS: permitted and effective sets are emptied. */
  if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) die("setresuid %lu: %s", uid, strerror(errno));
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs: %s", strerror(errno));
  if (setuid(0) == 0) die("still able to become root");
}

/* Out of the way of 3..3+ndisks, where QEMU expects the disks. */
static int move_high(int fd) {
  int hi = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD);
  if (hi < 0) die("dup: %s", strerror(errno));
  close(fd);
  return hi;
}

/* Disks at 3+2i and 4+2i for QEMU, the listeners after them, everything else closed at exec. */
static void place_disks(void) {
  for (int d = 0; d < 2 * ndisks; d++) {
    if (disk_fds[d] < 0) close(FIRST_DISK_FD + d);
    else if (dup2(disk_fds[d], FIRST_DISK_FD + d) < 0) die("dup2 disk %d: %s", d / 2, strerror(errno));
  }
  int first_listen = FIRST_DISK_FD + 2 * ndisks;
  for (int j = 0; j < nlisten; j++)
    if (dup2(listen_fds[j], first_listen + j) < 0) die("dup2 listener %d: %s", j, strerror(errno));
  int next = first_listen + nlisten;
  if (tap_fd >= 0 && dup2(tap_fd, next++) < 0) die("dup2 tap: %s", strerror(errno));
  if (close_range((unsigned)next, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
    for (int fd = next; fd < 4096; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* As root, before anything is dropped: the socket file is root's, in root's run dir. */
static int open_listener(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) die("socket %s: path too long", path);
  memcpy(addr.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket: %s", strerror(errno));
  mode_t old = umask(077);
  int r = bind(fd, (struct sockaddr *)&addr, sizeof addr);
  umask(old);
  if (r != 0) die("bind %s: %s", path, strerror(errno));
  if (listen(fd, SOMAXCONN) != 0) die("listen %s: %s", path, strerror(errno));
  return fd;
}

static int open_disk(const char *path, int mode) {
  int fd = open(path, mode | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) die("disk %s: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) die("disk %s: not a file or block device", path);
  /* O_NONBLOCK only kept a FIFO planted at the path from blocking the open. */
  if (fcntl(fd, F_SETFL, mode & O_DIRECT) != 0) die("disk %s: %s", path, strerror(errno));
  return fd;
}

/* In the new network namespace, with the host's /dev still reachable: the qube's tap. Vnet headers let
 * QEMU pass checksum offloads through instead of computing every checksum under TCG. */
static int open_tap(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) die("/dev/net/tun: %s", strerror(errno));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  memcpy(ifr.ifr_name, name, strlen(name));
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) die("create tap %s: %s", name, strerror(errno));
  return move_high(fd);
}

/* In the new namespaces, as pid 1: builds the root, drops everything, becomes QEMU. */
static void jail_child(unsigned long uid, unsigned long gid, char **argv) {
  report_fd = move_high(report_fd);
  for (int d = 0; d < 2 * ndisks; d++)
    if (disk_fds[d] >= 0) disk_fds[d] = move_high(disk_fds[d]);
  for (int j = 0; j < nlisten; j++) listen_fds[j] = move_high(listen_fds[j]);
  if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET) != 0) die("unshare: %s", strerror(errno));
  if (tap_name) tap_fd = open_tap(tap_name);
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) die("make mounts private: %s", strerror(errno));
  if (sethostname("isola-vmm", 9) != 0) die("sethostname: %s", strerror(errno));
  open_binds();
  if (mount("isola-vmm", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=1024") != 0)
    die("mount tmpfs: %s", strerror(errno));
  for (int i = 0; i < nbinds; i++) bind_one(&binds[i]);
  for (int i = 0; i < nbinds; i++) close(binds[i].fd);
  if (chdir(NEW_ROOT) != 0) die("chdir: %s", strerror(errno));
  /* pivot_root(".", "."): the old root ends stacked under the new one and is detached at once. */
  if (syscall(SYS_pivot_root, ".", ".") != 0) die("pivot_root: %s", strerror(errno));
  if (umount2(".", MNT_DETACH) != 0) die("detach old root: %s", strerror(errno));
  if (chdir("/") != 0) die("chdir /: %s", strerror(errno));
  if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
    die("remount root read-only: %s", strerror(errno));
  drop_privileges(uid, gid);
  place_disks();
  /* One malloc arena: QEMU's threads need no more, and each costs resident memory per qube. */
  char *envp[] = {"PATH=/usr/bin", "MALLOC_ARENA_MAX=1", NULL};
  execve(argv[0], argv, envp);
  die("exec %s: %s", argv[0], strerror(errno));
}

static const char *signame(int sig) {
  const char *d = sigabbrev_np(sig);
  static char buf[32];
  snprintf(buf, sizeof buf, "SIG%s", d ? d : "?");
  if (!d) snprintf(buf, sizeof buf, "signal %d", sig);
  return buf;
}

/* Outside the namespaces, in its own session: starts the jailed QEMU, tells the launcher, waits for it. */
static void supervise(unsigned long uid, unsigned long gid, char **argv, int ready_fd) {
  int rep[2];
  if (pipe2(rep, O_CLOEXEC) != 0) die("pipe: %s", strerror(errno));
  if (unshare(CLONE_NEWPID) != 0) die("unshare pid namespace: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) die("fork: %s", strerror(errno));
  if (pid == 0) {
    close(rep[0]);
    close(ready_fd);
    close(state_fd);
    state_fd = -1;
    report_fd = rep[1];
    jail_child(uid, gid, argv);
  }
  close(rep[1]);
  /* Only QEMU holds the listeners: once it ends, a connect must be refused, not queued. */
  for (int j = 0; j < nlisten; j++) close(listen_fds[j]);
  char msg[512];
  ssize_t n;
  do n = read(rep[0], msg, sizeof msg - 1);
  while (n < 0 && errno == EINTR);
  close(rep[0]);
  if (n > 0) {
    msg[n] = '\0';
    waitpid(pid, NULL, 0);
    report_fd = -1;
    die("%s", msg);
  }
  write_state("pid", "%d\n", (int)pid);
  if (write(ready_fd, "ok", 2) != 2) { /* the launcher is gone: QEMU runs on regardless */ }
  close(ready_fd);
  /* The console belongs to QEMU alone: the relay must see EOF when QEMU ends, not when we do. */
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) _exit(1);
  if (WIFSIGNALED(status)) write_state("exit", "killed %s\n", signame(WTERMSIG(status)));
  else write_state("exit", "exited %d\n", WEXITSTATUS(status));
  _exit(0);
}

int main(int argc, char **argv) {
  unsigned long uid = 0, gid = 0;
  const char *state_dir = NULL;
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (i + 1 >= argc) die("option %s needs a value", a);
    const char *val = argv[++i];
    if (strcmp(a, "--uid") == 0) uid = parse_id(val, "uid");
    else if (strcmp(a, "--gid") == 0) gid = parse_id(val, "gid");
    else if (strcmp(a, "--state-dir") == 0) state_dir = val;
    else if (strcmp(a, "--ro") == 0 || strcmp(a, "--rw") == 0 || strcmp(a, "--dev") == 0) {
      if (nbinds == MAX_BINDS) die("more than %d binds", MAX_BINDS);
      if (!safe_path(val)) die("bind '%s': not an absolute path without . or ..", val);
      binds[nbinds++] = (struct bind){val, a[2] == 'r' ? (a[3] == 'o' ? RO : RW) : DEV, -1, 0};
    } else if (strncmp(a, "--disk-r", 8) == 0 && (!strcmp(a + 8, "o") || !strcmp(a + 8, "w") || !strcmp(a + 8, "o-direct") || !strcmp(a + 8, "w-direct"))) {
      if (ndisks == MAX_DISKS) die("more than %d disks", MAX_DISKS);
      if (!safe_path(val)) die("disk '%s': not an absolute path without . or ..", val);
      int direct = a[9] == '-' ? O_DIRECT : 0;
      disk_fds[2 * ndisks] = open_disk(val, O_RDONLY | direct);
      disk_fds[2 * ndisks + 1] = a[8] == 'w' ? open_disk(val, O_RDWR | direct) : -1;
      ndisks++;
    } else if (strcmp(a, "--listen") == 0) {
      if (nlisten == MAX_LISTEN) die("more than %d listeners", MAX_LISTEN);
      if (!safe_path(val)) die("socket '%s': not an absolute path without . or ..", val);
      listen_fds[nlisten++] = open_listener(val);
    } else if (strcmp(a, "--tap") == 0) {
      size_t n = strlen(val);
      if (tap_name || n == 0 || n >= IFNAMSIZ || strspn(val, "abcdefghijklmnopqrstuvwxyz0123456789") != n) die("--tap '%s': one name of [a-z0-9], at most %d characters", val, IFNAMSIZ - 1);
      tap_name = val;
    } else die("unknown option %s", a);
  }
  if (!state_dir || !safe_path(state_dir)) die("--state-dir: an absolute path without . or .. is required");
  state_fd = open(state_dir, O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (state_fd < 0) die("state dir %s: %s", state_dir, strerror(errno));
  struct stat st;
  if (fstat(state_fd, &st) != 0 || st.st_uid != 0 || (st.st_mode & 022)) die("state dir %s must be root's and not group/world-writable", state_dir);
  unlinkat(state_fd, "error", 0);
  unlinkat(state_fd, "exit", 0);
  unlinkat(state_fd, "pid", 0);
  if (!uid || !gid) die("--uid and --gid are required");
  if (i >= argc || argv[i][0] != '/') die("the QEMU binary must be an absolute path after --");
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) die("pipe: %s", strerror(errno));
  pid_t sup = fork();
  if (sup < 0) die("fork: %s", strerror(errno));
  if (sup == 0) {
    close(ready[0]);
    if (setsid() < 0) die("setsid: %s", strerror(errno));
    supervise(uid, gid, argv + i, ready[1]);
  }
  close(ready[1]);
  char ok[2];
  ssize_t n;
  do n = read(ready[0], ok, sizeof ok);
  while (n < 0 && errno == EINTR);
  /* The supervisor wrote the error file itself; it stays running only with QEMU. */
  return n == 2 ? 0 : 1;
}
