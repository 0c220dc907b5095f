/* Service lookup for isola-agent, rule for rule as src/agent/services.ts had it: names checked against
 * charsets, SERVICE+ARG preferred to SERVICE in each directory, sockets are socket services, only
 * executable regular files run, and a config that cannot be read as expected refuses the call. */
#include "services.h"
#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CONFIG_SIZE (256 * 1024)

static int in_set(char c, const char *extra) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return 1;
  return c != '\0' && strchr(extra, c) != NULL;
}

static int all_in_set(const char *s, size_t n, const char *extra) {
  for (size_t i = 0; i < n; i++) {
    if (!in_set(s[i], extra)) return 0;
  }
  return 1;
}

/* Qube names: [A-Za-z][A-Za-z0-9_.-]{0,30} */
static int is_qube_name(const char *s, size_t n) {
  if (n < 1 || n > 31) return 0;
  if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z'))) return 0;
  return all_in_set(s + 1, n - 1, "_.-");
}

int parse_service_request(const char *cmd, size_t len, struct service_request *out) {
  /* Exactly three fields separated by single spaces, as split(' ') with a length check. */
  const char *sp1 = memchr(cmd, ' ', len);
  if (!sp1 || (size_t)(sp1 - cmd) != 8 || memcmp(cmd, "QUBESRPC", 8) != 0) return SERVICE_MALFORMED;
  const char *full = sp1 + 1;
  size_t rest = len - 9;
  const char *sp2 = memchr(full, ' ', rest);
  if (!sp2) return SERVICE_MALFORMED;
  size_t full_len = (size_t)(sp2 - full);
  const char *source = sp2 + 1;
  size_t source_len = rest - full_len - 1;
  if (memchr(source, ' ', source_len)) return SERVICE_MALFORMED;
  const char *plus = memchr(full, '+', full_len);
  size_t slen = plus ? (size_t)(plus - full) : full_len;
  size_t alen = plus ? full_len - slen - 1 : 0;
  if (slen < 1 || slen > 255 || !all_in_set(full, slen, "._-")) return SERVICE_INVALID;
  if (alen > 255 || (alen && !all_in_set(plus + 1, alen, "._+-"))) return SERVICE_INVALID;
  if (!is_qube_name(source, source_len)) return SERVICE_INVALID;
  memcpy(out->service, full, slen);
  out->service[slen] = '\0';
  if (alen) memcpy(out->argument, plus + 1, alen);
  out->argument[alen] = '\0';
  memcpy(out->source, source, source_len);
  out->source[source_len] = '\0';
  return 0;
}

static int is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int key_char(char c) {
  return in_set(c, "_-");
}

/* One line, already trimmed and not a comment: KEY\s*=\s*('V'|"V"|BARE)\s*(#.*)?  */
static int parse_line(const char *l, size_t n, const char **key, size_t *klen, const char **val, size_t *vlen) {
  size_t i = 0;
  while (i < n && key_char(l[i])) i++;
  if (i == 0) return -1;
  *key = l;
  *klen = i;
  while (i < n && is_space(l[i])) i++;
  if (i == n || l[i] != '=') return -1;
  i++;
  while (i < n && is_space(l[i])) i++;
  if (i == n) return -1;
  if (l[i] == '\'' || l[i] == '"') {
    char q = l[i++];
    size_t start = i;
    while (i < n && l[i] != q) i++;
    if (i == n) return -1;
    *val = l + start;
    *vlen = i - start;
    i++;
  } else {
    size_t start = i;
    while (i < n && !is_space(l[i]) && l[i] != '\'' && l[i] != '"' && l[i] != '#') i++;
    if (i == start) return -1;
    *val = l + start;
    *vlen = i - start;
  }
  while (i < n && is_space(l[i])) i++;
  if (i < n && l[i] != '#') return -1;
  return 0;
}

int parse_rpc_config(const char *text, size_t len, char *force_user, size_t fu_len, char *err, size_t errlen) {
  force_user[0] = '\0';
  size_t pos = 0;
  while (pos <= len) {
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - text) : len;
    const char *l = text + pos;
    size_t n = end - pos;
    pos = end + 1;
    while (n && is_space(*l)) l++, n--;
    while (n && is_space(l[n - 1])) n--;
    if (n == 0 || l[0] == '#') {
      if (!nl) break;
      continue;
    }
    const char *key, *val;
    size_t klen, vlen;
    if (parse_line(l, n, &key, &klen, &val, &vlen) != 0) {
      snprintf(err, errlen, "cannot parse line '%.*s'", (int)(n > 60 ? 60 : n), l);
      return -1;
    }
    if (klen == 10 && memcmp(key, "force-user", 10) == 0) {
      if (!is_login_name(val, vlen, 0) || vlen >= fu_len) {
        snprintf(err, errlen, "force-user is not a valid user name");
        return -1;
      }
      memcpy(force_user, val, vlen);
      force_user[vlen] = '\0';
    }
    if (!nl) break;
  }
  return 0;
}

void search_path_init(struct search_path *p, const char *env_value, const char *const *defaults) {
  p->n = 0;
  if (env_value && *env_value) {
    const char *s = env_value;
    while (*s && p->n < MAX_SEARCH_DIRS) {
      const char *c = strchr(s, ':');
      size_t n = c ? (size_t)(c - s) : strlen(s);
      if (n > 0 && n < MAX_PATH_LEN) {
        memcpy(p->dirs[p->n], s, n);
        p->dirs[p->n++][n] = '\0';
      }
      if (!c) break;
      s = c + 1;
    }
    return;
  }
  for (; defaults[p->n] && p->n < MAX_SEARCH_DIRS; p->n++) snprintf(p->dirs[p->n], MAX_PATH_LEN, "%s", defaults[p->n]);
}

int parse_dev_tcp(const char *target, struct sockaddr_in *out) {
  static const char prefix[] = "/dev/tcp/";
  if (strncmp(target, prefix, sizeof prefix - 1) != 0) return -1;
  const char *host = target + sizeof prefix - 1;
  const char *slash = strchr(host, '/');
  if (!slash || slash == host || (size_t)(slash - host) > 15) return -1;
  char ip[16];
  memcpy(ip, host, (size_t)(slash - host));
  ip[slash - host] = '\0';
  const char *port = slash + 1;
  size_t plen = strlen(port);
  if (plen < 1 || plen > 5 || strspn(port, "0123456789") != plen || port[0] == '0') return -1;
  unsigned long p = strtoul(port, NULL, 10);
  memset(out, 0, sizeof *out);
  /* inet_pton takes only the dotted quad (no 127.1, octal or hex forms) */
  if (p > 65535 || inet_pton(AF_INET, ip, &out->sin_addr) != 1) return -1;
  out->sin_family = AF_INET;
  out->sin_port = htons((uint16_t)p);
  return 0;
}

/* A symlink to /dev/tcp/...: FOUND_TCP with the target in path; a broken one is no service. */
static enum found_kind tcp_link(char *path, size_t pathlen) {
  char target[64];
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n <= 0 || (size_t)n >= pathlen) return FOUND_NONE;
  target[n] = '\0';
  struct sockaddr_in sa;
  if (parse_dev_tcp(target, &sa) != 0) return FOUND_NONE;
  memcpy(path, target, (size_t)n + 1);
  return FOUND_TCP;
}

static enum found_kind usable(char *path, size_t pathlen) {
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
    char target[16];
    ssize_t n = readlink(path, target, sizeof target);
    if (n >= 9 && memcmp(target, "/dev/tcp/", 9) == 0) return tcp_link(path, pathlen);
  }
  if (stat(path, &st) != 0) return FOUND_NONE;
  if (S_ISSOCK(st.st_mode)) return FOUND_SOCKET;
  if (access(path, X_OK) != 0) return FOUND_NONE;
  return S_ISREG(st.st_mode) ? FOUND_PROGRAM : FOUND_NONE;
}

enum found_kind find_service(const struct search_path *p, const struct service_request *r, char *path, size_t pathlen) {
  for (size_t i = 0; i < p->n; i++) {
    int len;
    if (r->argument[0]) {
      len = snprintf(path, pathlen, "%s/%s+%s", p->dirs[i], r->service, r->argument);
      if (len > 0 && (size_t)len < pathlen) {
        enum found_kind k = usable(path, pathlen);
        if (k != FOUND_NONE) return k;
      }
    }
    len = snprintf(path, pathlen, "%s/%s", p->dirs[i], r->service);
    if (len > 0 && (size_t)len < pathlen) {
      enum found_kind k = usable(path, pathlen);
      if (k != FOUND_NONE) return k;
    }
  }
  return FOUND_NONE;
}

/* 1 read, 0 no such file (or not a file we can read: the next candidate counts), -1 too large. */
static int read_small_file(const char *path, char *buf, size_t cap, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return 0;
  size_t n = 0;
  for (;;) {
    if (n == cap) {
      close(fd);
      return -1;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      close(fd);
      return 0;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  *len = n;
  return 1;
}

int service_config(const struct search_path *p, const struct service_request *r, char *force_user, size_t fu_len, char *err, size_t errlen) {
  static char text[MAX_CONFIG_SIZE];
  char path[MAX_PATH_LEN + 600];
  force_user[0] = '\0';
  for (size_t i = 0; i < p->n; i++) {
    for (int with_arg = r->argument[0] ? 1 : 0; with_arg >= 0; with_arg--) {
      if (with_arg) snprintf(path, sizeof path, "%s/%s+%s", p->dirs[i], r->service, r->argument);
      else snprintf(path, sizeof path, "%s/%s", p->dirs[i], r->service);
      size_t len = 0;
      int got = read_small_file(path, text, sizeof text, &len);
      if (got == 0) continue;
      if (got < 0) {
        snprintf(err, errlen, "%s: larger than %d bytes", path, MAX_CONFIG_SIZE);
        return -1;
      }
      char why[200];
      if (parse_rpc_config(text, len, force_user, fu_len, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        return -1;
      }
      return 0;
    }
  }
  return 0;
}
