/* isola-agent's connections and shared state: one control connection to isolad (reconnected forever)
 * and one data connection per command, all driven by one poll() loop in a single thread. */
#ifndef ISOLA_AGENT_AGENT_H
#define ISOLA_AGENT_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "proto.h"
#include "spawn.h"

#define AGENT_VERSION "0.2.0"
#define AGENT_IDENT "isola-agent/" AGENT_VERSION " c"
#define HELLO_TIMEOUT_MS 10000
#define LINGER_MS 10000
#define MAX_CONNS 513 /* isolad takes 512 on the agent socket; one is the control connection */
/* A frame of output, and room behind it for the small ones (EOF markers, exit code, an error line). */
#define OUT_CAP (HEADER_SIZE + MAX_PAYLOAD + 8192)

enum conn_kind { CONN_CONTROL, CONN_DATA };

struct conn {
  enum conn_kind kind;
  int fd;
  int connecting;
  int hello_seen;
  int lingering;  /* our last frame is out: read and drop what the peer still sends, until it closes */
  int shut_after_flush;
  int dead;
  int64_t deadline; /* for the peer's HELLO, or the end of lingering; 0: none */
  size_t out_off, out_len;
  /* data connections */
  uint32_t request_id;
  char user[MAX_USER_NAME + 1];
  char *command;
  int started;
  int socket_service;
  int service_errno; /* a socket service's error met on a write (then its read sees only EOF) */
  int shut_wr_pending; /* the caller's EOF came while a TCP service's connect was still in progress */
  int in_fd, out_fd, err_fd; /* child's stdin, stdout, stderr (or the service socket twice) */
  int stdin_pending;         /* a STDIN frame in dec.payload, written up to stdin_off */
  size_t stdin_off;
  pid_t pid;
  int exited;
  int exit_code;
  int forced_code; /* -1, or the code to report whatever the process says (it could not exec) */
  int exit_sent;
  struct decoder dec;
  uint8_t out[OUT_CAP];
};

struct agent_config {
  const char *socket_path;
  const char *default_user;
  unsigned shutdown_timeout;
  int kill_all;
  int poweroff; /* PID 1 of a VM: power off instead of exiting */
  struct spawn_paths paths;
};

extern struct agent_config cfg;
extern struct conn *conns[MAX_CONNS];
extern size_t nconns;
extern int shutting_down;

/* conn.c */
struct conn *conn_open(enum conn_kind kind, char *why, size_t whylen);
int conn_queue(struct conn *c, uint32_t type, const void *payload, size_t len);
void conn_flush(struct conn *c);
void conn_drop(struct conn *c, const char *reason);
void conn_on_readable(struct conn *c);
void conn_free_dead(void);
void conn_timeout(struct conn *c);
int conn_wants_read(const struct conn *c);
int unix_connect(const char *path, int *in_progress);
const char *errno_name(int e);

/* control.c */
void control_tick(int64_t now);
int64_t control_next_timer(void);
void control_on_frame(struct conn *c);
void control_on_hello(struct conn *c, const struct hello *h);
void control_on_close(struct conn *c, const char *reason);

/* data.c */
void data_request(uint32_t request_id, const char *user, const char *command, size_t command_len);
void data_on_frame(struct conn *c);
void data_on_close(struct conn *c, const char *reason);
void data_start(struct conn *c);
void data_progress(struct conn *c);
void data_on_stdin_writable(struct conn *c);
void data_on_output(struct conn *c, int which);
void just_exec(const char *user, const char *command);
void data_child_exited(pid_t pid, int status);

/* shutdown.c */
void track_group(pid_t pgid);
void start_shutdown(unsigned timeout_sec, const char *why);
void shutdown_tick(int64_t now);
int64_t shutdown_next_timer(void);

/* updates.c */
int service_enabled(const char *list, const char *name);
void updates_init(const char *services);
int updates_listen_fd(void);
void updates_on_accept(void);
int updates_child_exited(pid_t pid, int status);
void updates_tick(int64_t now);
int64_t updates_next_timer(void);
void ensure_apt_proxy_conf(int enabled, const char *file);

/* setup.c */
void install_tool_wrappers(const char *lib_dir, const char *bin_dir);
void ensure_hosts_entry(const char *name, const char *file);
void ensure_resolv_conf(const char *servers, const char *file);
int with_hosts_entry(const char *hosts, size_t len, const char *name, char *out, size_t cap, size_t *out_len);

#endif
