/* Qubes services inside a qube: `QUBESRPC SERVICE+ARG SOURCE` becomes an executable or a unix socket
 * found in the service path, with its rpc-config (`force-user`) read fail-closed (as services.ts did). */
#ifndef ISOLA_AGENT_SERVICES_H
#define ISOLA_AGENT_SERVICES_H

#include <stddef.h>

#define MAX_SEARCH_DIRS 16
#define MAX_PATH_LEN 4096

struct service_request {
  char service[256];
  char argument[256];
  char source[32];
};

#define SERVICE_MALFORMED (-1) /* not three fields `QUBESRPC SERVICE+ARG SOURCE` */
#define SERVICE_INVALID (-2)   /* a name outside its charset */
/* Pure: 0, SERVICE_MALFORMED or SERVICE_INVALID. */
int parse_service_request(const char *cmd, size_t len, struct service_request *out);

/* Pure: the `force-user` of an rpc-config file's text. Returns 0 (force_user "" when absent) or -1
 * with err ("cannot parse line ..." / "force-user is not a valid user name"). */
int parse_rpc_config(const char *text, size_t len, char *force_user, size_t fu_len, char *err, size_t errlen);

struct search_path {
  size_t n;
  char dirs[MAX_SEARCH_DIRS][MAX_PATH_LEN];
};
void search_path_init(struct search_path *p, const char *env_value, const char *const *defaults);

/* FOUND_TCP: Qubes' TCP service, a symlink to /dev/tcp/IPV4/PORT; find_service leaves the link's
 * target in path (qubes.UpdatesProxy in a netvm is one, to tinyproxy's 127.0.0.1:8082). */
enum found_kind { FOUND_NONE, FOUND_PROGRAM, FOUND_SOCKET, FOUND_TCP };
struct sockaddr_in;
/* Pure: 0 and the address for exactly `/dev/tcp/A.B.C.D/PORT` (PORT 1..65535, decimal), else -1. */
int parse_dev_tcp(const char *target, struct sockaddr_in *out);
enum found_kind find_service(const struct search_path *p, const struct service_request *r, char *path, size_t pathlen);
/* The first config file of the service (SERVICE+ARG before SERVICE, per directory): 0 or -1 with err. */
int service_config(const struct search_path *p, const struct service_request *r, char *force_user, size_t fu_len, char *err, size_t errlen);

#endif
