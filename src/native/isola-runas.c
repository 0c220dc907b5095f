/* isola-runas: how the agent in a qube starts a command as another user of the qube.
 * Usage: isola-runas UID GID GROUPS PROGRAM [ARG...]   (GROUPS: comma-separated gids, may be empty)
 * Node's spawn({uid, gid}) drops every supplementary group and cannot set them, and setpriv
 * --init-groups costs over a millisecond per call (dynamic linking, NSS); this static binary sets
 * the groups the agent read from /etc/group, then the gid and uid, and execs PROGRAM (absolute path). */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_GROUPS 256

static int parse_id(const char *s, unsigned long *out) {
  char *end;
  if (*s < '0' || *s > '9') return -1;
  errno = 0;
  *out = strtoul(s, &end, 10);
  if (errno || *end || *out >= 0xffffffffUL) return -1;
  return 0;
}

int main(int argc, char **argv) {
  unsigned long uid, gid, g;
  gid_t groups[MAX_GROUPS];
  size_t n = 0;
  if (argc < 5 || parse_id(argv[1], &uid) || parse_id(argv[2], &gid) || argv[4][0] != '/') {
    fprintf(stderr, "usage: isola-runas UID GID GROUPS /PROGRAM [ARG...]\n");
    return 125;
  }
  for (char *tok = strtok(argv[3], ","); tok; tok = strtok(NULL, ",")) {
    if (n == MAX_GROUPS || parse_id(tok, &g)) {
      fprintf(stderr, "isola-runas: bad group list\n");
      return 125;
    }
    groups[n++] = (gid_t)g;
  }
  if (setgroups(n, groups) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid)) {
    fprintf(stderr, "isola-runas: cannot become %lu:%lu: %s\n", uid, gid, strerror(errno));
    return 125;
  }
  execv(argv[4], argv + 4);
  fprintf(stderr, "isola-runas: %s: %s\n", argv[4], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}
