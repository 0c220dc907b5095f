// qubes-vm-update's progress: on a terminal one line per qube, redrawn in place as its state changes;
// elsewhere (a pipe, a log) one plain line per change. Only the command's own words and qube names
// (isolad's charset) are drawn; the cursor controls go out through `controls`, everything else inert.

export type QubeState = 'pending' | 'starting' | 'updating' | 'shutting down' | 'updated' | 'no updates' | 'failed';

export class Progress {
  private readonly order: string[];
  private readonly states = new Map<string, string>();
  private drawn = 0;

  constructor(names: readonly string[], private readonly out: { text: (s: string) => void; controls: (s: string) => void; tty: boolean; columns?: number }) {
    this.order = [...names];
    const width = Math.max(4, ...names.map((n) => n.length));
    this.pad = (n) => n.padEnd(width);
    for (const n of names) this.states.set(n, 'pending');
    if (out.tty) this.redraw();
  }

  private readonly pad: (name: string) => string;

  set(name: string, state: QubeState, detail = ''): void {
    const line = detail ? `${state} (${detail})` : state;
    if (this.states.get(name) === line) return;
    this.states.set(name, line);
    if (this.out.tty) this.redraw();
    else this.out.text(`${name}: ${line}\n`);
  }

  private redraw(): void {
    // Up to the first line, then each line cleared and written again.
    if (this.drawn) this.out.controls(`\x1b[${this.drawn}A`);
    for (const n of this.order) {
      this.out.controls('\r\x1b[2K');
      // Cut to the terminal's width: a wrapped line would break the count of lines to go up.
      this.out.text(`${`${this.pad(n)}  ${this.states.get(n)}`.slice(0, Math.max(20, (this.out.columns ?? 80) - 1))}\n`);
    }
    this.drawn = this.order.length;
  }
}
