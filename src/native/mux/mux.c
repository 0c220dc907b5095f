/* The channel layer's state machine (mux.h): the same format and rules as src/qrexec/mux-codec.ts and mux.ts.
 * Every length is checked before it is used; payloads are bytes, never assumed to be text. */
#include "mux.h"

#include <string.h>

static const uint8_t MAGIC[8] = { 'I', 'S', 'O', 'L', 'A', 'M', 'U', 'X' };
#define SIG_LEN (MUX_HEADER_SIZE + 8u)

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

void mux_put_header(uint8_t out[MUX_HEADER_SIZE], uint32_t type, uint32_t channel, uint32_t len)
{
	put32(out, type);
	put32(out + 4, channel);
	put32(out + 8, len);
}

const char *mux_check_header(uint32_t type, uint32_t channel, uint32_t len)
{
	switch (type) {
	case MUX_T_RESET:
		if (channel != 0) return "RESET on a channel other than 0";
		return len == MUX_RESET_LEN ? NULL : "RESET of the wrong length";
	case MUX_T_OPEN: case MUX_T_EOF: case MUX_T_CLOSE:
		if (channel == 0) return "frame on channel 0 (reserved for RESET)";
		return len == 0 ? NULL : "OPEN, EOF or CLOSE with a payload";
	case MUX_T_WINDOW:
		if (channel == 0) return "frame on channel 0 (reserved for RESET)";
		return len == 4 ? NULL : "WINDOW of the wrong length";
	case MUX_T_DATA:
		if (channel == 0) return "frame on channel 0 (reserved for RESET)";
		return len >= 1 && len <= MUX_MAX_DATA ? NULL : "DATA longer than 65536 bytes or empty";
	default:
		return "unknown frame type";
	}
}

static struct mux_channel *find(struct mux *m, uint32_t id)
{
	if (id == 0) return NULL;
	for (size_t i = 0; i < MUX_MAX_CHANNELS; i++)
		if (m->ch[i].id == id) return &m->ch[i];
	return NULL;
}

static size_t open_count(const struct mux *m)
{
	size_t n = 0;
	for (size_t i = 0; i < MUX_MAX_CHANNELS; i++) n += m->ch[i].id != 0;
	return n;
}

static struct mux_channel *add(struct mux *m, uint32_t id)
{
	for (size_t i = 0; i < MUX_MAX_CHANNELS; i++) {
		struct mux_channel *c = &m->ch[i];
		if (c->id) continue;
		memset(c, 0, sizeof *c);
		c->id = id;
		c->send_credit = MUX_WINDOW;
		c->recv_outstanding = MUX_WINDOW;
		return c;
	}
	return NULL;
}

static void drop_all(struct mux *m)
{
	memset(m->ch, 0, sizeof m->ch);
	m->nowed = 0;
	m->highest_id = 0;
	m->data_to = NULL;
}

static void start_session(struct mux *m)
{
	drop_all(m);
	m->random(m->mine, m->random_ctx);
	m->have_peer = 0;
	m->up = 0;
	m->up_owed = 0;
	m->reset_owed = 1;
	m->hunting = 1;
	m->have = 0;
	m->left = 0;
}

void mux_init(struct mux *m, enum mux_role role, void (*random)(uint8_t *, void *), void *ctx)
{
	memset(m, 0, sizeof *m);
	m->role = role;
	m->random = random;
	m->random_ctx = ctx;
	start_session(m);
}

void mux_reset(struct mux *m)
{
	start_session(m);
}

void mux_tick(struct mux *m)
{
	if (!m->up) m->reset_owed = 1;
}

static void event(struct mux_event *ev, enum mux_event_kind kind, uint32_t channel, const char *reason)
{
	ev->kind = kind;
	ev->channel = channel;
	ev->data = NULL;
	ev->len = 0;
	ev->reason = reason;
}

/* What cannot be resynchronised: both sides start over; we hunt for the peer's next RESET. */
static void stream_error(struct mux *m, struct mux_event *ev, const char *reason)
{
	start_session(m);
	event(ev, MUX_EV_RESET, 0, reason);
}

static void owe_close(struct mux *m, struct mux_event *ev, uint32_t id, enum mux_event_kind kind, const char *reason)
{
	if (m->nowed == sizeof m->owed / sizeof m->owed[0]) {
		stream_error(m, ev, "too many CLOSEs owed to a peer that does not read");
		return;
	}
	m->owed[m->nowed++] = id;
	event(ev, kind, id, reason);
}

static void drop_channel(struct mux *m, struct mux_event *ev, struct mux_channel *c, const char *reason)
{
	uint32_t id = c->id;
	memset(c, 0, sizeof *c);
	owe_close(m, ev, id, MUX_EV_DROPPED, reason);
}

static void on_reset(struct mux *m, struct mux_event *ev)
{
	const uint8_t *p = m->hdr + MUX_HEADER_SIZE;
	if (memcmp(p, MAGIC, 8) != 0) { stream_error(m, ev, "RESET with a wrong magic"); return; }
	if (get32(p + 8) != MUX_VERSION) { stream_error(m, ev, "RESET of another version"); return; }
	uint32_t flags = get32(p + 12);
	const uint8_t *session = p + 16, *echo = p + 32;
	if (!m->have_peer || memcmp(session, m->peer, MUX_SESSION_SIZE) != 0) {
		int had = m->highest_id != 0;
		drop_all(m);
		memcpy(m->peer, session, MUX_SESSION_SIZE);
		m->have_peer = 1;
		m->up = 0;
		if (had) event(ev, MUX_EV_RESET, 0, "the peer started a new session");
	}
	int confirmed = memcmp(echo, m->mine, MUX_SESSION_SIZE) == 0;
	if (!m->up && confirmed) {
		m->up = 1;
		if (ev->kind == MUX_EV_NONE) event(ev, MUX_EV_UP, 0, NULL);
		else m->up_owed = 1;
	}
	if (!confirmed || !(flags & MUX_RESET_FLAG_UP)) m->reset_owed = 1;
}

/* A whole frame other than DATA has arrived (header and payload in hdr[]). */
static void on_frame(struct mux *m, struct mux_event *ev)
{
	if (m->type == MUX_T_RESET) { on_reset(m, ev); return; }
	if (!m->up) return; /* from an epoch already dropped */
	uint32_t id = m->channel;
	struct mux_channel *c = find(m, id);
	if (m->type == MUX_T_OPEN) {
		if (m->role == MUX_ROLE_OPEN) { stream_error(m, ev, "OPEN from the side that does not open channels"); return; }
		if (id <= m->highest_id) {
			if (c) drop_channel(m, ev, c, "OPEN of a channel that is open");
			else event(ev, MUX_EV_IGNORED, id, "OPEN of an id already used");
			return;
		}
		m->highest_id = id;
		if (open_count(m) >= MUX_MAX_CHANNELS || !add(m, id))
			owe_close(m, ev, id, MUX_EV_IGNORED, "OPEN refused: too many channels");
		else
			event(ev, MUX_EV_OPEN, id, NULL);
		return;
	}
	if (!c) {
		if (id > m->highest_id) event(ev, MUX_EV_IGNORED, id, "frame for a channel never opened");
		return;
	}
	if (m->type == MUX_T_WINDOW) {
		uint32_t inc = get32(m->hdr + MUX_HEADER_SIZE);
		if (inc > MUX_WINDOW - c->send_credit) { drop_channel(m, ev, c, "WINDOW beyond the window size"); return; }
		c->send_credit += inc;
		event(ev, MUX_EV_CREDIT, id, NULL);
	} else if (m->type == MUX_T_EOF) {
		if (c->peer_eof) { drop_channel(m, ev, c, "second EOF"); return; }
		c->peer_eof = 1;
		event(ev, MUX_EV_EOF, id, NULL);
	} else if (m->type == MUX_T_CLOSE) {
		memset(c, 0, sizeof *c);
		event(ev, MUX_EV_CLOSED, id, NULL);
	}
}

/* A DATA header: decide where its payload goes before any of it is read. */
static void on_data_header(struct mux *m, struct mux_event *ev)
{
	m->data_to = NULL;
	if (!m->up) return;
	struct mux_channel *c = find(m, m->channel);
	if (!c) {
		if (m->channel > m->highest_id) event(ev, MUX_EV_IGNORED, m->channel, "DATA for a channel never opened");
		return;
	}
	if (c->peer_eof) { drop_channel(m, ev, c, "DATA after EOF"); return; }
	if (m->len > c->recv_outstanding) { drop_channel(m, ev, c, "DATA beyond the window"); return; }
	c->recv_outstanding -= m->len;
	m->data_to = c;
}

/* Discards bytes until the RESET signature (header + magic); no 0x01 byte follows its first, so a mismatch
 * can only restart the match at the current byte. */
static size_t hunt(struct mux *m, const uint8_t *buf, size_t len)
{
	uint8_t sig[SIG_LEN];
	mux_put_header(sig, MUX_T_RESET, 0, MUX_RESET_LEN);
	memcpy(sig + MUX_HEADER_SIZE, MAGIC, 8);
	size_t i = 0;
	while (i < len && m->hunting) {
		uint8_t b = buf[i++];
		if (b == sig[m->have]) m->hdr[m->have++] = b;
		else m->have = b == sig[0] ? (m->hdr[0] = b, 1) : 0;
		if (m->have == SIG_LEN) {
			m->hunting = 0;
			m->type = MUX_T_RESET;
			m->channel = 0;
			m->len = MUX_RESET_LEN;
			m->left = MUX_RESET_LEN - 8;
		}
	}
	return i;
}

size_t mux_feed(struct mux *m, const uint8_t *buf, size_t len, struct mux_event *ev)
{
	size_t used = 0;
	event(ev, MUX_EV_NONE, 0, NULL);
	if (m->up_owed) {
		m->up_owed = 0;
		event(ev, MUX_EV_UP, 0, NULL);
		return 0;
	}
	while (used < len && ev->kind == MUX_EV_NONE) {
		if (m->hunting) {
			used += hunt(m, buf + used, len - used);
			continue;
		}
		if (m->have < MUX_HEADER_SIZE) {
			size_t n = MUX_HEADER_SIZE - m->have;
			if (n > len - used) n = len - used;
			memcpy(m->hdr + m->have, buf + used, n);
			m->have += n;
			used += n;
			if (m->have < MUX_HEADER_SIZE) break;
			m->type = get32(m->hdr);
			m->channel = get32(m->hdr + 4);
			m->len = get32(m->hdr + 8);
			const char *why = mux_check_header(m->type, m->channel, m->len);
			if (why) {
				stream_error(m, ev, why);
				break;
			}
			m->left = m->len;
			if (m->type == MUX_T_DATA) on_data_header(m, ev);
			if (m->hunting) break;
			if (m->left == 0) {
				on_frame(m, ev);
				m->have = 0;
			}
			continue;
		}
		size_t n = m->left;
		if (n > len - used) n = len - used;
		if (m->type == MUX_T_DATA) {
			if (m->data_to) {
				event(ev, MUX_EV_DATA, m->channel, NULL);
				ev->data = buf + used;
				ev->len = n;
			}
		} else {
			/* RESET or WINDOW: have + left never exceeds sizeof hdr (checked lengths: 48 and 4). */
			memcpy(m->hdr + m->have, buf + used, n);
			m->have += n;
		}
		used += n;
		m->left -= (uint32_t)n;
		if (m->left == 0) {
			if (m->type != MUX_T_DATA) on_frame(m, ev);
			m->have = 0;
			m->data_to = NULL;
		}
	}
	return used;
}

size_t mux_take_output(struct mux *m, uint8_t *out, size_t cap)
{
	size_t n = 0;
	if (m->reset_owed && cap >= MUX_HEADER_SIZE + MUX_RESET_LEN) {
		uint8_t *p = out + MUX_HEADER_SIZE;
		mux_put_header(out, MUX_T_RESET, 0, MUX_RESET_LEN);
		memcpy(p, MAGIC, 8);
		put32(p + 8, MUX_VERSION);
		put32(p + 12, m->up ? MUX_RESET_FLAG_UP : 0);
		memcpy(p + 16, m->mine, MUX_SESSION_SIZE);
		if (m->have_peer) memcpy(p + 32, m->peer, MUX_SESSION_SIZE);
		else memset(p + 32, 0, MUX_SESSION_SIZE);
		n = MUX_HEADER_SIZE + MUX_RESET_LEN;
		m->reset_owed = 0;
	}
	size_t k = 0;
	while (k < m->nowed && cap - n >= MUX_HEADER_SIZE) {
		mux_put_header(out + n, MUX_T_CLOSE, m->owed[k++], 0);
		n += MUX_HEADER_SIZE;
	}
	memmove(m->owed, m->owed + k, (m->nowed - k) * sizeof m->owed[0]);
	m->nowed -= k;
	return n;
}

uint32_t mux_open(struct mux *m, uint8_t out[MUX_HEADER_SIZE])
{
	if (m->role != MUX_ROLE_OPEN || !m->up || m->highest_id == UINT32_MAX || open_count(m) >= MUX_MAX_CHANNELS) return 0;
	uint32_t id = ++m->highest_id;
	add(m, id);
	mux_put_header(out, MUX_T_OPEN, id, 0);
	return id;
}

uint32_t mux_credit(const struct mux *m, uint32_t channel)
{
	const struct mux_channel *c = find((struct mux *)m, channel);
	return c ? c->send_credit : 0;
}

int mux_data_header(struct mux *m, uint32_t channel, uint32_t len, uint8_t out[MUX_HEADER_SIZE])
{
	struct mux_channel *c = find(m, channel);
	if (!c || len == 0 || len > MUX_MAX_DATA || len > c->send_credit) return -1;
	c->send_credit -= len;
	mux_put_header(out, MUX_T_DATA, channel, len);
	return 0;
}

size_t mux_consumed(struct mux *m, uint32_t channel, uint32_t n, uint8_t out[MUX_HEADER_SIZE + 4])
{
	struct mux_channel *c = find(m, channel);
	if (!c || c->peer_eof) return 0;
	uint32_t room = MUX_WINDOW - c->recv_outstanding - c->consumed; /* received and not yet consumed */
	c->consumed += n < room ? n : room;
	/* Small grants wait while the peer still has credit: its next DATA brings us back here. */
	if (c->consumed == 0 || (c->consumed < MUX_WINDOW / 4 && c->recv_outstanding > 0)) return 0;
	mux_put_header(out, MUX_T_WINDOW, channel, 4);
	put32(out + MUX_HEADER_SIZE, c->consumed);
	c->recv_outstanding += c->consumed;
	c->consumed = 0;
	return MUX_HEADER_SIZE + 4;
}

size_t mux_eof(struct mux *m, uint32_t channel, uint8_t out[MUX_HEADER_SIZE])
{
	if (!find(m, channel)) return 0;
	mux_put_header(out, MUX_T_EOF, channel, 0);
	return MUX_HEADER_SIZE;
}

size_t mux_close(struct mux *m, uint32_t channel, uint8_t out[MUX_HEADER_SIZE])
{
	struct mux_channel *c = find(m, channel);
	if (!c) return 0;
	memset(c, 0, sizeof *c);
	mux_put_header(out, MUX_T_CLOSE, channel, 0);
	return MUX_HEADER_SIZE;
}
