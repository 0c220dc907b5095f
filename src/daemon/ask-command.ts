// `isola ask`: the pending 'ask' decisions of the qrexec policy, answered from the host.

import { Command } from 'commander';
import { AdminClient } from '../cli/admin-client';

/** `isola ask list --wait`: as long as a caller waits for an answer. */
const WAIT_MS = 60_000;

export interface AskIo {
  out: (s: string) => void;
  client?: Pick<AdminClient, 'call'>;
}

export function askCommand(io: AskIo, setCode: (c: number) => void): Command {
  const client = () => io.client ?? new AdminClient();
  const ask = new Command('ask').description("answer qrexec calls that the policy says to 'ask' about");
  ask
    .command('list')
    .description('pending questions: ID, calling qube, service, the target it asked for, the targets offered, the preselected one')
    .option('--wait', 'if no question is pending, wait for one (up to 60 s)')
    .action(async (o: { wait?: boolean }) => {
      let reply = await client().call('admin.qrexec.AskList', 'dom0');
      for (const end = Date.now() + WAIT_MS; o.wait && reply === '' && Date.now() < end;) {
        await new Promise((r) => setTimeout(r, 200));
        reply = await client().call('admin.qrexec.AskList', 'dom0');
      }
      if (o.wait && reply === '') throw new Error(`no question came within ${WAIT_MS / 1000} s`);
      const rows = reply.split('\n').filter(Boolean).map((l) => {
        const [id, source, service, def, requested, ...targets] = l.split(' ');
        return [id, source, service, requested.slice('requested='.length) || '-', targets.join(','), def.slice('default='.length) || '-'];
      });
      const table = [['ID', 'SOURCE', 'SERVICE', 'REQUESTED', 'TARGETS', 'DEFAULT'], ...rows];
      const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
      io.out(table.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n');
      setCode(0);
    });
  ask
    .command('allow')
    .description('allow a pending call, to one of the offered targets')
    .argument('<ID>', 'question id (from isola ask list)')
    .option('-t, --target <QUBE>', "the target to allow (default: the policy's default_target, else the caller's own target when offered, else the only choice)")
    .action(async (id: string, o: { target?: string }) => {
      await client().call('admin.qrexec.AskAnswer', 'dom0', { arg: id, payload: o.target ? `allow ${o.target}` : 'allow' });
      setCode(0);
    });
  ask
    .command('deny')
    .description('deny a pending call')
    .argument('<ID>', 'question id (from isola ask list)')
    .action(async (id: string) => {
      await client().call('admin.qrexec.AskAnswer', 'dom0', { arg: id, payload: 'deny' });
      setCode(0);
    });
  return ask;
}
