/* The control connection: connect, HELLO, then isolad's requests; reconnect forever every 100-200 ms
 * (jittered, so many qubes don't stampede a restarted isolad), logging once per state change. */
#include "agent.h"
#include "clock.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum { LINK_NEVER, LINK_UP, LINK_DOWN } link_state = LINK_NEVER;
static struct conn *control;
static int64_t reconnect_at; /* 0: at once */

int64_t control_next_timer(void) {
  if (control || shutting_down) return -1;
  return reconnect_at;
}

void control_tick(int64_t now) {
  if (control || shutting_down || now < reconnect_at) return;
  char why[64];
  control = conn_open(CONN_CONTROL, why, sizeof why);
  if (!control) control_on_close(NULL, why);
}

void control_on_hello(struct conn *c, const struct hello *h) {
  (void)c;
  if (link_state != LINK_UP) agent_log("connected to isolad at %s (peer %s)", cfg.socket_path, h->ident[0] ? h->ident : "unnamed");
  link_state = LINK_UP;
}

void control_on_close(struct conn *c, const char *reason) {
  if (c && c != control) return;
  control = NULL;
  if (link_state == LINK_UP) agent_log("control connection lost (%s); reconnecting", reason ? reason : "closed by isolad");
  else if (link_state == LINK_NEVER) agent_log("waiting for isolad at %s (%s)", cfg.socket_path, reason ? reason : "closed");
  link_state = LINK_DOWN;
  reconnect_at = now_ms() + 100 + random() % 100;
}

static void protocol_error(struct conn *c, const char *what) {
  char reason[300];
  snprintf(reason, sizeof reason, "protocol error: %s", what);
  agent_log("control: %s; connection dropped", reason);
  conn_drop(c, reason);
}

static void on_exec(struct conn *c) {
  struct exec_params p;
  struct cmdline cl;
  char err[200];
  if (parse_exec_params(c->dec.payload, c->dec.len, &p, err, sizeof err) != 0) {
    protocol_error(c, err);
    return;
  }
  if (p.connect_domain != 0) {
    snprintf(err, sizeof err, "connect_domain %u (only 0, isolad, is valid)", p.connect_domain);
    protocol_error(c, err);
    return;
  }
  if (parse_cmdline(p.cmdline, p.cmdline_len, &cl, err, sizeof err) != 0) {
    protocol_error(c, err);
    return;
  }
  const char *user = strcmp(cl.user, "DEFAULT") == 0 ? cfg.default_user : cl.user;
  if (shutting_down) agent_log("request %u ignored: shutting down", p.connect_port);
  else if (c->dec.type == MSG_JUST_EXEC) just_exec(user, cl.command);
  else data_request(p.connect_port, user, cl.command, cl.command_len);
}

void control_on_frame(struct conn *c) {
  char name[64];
  switch (c->dec.type) {
    case MSG_EXEC_CMDLINE:
    case MSG_JUST_EXEC:
      on_exec(c);
      return;
    case MSG_SHUTDOWN:
      start_shutdown(get_u32(c->dec.payload), "MSG_SHUTDOWN from isolad");
      return;
    case MSG_PING:
      /* conn_wants_read left room for it */
      if (conn_queue(c, MSG_PONG, c->dec.payload, c->dec.len) == 0) conn_flush(c);
      return;
    case MSG_PONG:
      return;
    case MSG_SERVICE_CONNECT:
    case MSG_SERVICE_REFUSED:
      agent_log("%s ignored: qube-to-qube services are not served by this agent version", type_name(c->dec.type, name, sizeof name));
      return;
    default:
      protocol_error(c, "unexpected frame"); /* the decoder's accept set makes this unreachable */
  }
}
