/* How the agent starts a command: resolves `/bin/sh -c COMMAND` or a QUBESRPC service and the user,
 * then forks into a new session, switches groups, gid and uid (when root) and execs with a login-like
 * environment. A failure after the fork comes back through a close-on-exec pipe, never as a guess. */
#ifndef ISOLA_AGENT_SPAWN_H
#define ISOLA_AGENT_SPAWN_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>
#include "services.h"
#include "users.h"

#define EXIT_QREXEC_PROBLEM 125
#define EXIT_CANNOT_EXECUTE 126
#define EXIT_NOT_FOUND 127
#define SAFE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum launch_kind { LAUNCH_PROGRAM, LAUNCH_SOCKET, LAUNCH_TCP, LAUNCH_ERROR };

struct launch {
  enum launch_kind kind;
  int exit_code;        /* LAUNCH_ERROR */
  char error[MAX_PATH_LEN + 1024];
  char path[MAX_PATH_LEN]; /* the program, the service socket, or /dev/tcp/IPV4/PORT */
  char descriptor[600];  /* LAUNCH_SOCKET: `SERVICE+ARG SOURCE\0` */
  size_t descriptor_len;
  char *argv[4];
  char *envp[9];
  char env_store[8][MAX_PATH_LEN + 64];
  char argument[256];
  int switch_user;
  struct qube_user user;
  gid_t groups[MAX_GROUPS];
  size_t ngroups;
  char cwd[1024];
};

struct spawn_paths {
  struct search_path services;
  struct search_path configs;
  const char *passwd;
  const char *group;
};

/* Fills l for running `command` (NUL-terminated) as user_name. */
void prepare_launch(const struct spawn_paths *paths, const char *user_name, const char *command, struct launch *l);

struct child_stdio {
  int in, out, err; /* our ends, non-blocking; -1 for JUST_EXEC (all on /dev/null) */
};

/* Forks and execs l (LAUNCH_PROGRAM). Returns the pid (also the new process group), or -1 with err set
 * when nothing was started. A started child that could not exec sets err and exits 125 on its own. */
pid_t start_launch(struct launch *l, int with_stdio, struct child_stdio *io, char *err, size_t errlen);

/* The same with `sock` as the child's stdin and stdout (stderr on /dev/null); sock stays ours to close. */
pid_t start_launch_on_socket(struct launch *l, int sock, char *err, size_t errlen);

void spawn_set_child_nofile(rlim_t soft);

#endif
