// Byte queues of the stream parsers (frames, channel-layer frames): what arrived, kept as the chunks it came in.

/** Removes the first n bytes from a queue of chunks, as slices of the chunks they arrived in: nothing is copied. */
export function takeChunks(chunks: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let left = n; left > 0;) {
    const c = chunks[0];
    if (c.length <= left) {
      out.push(c);
      chunks.shift();
      left -= c.length;
    } else {
      out.push(c.subarray(0, left));
      chunks[0] = c.subarray(left);
      left = 0;
    }
  }
  return out;
}
