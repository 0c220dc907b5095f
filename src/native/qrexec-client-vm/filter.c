/* The C twin of src/core/terminal-filter.ts (TerminalFilter, inertString): same rules, same output. */
#include "filter.h"

#include <string.h>

static int is_control(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
         (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || (cp >= 0xd800 && cp <= 0xdfff);
}

/* Qubes' do_replace_chars keeps these besides printable text; none of them starts a sequence. */
static int ascii_shown(uint8_t b) {
  return (b >= 0x20 && b < 0x7f) || b == 0x09 || b == 0x0a || b == 0x0d || b == 0x08 || b == 0x07;
}

static size_t sequence_length(uint8_t b) {
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

static int is_continuation(uint8_t b) {
  return (b & 0xc0) == 0x80;
}

/* The code point of the well-formed sequence of len bytes at p, or -1. */
static long decode_at(const uint8_t *p, size_t len) {
  uint32_t cp = p[0] & (0xffu >> (len + 1));
  for (size_t k = 1; k < len; k++) {
    if (!is_continuation(p[k])) return -1;
    cp = cp << 6 | (p[k] & 0x3fu);
  }
  uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  return (long)cp;
}

/* Filters buf[0..n) in place; returns how many bytes are final (the rest, at most 3, start a character). */
static size_t filter_in_place(uint8_t *buf, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = buf[i];
    if (b < 0x80) {
      if (!ascii_shown(b)) buf[i] = '_';
      i++;
      continue;
    }
    size_t len = sequence_length(b);
    if (len == 0) {
      buf[i++] = '_';
      continue;
    }
    if (i + len > n) {
      size_t k = i + 1;
      while (k < n && is_continuation(buf[k])) k++;
      if (k == n) return i; /* the start of a character: it waits for the rest */
      buf[i++] = '_';
      continue;
    }
    long cp = decode_at(buf + i, len);
    if (cp < 0) {
      buf[i++] = '_'; /* only the lead byte: what follows is judged on its own */
      continue;
    }
    if (is_control((uint32_t)cp)) memset(buf + i, '_', len);
    i += len;
  }
  return n;
}

size_t filter_push(struct term_filter *f, const uint8_t *in, size_t n, uint8_t *out) {
  size_t total = f->npending + n;
  memcpy(out, f->pending, f->npending);
  memcpy(out + f->npending, in, n);
  f->npending = 0;
  size_t done = filter_in_place(out, total);
  f->npending = total - done; /* at most 3: a lead byte and its continuations so far */
  memcpy(f->pending, out + done, f->npending);
  return done;
}

size_t filter_end(struct term_filter *f, uint8_t *out) {
  size_t n = f->npending;
  memset(out, '_', n);
  f->npending = 0;
  return n;
}

void inert_line(const uint8_t *in, size_t n, char *out) {
  size_t i = 0, o = 0;
  while (i < n) {
    uint8_t b = in[i];
    if (b < 0x80) {
      out[o++] = is_control(b) ? '_' : (char)b;
      i++;
      continue;
    }
    size_t len = sequence_length(b);
    long cp = len && i + len <= n ? decode_at(in + i, len) : -1;
    if (cp < 0) {
      /* U+FFFD for the lead byte and the continuations of its maximal valid prefix, as TextDecoder */
      size_t k = i + 1;
      if (len) {
        while (k < n && k < i + len && is_continuation(in[k])) {
          uint8_t c = in[k];
          /* the second byte's range decides whether the sequence could still be valid */
          if (k == i + 1 && ((b == 0xe0 && c < 0xa0) || (b == 0xed && c > 0x9f) || (b == 0xf0 && c < 0x90) || (b == 0xf4 && c > 0x8f))) break;
          k++;
        }
      }
      memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      i = k;
      continue;
    }
    if (is_control((uint32_t)cp)) out[o++] = '_';
    else {
      memcpy(out + o, in + i, len);
      o += len;
    }
    i += len;
  }
  out[o] = '\0';
}
