/* The agent protocol (docs/agent-protocol.md) as the agent sees it: constants, the incremental frame
 * decoder and the validating payload parsers. Pure: no I/O, no allocation, so it can be fuzzed alone. */
#ifndef ISOLA_AGENT_PROTO_H
#define ISOLA_AGENT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTOCOL_VERSION 1u
#define HEADER_SIZE 8u
#define MAX_PAYLOAD 65536u
#define HELLO_FIXED 16u
#define HELLO_MAX_IDENT 240u
#define SERVICE_IDENT 32u
#define MAX_USER_NAME 33u /* 32 characters and an optional trailing '$' */

#define MSG_DATA_STDIN 0x190u
#define MSG_DATA_STDOUT 0x191u
#define MSG_DATA_STDERR 0x192u
#define MSG_DATA_EXIT_CODE 0x193u
#define MSG_EXEC_CMDLINE 0x200u
#define MSG_JUST_EXEC 0x201u
#define MSG_SERVICE_CONNECT 0x202u
#define MSG_SERVICE_REFUSED 0x203u
#define MSG_CONNECTION_TERMINATED 0x211u
#define MSG_TRIGGER_SERVICE3 0x212u
#define MSG_HELLO 0x300u
#define MSG_DATA_CONNECT 0x400u
#define MSG_SHUTDOWN 0x401u
#define MSG_PING 0x402u
#define MSG_PONG 0x403u
#define MSG_SERVICE_NOTICE 0x404u

#define HELLO_FLAG_CONTROL 0x1u
#define HELLO_FLAG_DATA 0x2u

/* What the agent accepts from isolad in each connection state (the table in the protocol doc). */
enum accept_set { ACCEPT_HELLO, ACCEPT_CONTROL, ACCEPT_DATA, ACCEPT_NOTHING };

enum dec_result { DEC_MORE, DEC_FRAME, DEC_ERROR };

/* Reads straight into its own buffers, never past the current frame: a caller that stops asking
 * stops reading the socket, which is all the flow control a connection needs. */
struct decoder {
  enum accept_set accept;
  int have_header;
  int frame_ready;
  uint32_t type;
  uint32_t len;
  size_t got; /* bytes of the header (before have_header) or of the payload */
  uint8_t header[HEADER_SIZE];
  uint8_t payload[MAX_PAYLOAD];
};

void decoder_init(struct decoder *d, enum accept_set accept);
/* Where the next bytes go and how many at most (never 0). Forgets a frame already delivered. */
uint8_t *decoder_want(struct decoder *d, size_t *n);
/* n bytes were stored at decoder_want's pointer. DEC_FRAME: type, len and payload hold a frame. */
enum dec_result decoder_advance(struct decoder *d, size_t n, char *err, size_t errlen);
/* At end of stream: 0, or -1 with err set when the peer cut a frame short. */
int decoder_end(const struct decoder *d, char *err, size_t errlen);
/* Convenience for tests and the fuzzer: feeds a buffer, stops at the first frame or error. */
enum dec_result decoder_feed(struct decoder *d, const uint8_t *buf, size_t n, size_t *used, char *err, size_t errlen);

void put_u32(uint8_t *p, uint32_t v);
uint32_t get_u32(const uint8_t *p);
void encode_header(uint8_t out[HEADER_SIZE], uint32_t type, uint32_t len);
/* HELLO payload into out (at least HELLO_FIXED + HELLO_MAX_IDENT bytes); returns its length. */
size_t encode_hello(uint8_t *out, uint32_t flags, const char *ident);
const char *type_name(uint32_t type, char *buf, size_t buflen);

struct hello {
  uint32_t flags;
  char ident[HELLO_MAX_IDENT + 1];
};
int parse_hello(const uint8_t *untrusted, size_t len, struct hello *out, char *err, size_t errlen);

struct exec_params {
  uint32_t connect_domain;
  uint32_t connect_port;
  const char *cmdline; /* points into the payload, NUL-terminated there */
  size_t cmdline_len;
};
int parse_exec_params(const uint8_t *untrusted, size_t len, struct exec_params *out, char *err, size_t errlen);

struct cmdline {
  char user[MAX_USER_NAME + 1];
  const char *command; /* inside the cmdline, NUL-terminated */
  size_t command_len;
};
int parse_cmdline(const char *cmdline, size_t len, struct cmdline *out, char *err, size_t errlen);

int utf8_valid(const uint8_t *s, size_t n);
int is_login_name(const char *s, size_t n, int allow_dollar);

#endif
