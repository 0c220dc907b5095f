/* Fuzz target for mux.c's decoder and channel table: LLVMFuzzerTestOneInput for libFuzzer, and (without
 * -DMUX_LIBFUZZER) a standalone driver that runs seeded random and mutated inputs for a while under ASan/UBSan. */
#include "mux.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void fixed_random(uint8_t *out, void *ctx)
{
	(void)ctx;
	memset(out, 0xC0, MUX_SESSION_SIZE);
}

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "invariant broken: %s (%s:%d)\n", #cond, __FILE__, __LINE__); abort(); } } while (0)

/* First byte: role and piece size; then the stream, behind a RESET that confirms us so the table is reached. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mux m;
	if (size < 1) return 0;
	mux_init(&m, data[0] & 1 ? MUX_ROLE_OPEN : MUX_ROLE_ACCEPT, fixed_random, NULL);
	size_t piece = 1 + (data[0] >> 1);
	uint8_t reset[MUX_HEADER_SIZE + MUX_RESET_LEN] = { 1, 0, 0, 0, 0, 0, 0, 0, MUX_RESET_LEN, 0, 0, 0, 'I', 'S', 'O', 'L', 'A', 'M', 'U', 'X', MUX_VERSION };
	memset(reset + 28, 0x50, MUX_SESSION_SIZE);
	memset(reset + 44, 0xC0, MUX_SESSION_SIZE);
	uint8_t out[8192], hdr[MUX_HEADER_SIZE + 4];
	struct mux_event ev;
	for (int pass = 0; pass < 2; pass++) {
		const uint8_t *p = pass ? data + 1 : reset;
		size_t n = pass ? size - 1 : sizeof reset, off = 0;
		do {
			size_t len = n - off < piece ? n - off : piece;
			size_t used = mux_feed(&m, p + off, len, &ev);
			CHECK(used <= len);
			off += used;
			if (ev.kind == MUX_EV_DATA) {
				CHECK(ev.data >= p && ev.data + ev.len <= p + n && ev.len > 0 && ev.len <= MUX_MAX_DATA);
				mux_consumed(&m, ev.channel, (uint32_t)ev.len, hdr);
			}
			if (ev.kind == MUX_EV_CREDIT) CHECK(mux_credit(&m, ev.channel) <= MUX_WINDOW);
			if (ev.kind == MUX_EV_OPEN) {
				/* Use the channel a little, as the agent would. */
				uint32_t c = mux_credit(&m, ev.channel);
				CHECK(c == MUX_WINDOW);
				CHECK(mux_data_header(&m, ev.channel, 100, hdr) == 0);
				CHECK(mux_credit(&m, ev.channel) == c - 100);
			}
			if (ev.kind == MUX_EV_UP && m.role == MUX_ROLE_OPEN && mux_open(&m, hdr)) CHECK(m.highest_id > 0);
			CHECK(mux_take_output(&m, out, sizeof out) <= sizeof out);
			CHECK(m.nowed <= sizeof m.owed / sizeof m.owed[0]);
			CHECK(m.have <= sizeof m.hdr);
		} while (off < n || ev.kind != MUX_EV_NONE);
	}
	size_t open = 0;
	for (size_t i = 0; i < MUX_MAX_CHANNELS; i++) {
		open += m.ch[i].id != 0;
		if (m.ch[i].id) CHECK(m.ch[i].send_credit <= MUX_WINDOW && m.ch[i].recv_outstanding <= MUX_WINDOW);
	}
	CHECK(open <= MUX_MAX_CHANNELS);
	return 0;
}

#ifndef MUX_LIBFUZZER
static uint64_t rng_state;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)rng_state;
}

/* A plausible stream: mostly well-formed frames on a few channels, so mutations land near the rules. */
static size_t structured(uint8_t *buf, size_t cap)
{
	size_t n = 0;
	buf[n++] = (uint8_t)rnd();
	while (n + MUX_HEADER_SIZE + 70000 < cap && rnd() % 64) {
		uint32_t type = 1 + rnd() % 6, ch = rnd() % 8 ? 1 + rnd() % 6 : rnd(), len = 0;
		if (type == MUX_T_RESET) ch = 0, len = MUX_RESET_LEN;
		if (type == MUX_T_WINDOW) len = 4;
		if (type == MUX_T_DATA) len = rnd() % 4 ? 1 + rnd() % 300 : MUX_MAX_DATA;
		mux_put_header(buf + n, type, ch, len);
		n += MUX_HEADER_SIZE;
		for (uint32_t i = 0; i < len; i++) buf[n + i] = (uint8_t)rnd();
		if (type == MUX_T_RESET) memcpy(buf + n, "ISOLAMUX\2\0\0\0", 12);
		if (type == MUX_T_WINDOW) memset(buf + n, 0, 3), buf[n] = (uint8_t)rnd();
		n += len;
	}
	return n;
}

static void mutate(uint8_t *buf, size_t *n, size_t cap)
{
	for (unsigned k = rnd() % 8; k > 0 && *n > 0; k--) {
		switch (rnd() % 4) {
		case 0: buf[rnd() % *n] ^= (uint8_t)(1u << (rnd() % 8)); break;
		case 1: buf[rnd() % *n] = (uint8_t)rnd(); break;
		case 2: *n = rnd() % *n; break;
		default:
			if (*n + 4 < cap) {
				size_t at = rnd() % *n;
				memmove(buf + at + 4, buf + at, *n - at);
				for (int i = 0; i < 4; i++) buf[at + i] = (uint8_t)rnd();
				*n += 4;
			}
		}
	}
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 5;
	rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : (uint64_t)time(NULL);
	if (rng_state == 0) rng_state = 1;
	uint64_t seed = rng_state;
	static uint8_t buf[1 << 20];
	unsigned long runs = 0;
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		size_t n;
		if (rnd() % 4 == 0) {
			n = rnd() % 4096;
			for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
		} else {
			n = structured(buf, sizeof buf);
			mutate(buf, &n, sizeof buf);
		}
		LLVMFuzzerTestOneInput(buf, n);
		runs++;
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
	printf("mux-fuzz: %lu inputs in %.1f s, seed %llu, no invariant broken\n", runs, seconds, (unsigned long long)seed);
	return 0;
}
#endif
