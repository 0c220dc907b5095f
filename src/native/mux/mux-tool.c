/* Test program for the cross-language test (test/unit/qrexec-mux-codec.test.ts): `decode ROLE` feeds stdin to
 * mux.c in small uneven pieces and prints one line per event; `encode` writes a fixed session made with mux.c. */
#include "mux.h"

#include <stdio.h>
#include <string.h>

/* Deterministic sessions, so the other side of the test knows ours: 0xC0, 0xC1, ... */
static void fixed_random(uint8_t *out, void *ctx)
{
	unsigned *calls = ctx;
	for (unsigned i = 0; i < MUX_SESSION_SIZE; i++) out[i] = (uint8_t)(0xC0 + i + 16 * *calls);
	(*calls)++;
}

static void hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

static const char *const NAMES[] = { "NONE", "UP", "RESET", "OPEN", "DATA", "CREDIT", "EOF", "CLOSED", "DROPPED", "IGNORED" };

static int decode(enum mux_role role)
{
	static uint8_t in[1 << 22];
	size_t n = fread(in, 1, sizeof in, stdin);
	unsigned calls = 0;
	static struct mux m;
	mux_init(&m, role, fixed_random, &calls);
	size_t off = 0, step = 0;
	struct mux_event ev;
	uint8_t out[4096];
	do {
		size_t piece = 1 + (step++ * 7919) % 5000; /* uneven pieces: every boundary inside a frame is tried */
		if (piece > n - off) piece = n - off;
		size_t used = mux_feed(&m, in + off, piece, &ev);
		off += used;
		if (ev.kind == MUX_EV_NONE) continue;
		printf("%s %u", NAMES[ev.kind], ev.channel);
		if (ev.kind == MUX_EV_DATA) printf(" "), hex(ev.data, ev.len);
		if (ev.kind == MUX_EV_CREDIT) printf(" %u", mux_credit(&m, ev.channel));
		if (ev.reason) printf(" %s", ev.reason);
		printf("\n");
		size_t o = mux_take_output(&m, out, sizeof out);
		if (o) printf("OUT "), hex(out, o), printf("\n");
	} while (off < n || ev.kind != MUX_EV_NONE);
	return 0;
}

static int encode(void)
{
	unsigned calls = 0;
	static struct mux m;
	uint8_t buf[MUX_HEADER_SIZE + MUX_RESET_LEN], hdr[MUX_HEADER_SIZE + 4];
	static uint8_t payload[100000];
	struct mux_event ev;
	mux_init(&m, MUX_ROLE_OPEN, fixed_random, &calls);
	fwrite(buf, 1, mux_take_output(&m, buf, sizeof buf), stdout);
	/* The peer's RESET, echoing our session, as an honest peer answers. */
	uint8_t peer[MUX_HEADER_SIZE + MUX_RESET_LEN];
	mux_put_header(peer, MUX_T_RESET, 0, MUX_RESET_LEN);
	memcpy(peer + 12, "ISOLAMUX", 8);
	memset(peer + 20, 0, 8);
	peer[20] = MUX_VERSION;
	peer[24] = MUX_RESET_FLAG_UP;
	memset(peer + 28, 0x50, MUX_SESSION_SIZE);
	memcpy(peer + 44, m.mine, MUX_SESSION_SIZE);
	for (size_t off = 0; off < sizeof peer;) off += mux_feed(&m, peer + off, sizeof peer - off, &ev);
	if (!m.up) return fprintf(stderr, "not up\n"), 1;
	uint32_t a = mux_open(&m, hdr);
	fwrite(hdr, 1, MUX_HEADER_SIZE, stdout);
	for (size_t i = 0; i < sizeof payload; i++) payload[i] = (uint8_t)(i * 7);
	for (size_t off = 0; off < sizeof payload;) {
		uint32_t n = sizeof payload - off > MUX_MAX_DATA ? MUX_MAX_DATA : (uint32_t)(sizeof payload - off);
		if (mux_data_header(&m, a, n, hdr) != 0) return fprintf(stderr, "no credit\n"), 1;
		fwrite(hdr, 1, MUX_HEADER_SIZE, stdout);
		fwrite(payload + off, 1, n, stdout);
		off += n;
	}
	if (mux_data_header(&m, a, MUX_WINDOW, hdr) == 0) return fprintf(stderr, "credit beyond the window\n"), 1;
	fwrite(hdr, 1, mux_eof(&m, a, hdr), stdout);
	uint32_t b = mux_open(&m, hdr);
	fwrite(hdr, 1, MUX_HEADER_SIZE, stdout);
	fwrite(hdr, 1, mux_close(&m, b, hdr), stdout);
	return 0;
}


#define EXPECT(cond) do { if (!(cond)) { fprintf(stderr, "selftest: %s (line %d)\n", #cond, __LINE__); return 1; } } while (0)

/* Feeds everything in buf to m; returns the last event of the given kind's channel, or 0. */
static uint32_t deliver(struct mux *m, const uint8_t *buf, size_t n, enum mux_event_kind want, size_t *data_bytes)
{
	struct mux_event ev;
	uint32_t got = 0;
	size_t off = 0;
	do {
		off += mux_feed(m, buf + off, n - off, &ev);
		if (ev.kind == want) got = ev.channel ? ev.channel : 1;
		if (ev.kind == MUX_EV_DATA && data_bytes) *data_bytes += ev.len;
	} while (off < n || ev.kind != MUX_EV_NONE);
	return got;
}

/* Two mux.c ends, output shuttled by hand: the handshake, one channel, its window used up and granted back. */
static int selftest(void)
{
	unsigned ca = 0, cb = 100;
	static struct mux agent, host;
	static uint8_t wire[1 << 20], payload[MUX_MAX_DATA];
	uint8_t hdr[MUX_HEADER_SIZE + 4];
	size_t n;
	mux_init(&agent, MUX_ROLE_OPEN, fixed_random, &ca);
	mux_init(&host, MUX_ROLE_ACCEPT, fixed_random, &cb);
	for (int round = 0; round < 4; round++) {
		n = mux_take_output(&agent, wire, sizeof wire);
		deliver(&host, wire, n, MUX_EV_NONE, NULL);
		n = mux_take_output(&host, wire, sizeof wire);
		deliver(&agent, wire, n, MUX_EV_NONE, NULL);
	}
	EXPECT(agent.up && host.up);
	EXPECT(mux_take_output(&agent, wire, sizeof wire) == 0 && mux_take_output(&host, wire, sizeof wire) == 0);
	uint32_t ch = mux_open(&agent, hdr);
	EXPECT(ch == 1);
	EXPECT(deliver(&host, hdr, MUX_HEADER_SIZE, MUX_EV_OPEN, NULL) == 1);
	size_t got = 0;
	while (mux_credit(&agent, ch) > 0) {
		uint32_t len = mux_credit(&agent, ch) < MUX_MAX_DATA ? mux_credit(&agent, ch) : MUX_MAX_DATA;
		EXPECT(mux_data_header(&agent, ch, len, wire) == 0);
		memcpy(wire + MUX_HEADER_SIZE, payload, len);
		deliver(&host, wire, MUX_HEADER_SIZE + len, MUX_EV_NONE, &got);
	}
	EXPECT(got == MUX_WINDOW);
	EXPECT(mux_data_header(&agent, ch, 1, wire) != 0); /* no credit: nothing may be sent */
	/* The host's consumer reads a little: no grant yet (the peer has none left, so any read is granted). */
	EXPECT(mux_consumed(&host, ch, 1000, hdr) == MUX_HEADER_SIZE + 4);
	EXPECT(deliver(&agent, hdr, MUX_HEADER_SIZE + 4, MUX_EV_CREDIT, NULL) == ch && mux_credit(&agent, ch) == 1000);
	/* With credit outstanding, small reads wait; a quarter window is granted. */
	EXPECT(mux_consumed(&host, ch, 1000, hdr) == 0);
	n = mux_consumed(&host, ch, MUX_WINDOW / 4, hdr);
	EXPECT(n == MUX_HEADER_SIZE + 4);
	deliver(&agent, hdr, n, MUX_EV_CREDIT, NULL);
	EXPECT(mux_credit(&agent, ch) == 1000 + 1000 + MUX_WINDOW / 4);
	/* Consuming more than was received grants no more than the window. */
	mux_consumed(&host, ch, UINT32_MAX, hdr);
	EXPECT(host.ch[0].recv_outstanding <= MUX_WINDOW);
	/* EOF and CLOSE each way; a reset by the agent drops the host's channels once the host sees it. */
	EXPECT(deliver(&host, hdr, mux_eof(&agent, ch, hdr), MUX_EV_EOF, NULL) == ch);
	mux_reset(&agent);
	n = mux_take_output(&agent, wire, sizeof wire);
	EXPECT(deliver(&host, wire, n, MUX_EV_RESET, NULL) == 1);
	EXPECT(mux_credit(&host, ch) == 0);
	printf("selftest ok\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "selftest") == 0) return selftest();
	if (argc == 3 && strcmp(argv[1], "decode") == 0) return decode(strcmp(argv[2], "open") == 0 ? MUX_ROLE_OPEN : MUX_ROLE_ACCEPT);
	if (argc == 2 && strcmp(argv[1], "encode") == 0) return encode();
	fprintf(stderr, "usage: mux-tool decode accept|open < stream; mux-tool encode > stream; mux-tool selftest\n");
	return 2;
}
