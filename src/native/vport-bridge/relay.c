/* Channels: guest connections relayed to and from mux channels. Host bytes for a connection wait in its ring
 * (at most a window: the host may not send more than we granted, and we grant only what the connection took);
 * guest bytes are read only while the channel has credit and the port's output has room for the frame. */
#define _GNU_SOURCE
#include "bridge.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void relay_init(struct port *p)
{
	mux_init(&p->m, MUX_ROLE_OPEN, port_random, NULL);
	for (size_t i = 0; i < MUX_MAX_CHANNELS; i++) p->ch[i].fd = -1;
}

size_t out_room(const struct port *p)
{
	return OUT_CAP - p->oend;
}

static void out_put(struct port *p, const uint8_t *b, size_t n)
{
	memcpy(p->out + p->oend, b, n); /* callers checked out_room() first */
	p->oend += n;
}

static void chan_free(struct chan *c)
{
	if (c->fd >= 0) close(c->fd);
	free(c->ring);
	memset(c, 0, sizeof *c);
	c->fd = -1;
}

void relay_drop_all(struct port *p)
{
	for (size_t i = 0; i < MUX_MAX_CHANNELS; i++)
		if (p->ch[i].used) chan_free(&p->ch[i]);
}

static struct chan *chan_of(struct port *p, uint32_t id)
{
	if (id == 0) return NULL;
	for (size_t i = 0; i < MUX_MAX_CHANNELS; i++)
		if (p->ch[i].used && p->ch[i].id == id) return &p->ch[i];
	return NULL;
}

/* The guest connection is gone: its fd now, its CLOSE once there is room (relay_service). */
static void chan_dead(struct chan *c)
{
	if (c->fd >= 0) close(c->fd);
	c->fd = -1;
	c->dead = 1;
	c->rlen = 0;
}

static void on_event(struct port *p, const struct mux_event *ev)
{
	struct chan *c = chan_of(p, ev->channel);
	switch (ev->kind) {
	case MUX_EV_NONE: case MUX_EV_CREDIT: case MUX_EV_OPEN:
		break;
	case MUX_EV_UP:
		p->live = 1;
		bridge_log("%s port: the host is up", p->what);
		break;
	case MUX_EV_RESET:
		if (ev->reason) bridge_log("%s port: %s; stream reset, every channel dropped", p->what, ev->reason);
		relay_drop_all(p);
		break;
	case MUX_EV_DATA:
		if (!c || c->dead) break; /* the mux accepted it, so its window allows it; nobody reads it any more */
		if (!c->ring && !(c->ring = malloc(MUX_WINDOW))) {
			bridge_log("%s port: out of memory; channel %u dropped", p->what, ev->channel);
			chan_dead(c);
			break;
		}
		for (size_t done = 0; done < ev->len;) {
			/* rlen + len <= MUX_WINDOW: the mux checked the DATA against what we granted. */
			uint32_t at = (c->rhead + c->rlen) % MUX_WINDOW;
			size_t n = MUX_WINDOW - at;
			if (n > ev->len - done) n = ev->len - done;
			if (c->rlen + n > MUX_WINDOW) break;
			memcpy(c->ring + at, ev->data + done, n);
			c->rlen += (uint32_t)n;
			done += n;
		}
		break;
	case MUX_EV_EOF:
		if (c) c->host_eof = 1;
		break;
	case MUX_EV_CLOSED:
		/* What the host sent is still delivered; what the guest would send goes nowhere. */
		if (c) c->id = 0, c->host_eof = 1;
		break;
	case MUX_EV_DROPPED:
		bridge_log("%s port: channel %u: %s; dropped", p->what, ev->channel, ev->reason ? ev->reason : "?");
		if (c) c->id = 0, chan_dead(c);
		break;
	case MUX_EV_IGNORED:
		bridge_log("%s port: channel %u: %s; ignored", p->what, ev->channel, ev->reason ? ev->reason : "?");
		break;
	}
}

void relay_feed(struct port *p, const uint8_t *buf, size_t n)
{
	size_t off = 0;
	struct mux_event ev;
	do {
		off += mux_feed(&p->m, buf + off, n - off, &ev);
		on_event(p, &ev);
	} while (off < n || ev.kind != MUX_EV_NONE);
}

void relay_accept(struct port *p)
{
	struct chan *c = NULL;
	for (size_t i = 0; i < MUX_MAX_CHANNELS && !c; i++)
		if (!p->ch[i].used) c = &p->ch[i];
	if (!c || out_room(p) < CTRL_ROOM) return;
	int fd = accept4(p->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) return;
	uint8_t hdr[MUX_HEADER_SIZE];
	uint32_t id = mux_open(&p->m, hdr);
	if (id == 0) { /* not up (any more), or at the cap: the caller sees its connection closed */
		close(fd);
		return;
	}
	out_put(p, hdr, sizeof hdr);
	memset(c, 0, sizeof *c);
	c->used = 1;
	c->fd = fd;
	c->id = id;
}

/* How many guest bytes channel c may have read now (0: not now). */
static size_t readable(const struct port *p, const struct chan *c)
{
	if (c->dead || c->fd < 0 || c->id == 0 || c->guest_eof) return 0;
	size_t n = mux_credit(&p->m, c->id);
	if (n > MUX_MAX_DATA) n = MUX_MAX_DATA;
	size_t room = out_room(p);
	if (room < MUX_HEADER_SIZE + CTRL_ROOM) return 0;
	if (n > room - MUX_HEADER_SIZE - CTRL_ROOM) n = room - MUX_HEADER_SIZE - CTRL_ROOM;
	return n;
}

short relay_chan_events(const struct port *p, const struct chan *c, int *include)
{
	short ev = 0;
	*include = 0;
	if (!c->used || c->fd < 0) return 0;
	if (readable(p, c) > 0) ev |= POLLIN;
	if (c->rlen > 0 && (c->id == 0 || out_room(p) >= CTRL_ROOM)) ev |= POLLOUT;
	/* With nothing asked, only a hangup is reported; once seen, it would be reported at every poll. */
	*include = ev != 0 || !c->hup;
	return ev;
}

static void guest_write(struct port *p, struct chan *c)
{
	if (c->rlen == 0 || (c->id != 0 && out_room(p) < CTRL_ROOM)) return;
	size_t n = MUX_WINDOW - c->rhead;
	if (n > c->rlen) n = c->rlen;
	ssize_t w = send(c->fd, c->ring + c->rhead, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR) chan_dead(c);
		return;
	}
	c->rhead = (c->rhead + (uint32_t)w) % MUX_WINDOW;
	c->rlen -= (uint32_t)w;
	if (c->rlen == 0) c->rhead = 0;
	uint8_t win[MUX_HEADER_SIZE + 4];
	size_t k = c->id ? mux_consumed(&p->m, c->id, (uint32_t)w, win) : 0;
	if (k) out_put(p, win, k);
}

static void guest_read(struct port *p, struct chan *c)
{
	size_t n = readable(p, c);
	if (n == 0) return;
	uint8_t *dst = p->out + p->oend + MUX_HEADER_SIZE;
	ssize_t r = recv(c->fd, dst, n, MSG_DONTWAIT);
	if (r < 0) {
		if (errno != EAGAIN && errno != EINTR) chan_dead(c);
		return;
	}
	if (r == 0) {
		c->guest_eof = 1;
		return;
	}
	if (mux_data_header(&p->m, c->id, (uint32_t)r, p->out + p->oend) != 0) return; /* cannot happen: r <= credit */
	p->oend += MUX_HEADER_SIZE + (size_t)r;
}

void relay_chan_io(struct port *p, struct chan *c, short revents)
{
	if (c->fd < 0) return;
	if (revents & (POLLOUT | POLLERR)) guest_write(p, c);
	if (c->fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR))) guest_read(p, c);
	if (c->fd >= 0 && (revents & (POLLHUP | POLLERR))) c->hup = 1;
}

/* What each channel owes the host or the guest once there is room: EOF, shutdown, CLOSE, freeing. */
void relay_service(struct port *p)
{
	uint8_t hdr[MUX_HEADER_SIZE];
	for (size_t i = 0; i < MUX_MAX_CHANNELS; i++) {
		struct chan *c = &p->ch[i];
		if (!c->used) continue;
		/* Hung up and read to its end: the guest closed its connection entirely. */
		if (c->hup && c->guest_eof && !c->dead) chan_dead(c);
		if (c->hup && c->id == 0 && !c->dead) chan_dead(c);
		if (out_room(p) < CTRL_ROOM) continue;
		if (c->guest_eof && !c->eof_sent && !c->dead && c->id) {
			out_put(p, hdr, mux_eof(&p->m, c->id, hdr));
			c->eof_sent = 1;
		}
		if (c->fd >= 0 && c->host_eof && c->rlen == 0 && !c->shut_wr) {
			shutdown(c->fd, SHUT_WR);
			c->shut_wr = 1;
		}
		int done = c->dead || (c->rlen == 0 && c->host_eof && (c->id == 0 || c->eof_sent));
		if (!done) continue;
		if (c->id) out_put(p, hdr, mux_close(&p->m, c->id, hdr));
		chan_free(c);
	}
}

/* Control messages the mux owes (RESET answers, CLOSEs), then as much output as the port takes. */
void relay_flush(struct port *p, int64_t now)
{
	if (now >= p->next_tick) {
		mux_tick(&p->m);
		p->next_tick = now + TICK_MS;
	}
	p->oend += mux_take_output(&p->m, p->out + p->oend, out_room(p));
	if (p->fd < 0 || p->ostart == p->oend || now < p->retry_at) return;
	ssize_t w = write(p->fd, p->out + p->ostart, p->oend - p->ostart);
	if (w > 0) p->ostart += (size_t)w, p->live = 1;
	if (p->ostart == p->oend) p->ostart = p->oend = 0;
	else if (p->ostart >= OUT_CAP / 2 || out_room(p) < MUX_HEADER_SIZE + MUX_MAX_DATA + CTRL_ROOM) {
		memmove(p->out, p->out + p->ostart, p->oend - p->ostart);
		p->oend -= p->ostart;
		p->ostart = 0;
	}
}
