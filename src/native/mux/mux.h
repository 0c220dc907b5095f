/* The version 2 transport's channel layer (docs/agent-protocol.md, "Channels over one byte stream") as a pure
 * state machine for the C agent: bytes in, events out; the caller asks what it may send. No I/O, no malloc. */
#ifndef ISOLA_MUX_H
#define ISOLA_MUX_H

#include <stddef.h>
#include <stdint.h>

#define MUX_HEADER_SIZE 12u
#define MUX_SESSION_SIZE 16u
#define MUX_RESET_LEN 48u
#define MUX_MAX_DATA 65536u
#define MUX_WINDOW (256u * 1024u)
#define MUX_MAX_CHANNELS 512u
#define MUX_VERSION 2u
#define MUX_RESET_FLAG_UP 0x1u

enum mux_type { MUX_T_RESET = 1, MUX_T_OPEN = 2, MUX_T_DATA = 3, MUX_T_WINDOW = 4, MUX_T_EOF = 5, MUX_T_CLOSE = 6 };
enum mux_role { MUX_ROLE_ACCEPT = 0, MUX_ROLE_OPEN = 1 };

/* What mux_feed() reports; data points into the caller's buffer (valid until it is reused). */
enum mux_event_kind {
	MUX_EV_NONE = 0,
	MUX_EV_UP,          /* the peer confirmed our RESET: channels may be opened */
	MUX_EV_RESET,       /* every channel is gone (peer restarted, or a stream error: reason) */
	MUX_EV_OPEN,        /* accept role: a new channel */
	MUX_EV_DATA,        /* a piece of a DATA frame's payload (a frame may come in several pieces) */
	MUX_EV_CREDIT,      /* the peer granted more window on channel */
	MUX_EV_EOF,         /* the peer sends nothing more on channel */
	MUX_EV_CLOSED,      /* the peer closed channel: drop it (nothing is sent back) */
	MUX_EV_DROPPED,     /* channel broke the rules (reason); a CLOSE is queued */
	MUX_EV_IGNORED,     /* a frame for a channel never opened (reason), or an OPEN refused at the cap */
};

struct mux_event {
	enum mux_event_kind kind;
	uint32_t channel;
	const uint8_t *data;
	size_t len;
	const char *reason;
};

struct mux_channel {
	uint32_t id;           /* 0: free slot */
	uint32_t send_credit;  /* DATA bytes we may still send */
	uint32_t recv_outstanding; /* DATA bytes the peer may still send us */
	uint32_t consumed;     /* bytes our consumer read that are not granted back yet */
	uint8_t peer_eof, close_owed;
};

struct mux {
	enum mux_role role;
	void (*random)(uint8_t out[MUX_SESSION_SIZE], void *ctx);
	void *random_ctx;
	uint8_t mine[MUX_SESSION_SIZE], peer[MUX_SESSION_SIZE];
	int have_peer, up, up_owed, reset_owed, hunting;
	uint32_t highest_id;
	/* decoder */
	uint8_t hdr[MUX_HEADER_SIZE + MUX_RESET_LEN];
	size_t have;             /* bytes of hdr[] filled (header, then a RESET or WINDOW payload) */
	uint32_t type, channel, len, left; /* the frame being read; left: payload bytes still to come */
	struct mux_channel *data_to; /* DATA payload pieces go to this channel, or are skipped if NULL */
	uint32_t owed[128];      /* CLOSEs due (dropped channels, OPENs refused at the cap); full: the stream resets */
	size_t nowed;
	struct mux_channel ch[MUX_MAX_CHANNELS];
};

void mux_init(struct mux *m, enum mux_role role, void (*random)(uint8_t *, void *), void *ctx);
/* Our own decision (e.g. the port hung up: the host went away): drops every channel, starts a new session. */
void mux_reset(struct mux *m);
/* Call about once a second: while the peer has not confirmed our RESET, it is sent again (one may be lost). */
void mux_tick(struct mux *m);
/* Consumes bytes from buf until one event (returned in ev) or the end of buf; returns the bytes consumed.
 * Call again until all of buf is consumed and no event came (an event may come with 0 bytes consumed). */
size_t mux_feed(struct mux *m, const uint8_t *buf, size_t len, struct mux_event *ev);
/* Control messages due (RESET answers, CLOSEs): writes whole messages into out, returns their length. */
size_t mux_take_output(struct mux *m, uint8_t *out, size_t cap);

/* Opener: a new channel id and its OPEN message (12 bytes into out); 0 if not up or at the cap. */
uint32_t mux_open(struct mux *m, uint8_t out[MUX_HEADER_SIZE]);
/* How many DATA bytes channel may send now (0 for an unknown channel). */
uint32_t mux_credit(const struct mux *m, uint32_t channel);
/* The header for len (1..MUX_MAX_DATA, at most the credit) bytes of DATA; debits the credit. -1 if not allowed. */
int mux_data_header(struct mux *m, uint32_t channel, uint32_t len, uint8_t out[MUX_HEADER_SIZE]);
/* Our consumer read n bytes of channel: returns the length of a WINDOW message written to out, or 0. */
size_t mux_consumed(struct mux *m, uint32_t channel, uint32_t n, uint8_t out[MUX_HEADER_SIZE + 4]);
size_t mux_eof(struct mux *m, uint32_t channel, uint8_t out[MUX_HEADER_SIZE]);
/* Forgets channel and returns its CLOSE (0 bytes if the peer closed it first). */
size_t mux_close(struct mux *m, uint32_t channel, uint8_t out[MUX_HEADER_SIZE]);

/* Pure codec, shared with tests. */
void mux_put_header(uint8_t out[MUX_HEADER_SIZE], uint32_t type, uint32_t channel, uint32_t len);
/* NULL if a header of this type, channel and len is well-formed, else why not. */
const char *mux_check_header(uint32_t type, uint32_t channel, uint32_t len);

#endif
