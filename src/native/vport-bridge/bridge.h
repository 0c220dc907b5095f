/* isola-vport-bridge: the guest's end of an hvm qube's agent channel. Each virtio-serial port is one mux stream
 * (docs/agent-protocol.md, "Channels over one byte stream"); each connection to the port's guest unix socket is
 * one channel of it. One process, one poll() loop, fixed buffers: a slow side stalls only its own channel. */
#ifndef ISOLA_VPORT_BRIDGE_H
#define ISOLA_VPORT_BRIDGE_H

#include "../mux/mux.h"

#include <stdint.h>
#include <sys/types.h>

/* Frames for the host wait here; channels are read into it only while a whole DATA frame and the control
 * messages the round may cause still fit, so it never grows and a host that does not read stalls us whole. */
#define OUT_CAP (512u * 1024u)
#define CTRL_ROOM 64u
#define IN_CAP (64u * 1024u)
#define RETRY_MS 100
#define TICK_MS 1000

struct chan {
	int used;
	int fd;              /* the guest connection, -1 once it is gone */
	uint32_t id;         /* mux channel, 0 once the mux forgot it (the host closed it, or it was dropped) */
	uint8_t *ring;       /* host bytes for the guest connection: at most a window, by the mux's accounting */
	uint32_t rhead, rlen;
	uint8_t guest_eof, eof_sent, host_eof, shut_wr, hup, dead;
};

struct port {
	const char *what;        /* "agent" or "client", for log lines */
	const char *name;        /* virtio-serial port name, or NULL with serial */
	const char *serial;      /* tests: a unix socket standing in for the port */
	const char *sock_path;   /* the guest socket */
	mode_t sock_mode;
	int fd, listen_fd;
	int live;                /* the host end answered since the last reset */
	int64_t retry_at;        /* while the host is away: when to look again */
	int64_t next_tick;
	unsigned rr;             /* round-robin start among channels */
	struct mux m;
	uint8_t out[OUT_CAP];
	size_t ostart, oend;
	uint8_t in[IN_CAP];
	struct chan ch[MUX_MAX_CHANNELS];
};

/* port.c: the port device or its stand-in */
void port_open(struct port *p, int64_t now);
void port_lost(struct port *p, int64_t now, const char *why);
void port_random(uint8_t *out, void *ctx);

/* relay.c: channels and the mux */
void relay_init(struct port *p);
void relay_drop_all(struct port *p);
size_t out_room(const struct port *p);
void relay_feed(struct port *p, const uint8_t *buf, size_t n);
void relay_accept(struct port *p);
void relay_chan_io(struct port *p, struct chan *c, short revents);
void relay_service(struct port *p);
short relay_chan_events(const struct port *p, const struct chan *c, int *include);
void relay_flush(struct port *p, int64_t now);

/* log.c */
void bridge_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t now_ms(void);

#endif
