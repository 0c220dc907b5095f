/* Users of the qube from its own /etc/passwd and /etc/group, read at every call (users added inside
 * the qube count at once). Parsers are pure over the file's bytes; lookups read the files. */
#ifndef ISOLA_AGENT_USERS_H
#define ISOLA_AGENT_USERS_H

#include <stddef.h>
#include <sys/types.h>

#define MAX_GROUPS 1024

struct qube_user {
  char name[40];
  uid_t uid;
  gid_t gid;
  char home[1024];
  char shell[1024];
};

int parse_passwd(const char *text, size_t len, const char *name, struct qube_user *out);
/* The primary group plus every group whose member list names the user; returns the count. */
size_t parse_groups(const char *text, size_t len, const struct qube_user *u, gid_t *gids, size_t cap);

int lookup_user(const char *passwd_path, const char *name, struct qube_user *out);
size_t user_groups(const char *group_path, const struct qube_user *u, gid_t *gids, size_t cap);

#endif
