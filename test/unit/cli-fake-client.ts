// A fake Admin API client for the CLI tests: records every call and answers with canned replies
// in Qubes' text formats, so a test sees exactly what a command sends and prints.

import type { AdminMethod } from '../../src/core/admin-methods';
import type { AdminEvent } from '../../src/core/admin-wire';
import { QubesError, type QubesErrorCode } from '../../src/core/errors';
import type { CallOptions } from '../../src/cli/admin-client';
import { main, type AdminClientLike, type CliDeps } from '../../src/cli/main';

export interface RecordedCall {
  method: string;
  dest: string;
  arg: string;
  payload: string;
}

type Reply = string | QubesError | ((c: RecordedCall, client: FakeClient) => string | Promise<string>);

/**
 * Replies are looked up by `method dest arg`, then `method dest`, then `method`; a call nobody
 * expected fails the command (and so the test) loudly.
 */
export class FakeClient implements AdminClientLike {
  readonly calls: RecordedCall[] = [];
  private listeners: ((e: AdminEvent) => void)[] = [];
  subscriptions = 0;

  constructor(private readonly replies: Record<string, Reply> = {}) {}

  /** Adds or replaces a reply (for replies that need the client, e.g. to emit events). */
  on(key: string, reply: Reply): this {
    this.replies[key] = reply;
    return this;
  }

  async call(method: AdminMethod, dest: string, opts: CallOptions = {}): Promise<string> {
    const c: RecordedCall = { method, dest, arg: opts.arg ?? '', payload: opts.payload === undefined ? '' : String(opts.payload) };
    this.calls.push(c);
    const reply = [`${method} ${dest} ${c.arg}`, `${method} ${dest}`, method].map((k) => this.replies[k]).find((r) => r !== undefined);
    if (reply === undefined) throw new Error(`unexpected call ${method} ${dest} ${c.arg}`);
    if (reply instanceof QubesError) throw reply;
    return typeof reply === 'function' ? reply(c, this) : reply;
  }

  async events(onEvent: (e: AdminEvent) => void): Promise<() => void> {
    this.subscriptions++;
    this.listeners.push(onEvent);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== onEvent);
    };
  }

  emit(event: string, kwargs: Record<string, string>, subject = ''): void {
    for (const l of this.listeners) l({ subject, event, kwargs });
  }

  get listening(): number {
    return this.listeners.length;
  }

  /** Calls as compact strings: `method dest arg [payload]`. */
  summary(): string[] {
    return this.calls.map((c) => [c.method, c.dest, c.arg, c.payload && `[${c.payload}]`].filter(Boolean).join(' '));
  }
}

export const err = (code: QubesErrorCode, message: string) => new QubesError(code, message);

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  client: FakeClient;
  prompts: string[];
}

export async function runCommand(
  command: string,
  argv: string[],
  replies: Record<string, Reply> | FakeClient = {},
  opts: { isTTY?: boolean; answers?: string[] } = {},
): Promise<RunResult> {
  const client = replies instanceof FakeClient ? replies : new FakeClient(replies);
  let stdout = '';
  let stderr = '';
  const prompts: string[] = [];
  const answers = [...(opts.answers ?? [])];
  const deps: CliDeps = {
    client,
    stdout: (s) => (stdout += s),
    stderr: (s) => (stderr += s),
    isTTY: opts.isTTY ?? false,
    prompt: async (q) => {
      prompts.push(q);
      return answers.shift() ?? '';
    },
    columns: 80,
  };
  const code = await main(command, argv, deps);
  return { code, stdout, stderr, client, prompts };
}

/** admin.vm.List reply for a few qubes. */
export const VM_LIST = [
  'debian-12 class=TemplateVM state=Halted uuid=11111111-1111-1111-1111-111111111111',
  'dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000',
  'sys-net class=StandaloneVM state=Running uuid=22222222-2222-2222-2222-222222222222',
  'work class=AppVM state=Halted uuid=33333333-3333-3333-3333-333333333333',
  'personal class=AppVM state=Running uuid=44444444-4444-4444-4444-444444444444',
].join('\n') + '\n';

/** A GetAll reply in Qubes' format from `[name, isDefault, type, value]`. */
export function getAll(props: [string, boolean, string, string][]): string {
  return props.map(([n, d, t, v]) => `${n} default=${d ? 'True' : 'False'} type=${t} ${v}\n`).join('');
}
