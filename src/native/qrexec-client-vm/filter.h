/* What of a qube's output may reach a terminal, as src/core/terminal-filter.ts: escape and control
 * characters (C0 but tab/LF/CR/BS/BEL, DEL, C1 as bytes and as U+0080-U+009F), bidi controls and bytes
 * that are not UTF-8 become `_`, byte for byte. A character cut by a chunk's end waits for the next. */
#ifndef ISOLA_QCVM_FILTER_H
#define ISOLA_QCVM_FILTER_H

#include <stddef.h>
#include <stdint.h>

struct term_filter {
  uint8_t pending[4];
  size_t npending;
};

/* Filters in[0..n) into out (room for n + 3 bytes): returns the bytes written; may keep up to 3 back. */
size_t filter_push(struct term_filter *f, const uint8_t *in, size_t n, uint8_t *out);
/* The bytes still waiting at the end of the stream, as `_`s; returns their count (at most 3). */
size_t filter_end(struct term_filter *f, uint8_t *out);
/* isolad's notice line made inert as inertString() does: each control code point becomes `_`,
 * bytes that are not UTF-8 become U+FFFD (as Node's decoder). out needs 3 * n + 1 bytes; NUL-terminated. */
void inert_line(const uint8_t *in, size_t n, char *out);

#endif
