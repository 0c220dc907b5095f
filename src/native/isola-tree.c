/* isola-tree: walks a qube-written tree descriptor-relative, names as bytes, at any depth.
 * Node's fs works on string paths: a name that is not UTF-8 or a path over PATH_MAX breaks it,
 * and a qube chooses both. Nothing here follows a symlink or opens a fifo, device or socket.
 *
 *   isola-tree unshift DIR BASE COUNT
 *       Owner ids in [BASE, BASE+COUNT) become id-BASE (the commit of a qube's upper dir).
 *       Set-id bits cleared by chown are put back; security.capability (cleared by chown too)
 *       is read before and written back after, a v3 rootid in the range shifted like the owner.
 *   isola-tree copy SRC DST
 *       Copies SRC's contents into the existing empty directory DST (clone, squash): owners,
 *       modes, times, xattrs, hard links, holes, symlinks and special files as they are.
 *   isola-tree import SRC DST
 *       As copy, for a tree an hvm guest wrote (its overlay upper, on the way to becoming a layer):
 *       device nodes other than overlay's whiteouts (char 0:0) are left out, and of the trusted.*
 *       xattrs only trusted.overlay.opaque is kept, so no guest can place a device node or an
 *       overlay redirect where the host, or a sandbox qube, would honour it.
 *
 * Exit codes: 0 done (warnings on stderr); 1 usage; 2 a file could not be handled (the message
 * names it); 3 out of memory or descriptors; 4 the tree changed during the walk.
 * Paths in messages are relative to the tree, with bytes outside printable ASCII as \xHH. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <search.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#define CAPS "security.capability"
/* Levels whose descriptors stay open (at most; fewer under a low RLIMIT_NOFILE): deeper
 * ancestors are closed and reopened through ".." when the walk comes back (verified). */
#define KEEP_OPEN 256
static size_t keep_open = KEEP_OPEN;

struct frame {
  int fd, dfd;               /* source dir, destination dir (copy); -1 when closed */
  struct stat st, dst;       /* identities, to check a reopen; st also gives times/mode */
  char *names;               /* this directory's entries, NUL-separated, read before descending */
  size_t len, pos, plen;     /* bytes in names, next entry, path length at this level */
};

static struct frame *stack;
static size_t depth, cap_frames;
static char *path_buf;       /* the current path relative to the root, for messages and links */
static size_t path_len, path_cap;
static int copy_mode, import_mode, root_dfd = -1, no_cfr;
static unsigned long base, count;

static void print_path(void) {
  size_t from = path_len > 2000 ? path_len - 2000 : 0;
  if (from) fputs("...", stderr);
  for (size_t i = from; i < path_len; i++) {
    unsigned char c = (unsigned char)path_buf[i];
    if (c > 0x20 && c < 0x7f && c != '\\') fputc(c, stderr);
    else fprintf(stderr, "\\x%02x", c);
  }
  if (path_len == 0) fputc('.', stderr);
}

static _Noreturn void fail(int code, const char *what) {
  int e = errno;
  fprintf(stderr, "isola-tree: %s '", what);
  print_path();
  fprintf(stderr, "': %s\n", strerror(e));
  exit(e == EMFILE || e == ENFILE || e == ENOMEM ? 3 : code);
}

static void warn(const char *what) {
  int e = errno;
  fprintf(stderr, "isola-tree: warning: %s '", what);
  print_path();
  fprintf(stderr, "': %s\n", strerror(e));
}

static void *grow(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) { errno = ENOMEM; fail(3, "memory for"); }
  return q;
}

static void path_push(const char *name) {
  size_t n = strlen(name), need = path_len + n + 2;
  if (need > path_cap) path_buf = grow(path_buf, path_cap = need * 2);
  if (path_len) path_buf[path_len++] = '/';
  memcpy(path_buf + path_len, name, n);
  path_len += n;
}

/* Every entry but . and .., read with getdents64 so no DIR buffer is held per level. */
static void read_names(struct frame *f) {
  char buf[65536];
  size_t cap = 0;
  f->names = NULL;
  f->len = f->pos = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, f->fd, buf, sizeof buf);
    if (n < 0) fail(2, "cannot read directory");
    if (n == 0) break;
    for (long off = 0; off < n;) {
      struct dirent64 *d = (struct dirent64 *)(buf + off);
      off += d->d_reclen;
      if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, "..")) continue;
      size_t l = strlen(d->d_name) + 1;
      if (f->len + l > cap) f->names = grow(f->names, cap = (f->len + l) * 2);
      memcpy(f->names + f->len, d->d_name, l);
      f->len += l;
    }
  }
}

static int same(const struct stat *a, const struct stat *b) {
  return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static int open_dir_at(int at, const char *name, const struct stat *want) {
  int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0) return -1;
  if (want && (fstat(fd, &st) || !same(&st, want))) { errno = ESTALE; fail(4, "directory changed during the walk:"); }
  return fd;
}

/* Copies every xattr (capabilities, ACLs, overlay's own) from one open file to another. */
static void copy_xattrs(int from, int to) {
  ssize_t n = flistxattr(from, NULL, 0);
  if (n <= 0) return;
  char *list = grow(NULL, (size_t)n), *val = NULL;
  n = flistxattr(from, list, (size_t)n);
  for (ssize_t i = 0; i < n; i += (ssize_t)strlen(list + i) + 1) {
    if (import_mode && !strncmp(list + i, "trusted.", 8) && strcmp(list + i, "trusted.overlay.opaque")) continue;
    ssize_t vl = fgetxattr(from, list + i, NULL, 0);
    if (vl < 0) continue;
    val = grow(val, (size_t)vl);
    vl = fgetxattr(from, list + i, val, (size_t)vl);
    if (vl < 0 || fsetxattr(to, list + i, val, (size_t)vl, 0)) warn("cannot copy an extended attribute of");
  }
  free(list);
  free(val);
}

/* --- unshift --------------------------------------------------------------------------- */

static int in_range(unsigned long id) { return id >= base && id - base < count; }
static unsigned long shifted(unsigned long id) { return in_range(id) ? id - base : id; }

/* chown clears set-id bits and capabilities: save both, chown, put them back (rootid shifted). */
static void unshift_fd(int fd, const struct stat *st) {
  unsigned char caps[64];
  ssize_t cl = S_ISREG(st->st_mode) ? fgetxattr(fd, CAPS, caps, sizeof caps) : -1;
  if (fchown(fd, (uid_t)shifted(st->st_uid), (gid_t)shifted(st->st_gid))) fail(2, "cannot change the owner of");
  if (cl >= 24 && (caps[3] & 0xff) == 3) { /* v3: magic_etc (le32) then data, then le32 rootid */
    uint32_t root = (uint32_t)caps[20] | (uint32_t)caps[21] << 8 | (uint32_t)caps[22] << 16 | (uint32_t)caps[23] << 24;
    root = (uint32_t)shifted(root);
    for (int i = 0; i < 4; i++) caps[20 + i] = (unsigned char)(root >> (8 * i));
  }
  if (cl > 0 && fsetxattr(fd, CAPS, caps, (size_t)cl, 0)) warn("cannot restore the file capabilities of");
  if ((st->st_mode & 06000) && fchmod(fd, st->st_mode & 07777)) fail(2, "cannot restore the mode of");
}

static void unshift_entry(int dirfd, const char *name, const struct stat *st, int fd) {
  if (!in_range(st->st_uid) && !in_range(st->st_gid)) return;
  if (fd >= 0) return unshift_fd(fd, st);
  if (S_ISREG(st->st_mode)) {
    /* O_NOFOLLOW and O_NONBLOCK: never a link, never blocks; checked to be the file we saw. */
    int f = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat now;
    if (f < 0) fail(2, "cannot open");
    if (fstat(f, &now) || !same(&now, st)) { errno = ESTALE; fail(4, "file changed during the walk:"); }
    unshift_fd(f, st);
    close(f);
    return;
  }
  /* Symlinks, fifos, devices, sockets: never opened. */
  if (fchownat(dirfd, name, (uid_t)shifted(st->st_uid), (gid_t)shifted(st->st_gid), AT_SYMLINK_NOFOLLOW))
    fail(2, "cannot change the owner of");
  if (!S_ISLNK(st->st_mode) && (st->st_mode & 06000) && fchmodat(dirfd, name, st->st_mode & 07777, 0))
    fail(2, "cannot restore the mode of");
}

/* --- copy ------------------------------------------------------------------------------ */

struct link { dev_t dev; ino_t ino; char *path; };
static void *links;

static int link_cmp(const void *a, const void *b) {
  const struct link *x = a, *y = b;
  if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
  return x->ino < y->ino ? -1 : x->ino > y->ino;
}

/* Hard link to an earlier copy, found again from DST's root one component at a time. */
static int link_earlier(const struct stat *st, int dfd, const char *name) {
  struct link key = { st->st_dev, st->st_ino, NULL }, **hit = tfind(&key, &links, link_cmp);
  if (!hit) return 0;
  char *p = (*hit)->path, *slash;
  int at = dup(root_dfd);
  if (at < 0) fail(3, "cannot duplicate a descriptor for");
  while ((slash = strchr(p, '/'))) {
    *slash = 0;
    int next = open_dir_at(at, p, NULL);
    *slash = '/';
    close(at);
    if (next < 0) fail(2, "cannot reach the first copy of a hard link");
    at = next;
    p = slash + 1;
  }
  if (linkat(at, p, dfd, name, 0)) fail(2, "cannot hard-link");
  close(at);
  return 1;
}

static void remember_link(const struct stat *st) {
  struct link *l = grow(NULL, sizeof *l);
  l->dev = st->st_dev;
  l->ino = st->st_ino;
  l->path = grow(NULL, path_len + 1);
  memcpy(l->path, path_buf, path_len);
  l->path[path_len] = 0;
  if (!tsearch(l, &links, link_cmp)) { errno = ENOMEM; fail(3, "memory for"); }
}

/* Data extents only (SEEK_DATA/SEEK_HOLE), so sparse files stay sparse; copy_file_range
 * shares blocks where the filesystem can (as cp --reflink=auto). */
static void copy_data(int in, int out, off_t size) {
  off_t pos = 0;
  while (pos < size) {
    off_t data = lseek(in, pos, SEEK_DATA);
    if (data < 0) { if (errno == ENXIO) break; data = pos; }
    off_t hole = lseek(in, data, SEEK_HOLE);
    if (hole < 0) hole = size;
    off_t from = data, to = data;
    while (from < hole) {
      ssize_t n = no_cfr ? -1 : copy_file_range(in, &from, out, &to, (size_t)(hole - from), 0);
      if (n < 0 && (no_cfr || errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
        no_cfr = 1; /* across filesystems (an overlay view to a layer): plain reads and writes */
        char buf[65536];
        n = pread(in, buf, sizeof buf < (size_t)(hole - from) ? sizeof buf : (size_t)(hole - from), from);
        if (n > 0 && pwrite(out, buf, (size_t)n, to) != n) n = -1;
        if (n > 0) { from += n; to += n; }
      } else if (n > 0) continue;
      if (n < 0) fail(2, "cannot copy the data of");
      if (n == 0) break; /* the file shrank: stop at its end */
    }
    pos = hole;
  }
  if (ftruncate(out, size)) fail(2, "cannot set the size of");
}

static void set_times(int dfd, const char *name, const struct stat *st) {
  struct timespec t[2] = { st->st_atim, st->st_mtim };
  if (utimensat(dfd, name, t, AT_SYMLINK_NOFOLLOW)) warn("cannot set the times of");
}

static void copy_file(int dirfd, const char *name, const struct stat *st, int dfd) {
  int in = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  struct stat now;
  if (in < 0) fail(2, "cannot open");
  if (fstat(in, &now) || !same(&now, st)) { errno = ESTALE; fail(4, "file changed during the walk:"); }
  int out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) fail(2, "cannot create the copy of");
  copy_data(in, out, st->st_size);
  if (fchown(out, st->st_uid, st->st_gid)) fail(2, "cannot set the owner of the copy of");
  copy_xattrs(in, out); /* after chown, which would clear capabilities */
  if (fchmod(out, st->st_mode & 07777)) fail(2, "cannot set the mode of the copy of");
  struct timespec t[2] = { st->st_atim, st->st_mtim };
  if (futimens(out, t)) warn("cannot set the times of");
  close(in);
  if (close(out)) fail(2, "cannot write the copy of");
}

static void copy_entry(int dirfd, const char *name, const struct stat *st, int dfd) {
  if (import_mode && (S_ISBLK(st->st_mode) || (S_ISCHR(st->st_mode) && st->st_rdev != 0))) {
    errno = EPERM;
    warn("left out a device node");
    return;
  }
  if (st->st_nlink > 1 && link_earlier(st, dfd, name)) return;
  if (S_ISREG(st->st_mode)) copy_file(dirfd, name, st, dfd);
  else {
    if (S_ISLNK(st->st_mode)) {
      size_t n = (size_t)st->st_size + 1;
      char *target = grow(NULL, n + 1);
      ssize_t l = readlinkat(dirfd, name, target, n);
      if (l < 0 || (size_t)l >= n) { if (l >= 0) errno = ESTALE; fail(2, "cannot read the symlink"); }
      target[l] = 0;
      if (symlinkat(target, dfd, name)) fail(2, "cannot create the copy of");
      free(target);
    } else if (mknodat(dfd, name, st->st_mode & (S_IFMT | 0777), st->st_rdev)) {
      fail(2, "cannot create the copy of");
    }
    if (fchownat(dfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW)) fail(2, "cannot set the owner of the copy of");
    /* Only what mknodat just made, never a link; fchmodat does not open it. */
    if (!S_ISLNK(st->st_mode) && fchmodat(dfd, name, st->st_mode & 07777, 0)) fail(2, "cannot set the mode of the copy of");
    set_times(dfd, name, st);
  }
  if (st->st_nlink > 1) remember_link(st);
}

/* A directory entered: the copy gets its owner and xattrs now, mode and times when left. */
static int copy_dir_enter(int parent_dfd, const char *name, int fd, const struct stat *st) {
  int d;
  if (parent_dfd < 0) d = open_dir_at(AT_FDCWD, name, NULL); /* the root: DST itself */
  else {
    if (mkdirat(parent_dfd, name, 0700)) fail(2, "cannot create the copy of");
    d = open_dir_at(parent_dfd, name, NULL);
  }
  if (d < 0) fail(2, "cannot open the copy of");
  if (fchown(d, st->st_uid, st->st_gid)) fail(2, "cannot set the owner of the copy of");
  copy_xattrs(fd, d);
  return d;
}

static void copy_dir_leave(struct frame *f) {
  if (fchmod(f->dfd, f->st.st_mode & 07777)) fail(2, "cannot set the mode of the copy of");
  struct timespec t[2] = { f->st.st_atim, f->st.st_mtim };
  if (futimens(f->dfd, t)) warn("cannot set the times of");
}

/* --- the walk -------------------------------------------------------------------------- */

static void push(int fd, int dfd, const struct stat *st) {
  if (depth == cap_frames) stack = grow(stack, (cap_frames = cap_frames ? cap_frames * 2 : 64) * sizeof *stack);
  struct frame *f = &stack[depth++];
  f->fd = fd;
  f->dfd = dfd;
  f->st = *st;
  if (dfd >= 0 && fstat(dfd, &f->dst)) fail(2, "cannot stat the copy of");
  f->plen = path_len;
  read_names(f);
  /* Bound the descriptors held, whatever the depth: the ancestor KEEP_OPEN up closes. */
  if (depth > keep_open) {
    struct frame *old = &stack[depth - 1 - keep_open];
    if (old->fd >= 0) { close(old->fd); old->fd = -1; }
    if (old->dfd >= 0) { close(old->dfd); old->dfd = -1; }
  }
}

static void reopen_parent(int *fd, int child, const struct stat *want) {
  if (*fd >= 0) return;
  *fd = open_dir_at(child, "..", want);
  if (*fd < 0) fail(2, "cannot go back up from");
}

static void pop(void) {
  struct frame *f = &stack[depth - 1];
  if (copy_mode) copy_dir_leave(f);
  if (depth > 1) {
    struct frame *p = &stack[depth - 2];
    reopen_parent(&p->fd, f->fd, &p->st);
    if (copy_mode) reopen_parent(&p->dfd, f->dfd, &p->dst);
  }
  close(f->fd);
  if (f->dfd >= 0) close(f->dfd);
  free(f->names);
  depth--;
  path_len = depth ? stack[depth - 1].plen : 0;
}

static void walk(const char *root, const char *dst) {
  struct stat st;
  int fd = open_dir_at(AT_FDCWD, root, NULL);
  if (fd < 0 || fstat(fd, &st)) fail(2, "cannot open the tree");
  int dfd = -1;
  if (copy_mode) {
    dfd = copy_dir_enter(-1, dst, fd, &st);
    if ((root_dfd = dup(dfd)) < 0) fail(3, "cannot duplicate a descriptor for");
  }
  else unshift_entry(AT_FDCWD, root, &st, fd);
  push(fd, dfd, &st);
  while (depth) {
    struct frame *f = &stack[depth - 1];
    path_len = f->plen;
    if (f->pos >= f->len) { pop(); continue; }
    const char *name = f->names + f->pos;
    f->pos += strlen(name) + 1;
    path_push(name);
    if (fstatat(f->fd, name, &st, AT_SYMLINK_NOFOLLOW)) fail(2, "cannot stat");
    if (!S_ISDIR(st.st_mode)) {
      if (copy_mode) copy_entry(f->fd, name, &st, f->dfd);
      else unshift_entry(f->fd, name, &st, -1);
      continue;
    }
    int child = open_dir_at(f->fd, name, &st);
    if (child < 0) fail(2, "cannot open directory");
    int dchild = -1;
    if (copy_mode) dchild = copy_dir_enter(f->dfd, name, child, &st);
    else unshift_entry(f->fd, name, &st, child);
    push(child, dchild, &st);
  }
}

/* One descriptor per kept level and two per copy: take what the hard limit allows. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return;
  FILE *f = fopen("/proc/sys/fs/nr_open", "re");
  unsigned long nr = 0;
  if (f) { if (fscanf(f, "%lu", &nr) != 1) nr = 0; fclose(f); }
  struct rlimit up = { nr, nr };
  if (nr <= rl.rlim_max || setrlimit(RLIMIT_NOFILE, &up)) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  /* Two per kept level (copy), plus a few for files, links and stdio. */
  if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 2 * KEEP_OPEN + 16)
    keep_open = rl.rlim_cur > 24 ? (size_t)(rl.rlim_cur - 16) / 2 : 4;
}

static int number(const char *s, unsigned long *out) {
  char *end;
  errno = 0;
  *out = strtoul(s, &end, 10);
  return *s && !*end && !errno && *out <= UINT32_MAX;
}

int main(int argc, char **argv) {
  raise_fd_limit();
  umask(0);
  if (argc == 5 && !strcmp(argv[1], "unshift") && number(argv[3], &base) && number(argv[4], &count)) {
    walk(argv[2], NULL);
    return 0;
  }
  if (argc == 4 && (!strcmp(argv[1], "copy") || !strcmp(argv[1], "import"))) {
    copy_mode = 1;
    import_mode = !strcmp(argv[1], "import");
    walk(argv[2], argv[3]);
    return 0;
  }
  fputs("usage: isola-tree unshift DIR BASE COUNT | isola-tree copy SRC DST | isola-tree import SRC DST\n", stderr);
  return 1;
}
