// Qubes' two-level clipboard, held by isolad (Qubes keeps it in the GUI domain): a copy from a qube
// into the global clipboard and a paste into another qube are two explicit host actions. The paste is
// decided by policy `qubes.ClipboardPaste` (an `ask` counts as yes: the user's paste is the answer, as
// with Qubes' Ctrl+Shift+V), the clipboard remembers its source and is emptied after a paste.

import { finished } from 'node:stream/promises';
import { QubesError } from '../core/errors';
import { answerAsk, evaluate } from '../policy';
import type { HandlerDeps } from './handlers/context';
import { systemInfo } from './system-info';

/** Qubes' default per-qube clipboard buffer (gui-daemon): 64 000 bytes. */
export const DEFAULT_CLIPBOARD_LIMIT = 64_000;
/** How long a qube's clipboard service may take: a stuck qube must not hold the host's clipboard action. */
const SERVICE_TIMEOUT_MS = 10_000;

export interface ClipboardState {
  source: string;
  size: number;
  copiedAt: number;
}

export class GlobalClipboard {
  private data: Buffer | null = null;
  private state: ClipboardState | null = null;

  constructor(private readonly d: HandlerDeps, private readonly limit = DEFAULT_CLIPBOARD_LIMIT) {}

  get current(): ClipboardState | null {
    return this.state;
  }

  /** Reads the qube's clipboard (service qubes.ClipboardCopy) into the global clipboard. */
  async copyFrom(name: string): Promise<ClipboardState> {
    const q = this.running(name);
    const out = await this.runService(q.name, 'qubes.ClipboardCopy', null);
    if (out.length > this.limit) {
      throw new QubesError('QubesValueError', `the clipboard of ${q.name} holds more than ${this.limit} bytes; nothing was copied`);
    }
    this.data = out;
    this.state = { source: q.name, size: out.length, copiedAt: Date.now() };
    this.record(q.name, 'qubes.ClipboardCopy', 'allow', '', `copied ${out.length} bytes to the global clipboard`);
    this.d.events.emit('dom0', 'clipboard-copied', { source: q.name, size: String(out.length) });
    return this.state;
  }

  /** Pastes the global clipboard into a qube (service qubes.ClipboardPaste) if the policy allows, then empties it. */
  async pasteTo(name: string): Promise<ClipboardState> {
    const q = this.running(name);
    if (!this.state || !this.data) throw new QubesError('QubesValueError', 'the global clipboard is empty');
    const from = this.state;
    if (from.source === q.name) throw new QubesError('QubesValueError', `the clipboard came from ${q.name}; pasting it back is refused`);
    const system = systemInfo(this.d.collection);
    let r = evaluate(this.d.policy.current, { service: 'qubes.ClipboardPaste', argument: '', source: from.source, target: q.name }, system);
    let reason = r.reason;
    if (r.result === 'ask') {
      r = answerAsk(r, { allow: true, target: q.name }, system);
      reason = r.result === 'allow' ? `ask answered yes by the paste itself (${r.rule?.file}:${r.rule?.line})` : r.reason;
    }
    const rule = r.rule ? `${r.rule.file}:${r.rule.line}` : '';
    if (r.result !== 'allow') {
      this.record(q.name, 'qubes.ClipboardPaste', 'deny', rule, reason, from.source);
      throw new QubesError('PermissionDenied', `policy denies the paste from ${from.source} into ${q.name}: ${reason}`);
    }
    this.record(q.name, 'qubes.ClipboardPaste', 'allow', rule, reason, from.source);
    await this.runService(q.name, 'qubes.ClipboardPaste', this.data);
    this.data = null;
    this.state = null;
    this.d.events.emit('dom0', 'clipboard-pasted', { source: from.source, target: q.name, size: String(from.size) });
    return from;
  }

  clear(): void {
    this.data = null;
    this.state = null;
  }

  private running(name: string) {
    const q = this.d.collection.get(name);
    if (q.klass === 'AdminVM') throw new QubesError('QubesValueError', 'dom0 has no qube clipboard');
    if (this.d.collection.powerState(q) !== 'Running') throw new QubesError('QubesVMNotRunningError', `${q.name} is not running`);
    return q;
  }

  /** Runs a clipboard service in the qube as its default user; returns its stdout, at most limit+1 bytes. */
  private async runService(qube: string, service: string, input: Buffer | null): Promise<Buffer> {
    const session = await this.d.lifecycle.agent(this.d.collection.get(qube)).exec('DEFAULT', `QUBESRPC ${service} dom0`);
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => session.hangup(), SERVICE_TIMEOUT_MS);
    session.stdout.on('data', (c: Buffer) => {
      if (size > this.limit) return;
      size += c.length;
      chunks.push(c);
      if (size > this.limit) session.hangup();
    });
    session.stderr.resume();
    session.stdin.end(input ?? undefined);
    // The exit code can come in the same socket read as the last output (the C agent sends them together):
    // wait for stdout's end too, or the last chunks are still on their way to the 'data' handler.
    const [code] = await Promise.all([session.exit, finished(session.stdout).catch(() => undefined)]);
    clearTimeout(timer);
    const out = Buffer.concat(chunks);
    if (out.length > this.limit) return out;
    if (code !== 0) throw new QubesError('QubesException', `${service} in ${qube} failed (exit code ${code})`);
    return out;
  }

  private record(target: string, service: string, result: string, rule: string, reason: string, source = 'dom0'): void {
    this.d.collection.store.logDecision({ at: Date.now(), source, target, service, argument: '+', result, rule, reason });
    this.d.log.info(`clipboard ${source} -> ${target} ${service}: ${result}${rule ? ` (${rule})` : ''}`);
  }
}
