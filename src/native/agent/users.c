/* /etc/passwd and /etc/group as exec.ts read them: first line naming the user wins, numeric ids only,
 * empty home is `/`, empty shell `/bin/sh`; group lines with a bad gid or too few fields are skipped. */
#include "users.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DB_SIZE (8 * 1024 * 1024)

/* Splits a line into at most max fields on ':'; returns how many there were (may exceed max). */
static size_t split_fields(const char *l, size_t n, const char **f, size_t *fl, size_t max) {
  size_t count = 0, start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || l[i] == ':') {
      if (count < max) {
        f[count] = l + start;
        fl[count] = i - start;
      }
      count++;
      start = i + 1;
    }
  }
  return count;
}

static int parse_id(const char *s, size_t n, uint32_t *out) {
  if (n == 0 || n > 10) return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v >= 0xffffffffu) return -1; /* (uid_t)-1 means "unchanged" to setresuid */
  *out = (uint32_t)v;
  return 0;
}

int parse_passwd(const char *text, size_t len, const char *name, struct qube_user *out) {
  size_t name_len = strlen(name);
  size_t pos = 0;
  while (pos < len) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - text) : len;
    const char *l = text + pos;
    size_t n = end - pos;
    pos = end + 1;
    const char *f[7];
    size_t fl[7];
    if (split_fields(l, n, f, fl, 7) < 7 || fl[0] != name_len || memcmp(f[0], name, name_len) != 0) continue;
    uint32_t uid, gid;
    if (parse_id(f[2], fl[2], &uid) || parse_id(f[3], fl[3], &gid)) return -1;
    if (fl[5] >= sizeof out->home || fl[6] >= sizeof out->shell || name_len >= sizeof out->name) return -1;
    if (memchr(f[5], 0, fl[5]) || memchr(f[6], 0, fl[6])) return -1;
    memcpy(out->name, name, name_len + 1);
    out->uid = uid;
    out->gid = gid;
    if (fl[5]) memcpy(out->home, f[5], fl[5]);
    else out->home[0] = '/', fl[5] = 1;
    out->home[fl[5]] = '\0';
    if (fl[6]) memcpy(out->shell, f[6], fl[6]);
    else memcpy(out->shell, "/bin/sh", 7), fl[6] = 7;
    out->shell[fl[6]] = '\0';
    return 0;
  }
  return -1;
}

static int add_gid(gid_t *gids, size_t *n, size_t cap, gid_t g) {
  for (size_t i = 0; i < *n; i++) {
    if (gids[i] == g) return 0;
  }
  if (*n == cap) return -1;
  gids[(*n)++] = g;
  return 0;
}

size_t parse_groups(const char *text, size_t len, const struct qube_user *u, gid_t *gids, size_t cap) {
  size_t count = 0;
  if (cap == 0) return 0;
  gids[count++] = u->gid;
  size_t name_len = strlen(u->name);
  size_t pos = 0;
  while (pos < len) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - text) : len;
    const char *l = text + pos;
    size_t n = end - pos;
    pos = end + 1;
    const char *f[4];
    size_t fl[4];
    uint32_t gid;
    if (split_fields(l, n, f, fl, 4) < 4 || parse_id(f[2], fl[2], &gid)) continue;
    /* The member list is the fourth field only (split(':')[3]). */
    const char *m = f[3];
    size_t mlen = fl[3];
    size_t start = 0;
    for (size_t i = 0; i <= mlen; i++) {
      if (i == mlen || m[i] == ',') {
        if (i - start == name_len && memcmp(m + start, u->name, name_len) == 0) {
          if (add_gid(gids, &count, cap, (gid_t)gid) != 0) return count;
          break;
        }
        start = i + 1;
      }
    }
  }
  return count;
}

static char *read_db(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return NULL;
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    if (n == cap) {
      if (cap >= MAX_DB_SIZE) break;
      char *bigger = realloc(buf, cap * 2);
      if (!bigger) break;
      buf = bigger;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (r == 0) {
      close(fd);
      *len = n;
      return buf;
    }
    n += (size_t)r;
  }
  free(buf);
  close(fd);
  return NULL;
}

int lookup_user(const char *passwd_path, const char *name, struct qube_user *out) {
  size_t len;
  char *text = read_db(passwd_path, &len);
  if (!text) return -1;
  int r = parse_passwd(text, len, name, out);
  free(text);
  return r;
}

size_t user_groups(const char *group_path, const struct qube_user *u, gid_t *gids, size_t cap) {
  size_t len;
  char *text = read_db(group_path, &len);
  if (!text) {
    if (cap == 0) return 0;
    gids[0] = u->gid;
    return 1;
  }
  size_t n = parse_groups(text, len, u, gids, cap);
  free(text);
  return n;
}
