// npm run bench: the network through sys-firewall and sys-net against the host's own namespace, in the
// same run: TCP throughput to a test host, ping round trips per hop, the time to apply a 1000-rule
// firewall to a running qube, and a sandbox qube's start with a netvm vs without. The test hosts are
// the integration tests' own (net-world.ts): no traffic leaves this machine.

import { execFileSync } from 'node:child_process';
import { Instance } from '../test/integration/harness';
import { DNS_SERVER, TestInternet } from '../test/integration/net-world';
import { AdminClient } from '../src/cli/admin-client';
import { report } from './report';
import { vethChain, type VethChain } from './veth-chain';

const MIB = 256;
const STARTS = 10;
const ROUNDS = 7;

/** A node program sending MIB MiB to host:9000 and printing the milliseconds until the sink confirmed them. */
const sender = (host: string) =>
  `const s=require('net').connect(9000,'${host}');const b=Buffer.alloc(1<<20);let i=0;const t=process.hrtime.bigint();` +
  `const w=()=>{while(i<${MIB}){i++;if(!s.write(b))return s.once('drain',w)}s.end()};s.on('connect',w);` +
  `s.on('data',(d)=>{if(Number(d)!==${MIB}*(1<<20))process.exit(2);console.log(Number(process.hrtime.bigint()-t)/1e6)})`;

/** A difference with its sign: the per-hop split of a ping is within the noise, and may come out negative. */
const signed = (ms: number) => `${ms < 0 ? '' : '+'}${ms.toFixed(3)}`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const avgRtt = (out: string) => Number(/= [\d.]+\/([\d.]+)\//.exec(out)?.[1] ?? NaN);

/** TCG boots of ~4 s each. */
const HVM_STARTS = 3;

async function main(): Promise<void> {
  const inet = await TestInternet.create();
  const inst = new Instance({ env: { ISOLA_UPLINK_DNS: DNS_SERVER } });
  const rows: string[][] = [['what', 'value', 'baseline (same run)', 'goal']];
  const data: Record<string, number> = {};
  let plain: VethChain | undefined;
  try {
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-create', '--label', 'red', '--prop', 'provides_network=True', '--prop', 'netvm=', 'sys-net');
    await inst.ok('qvm-create', '--label', 'green', '--prop', 'provides_network=True', '--prop', 'netvm=sys-net', 'sys-firewall');
    await inst.ok('qvm-create', '--label', 'blue', '--prop', 'netvm=sys-firewall', 'work');
    await inst.ok('qvm-create', '--label', 'black', '--prop', 'netvm=', 'offline');
    await inst.ok('qvm-start', 'work');
    const host = '198.51.100.10';

    // --- TCP throughput: ROUNDS interleaved rounds, each place on the chain then the host, best of each.
    // The host is shared and noisy (the same transfer varies by ±30 % between runs); the ratio of each
    // round's pair is reported too, as a check that the best-of ratio is not one lucky transfer. Both ends
    // run the same sender program with the same Node binary, so only the path differs.
    const times: Record<string, number[]> = { work: [], 'sys-firewall': [], 'sys-net': [], host: [], plain: [] };
    plain = await vethChain(4);
    const roundRatios: number[] = [];
    const workPid = () => inst.containers().find((c) => c.id.startsWith('work.'))!.pid;
    for (let i = 0; i < ROUNDS; i++) {
      for (const vm of ['work', 'sys-firewall', 'sys-net']) times[vm].push(Number(await inst.ok('qvm-run', '-p', vm, `node -e "${sender(host)}"`)));
      // The same Node (the template's, not the host's: they differ by a major version here) in the host's namespace.
      times.host.push(Number(execFileSync('nsenter', [`--target=${workPid()}`, '--mount', 'node', '-e', sender(host)]).toString()));
      times.plain.push(Number(execFileSync('nsenter', [`--target=${workPid()}`, '--mount', `--net=${plain!.head}`, 'node', '-e', sender(plain!.target)]).toString()));
      roundRatios.push(times.host[i] / times.work[i]);
    }
    const mbps = (vm: string) => (MIB * 1.048576) / (Math.min(...times[vm]) / 1000);
    data.throughputMBps = mbps('work');
    data.directMBps = mbps('host');
    data.sysFirewallMBps = mbps('sys-firewall');
    data.sysNetMBps = mbps('sys-net');
    data.medianRoundRatio = median(roundRatios);
    rows.push(['TCP qube → test host via sys-firewall, sys-net', `${data.throughputMBps.toFixed(0)} MB/s`, `${data.directMBps.toFixed(0)} MB/s from the host`, '≥ 80 % of direct']);
    rows.push([`  ratio (best of ${ROUNDS} each)`, `${((100 * data.throughputMBps) / data.directMBps).toFixed(0)} %`, '', '']);
    rows.push(['  ratio (median of the rounds)', `${(100 * data.medianRoundRatio).toFixed(0)} %`, '', '']);
    data.plainChainMBps = mbps('plain');
    rows.push(['  the same 4 hops as bare veths, no rules', `${data.plainChainMBps.toFixed(0)} MB/s`, `${((100 * data.plainChainMBps) / data.directMBps).toFixed(0)} % of direct`, 'report']);
    rows.push(['  from sys-firewall (via sys-net)', `${data.sysFirewallMBps.toFixed(0)} MB/s`, '', '']);
    rows.push(['  from sys-net (the uplink only)', `${data.sysNetMBps.toFixed(0)} MB/s`, '', '']);

    // --- ping: each qube on the chain, and the host, to the same test host
    const ping = async (vm?: string) => {
      const cmd = `ping -c 20 -i 0.2 -q ${host}`;
      return avgRtt(vm ? await inst.ok('qvm-run', '-p', vm, cmd) : execFileSync('sh', ['-c', cmd]).toString());
    };
    data.pingHostMs = await ping();
    data.pingSysNetMs = await ping('sys-net');
    data.pingSysFirewallMs = await ping('sys-firewall');
    data.pingWorkMs = await ping('work');
    rows.push(['ping from the host (direct)', `${data.pingHostMs.toFixed(3)} ms`, '', '']);
    rows.push(['ping from sys-net (+1 hop: the host)', `${data.pingSysNetMs.toFixed(3)} ms`, `${signed(data.pingSysNetMs - data.pingHostMs)} ms`, 'report']);
    rows.push(['ping from sys-firewall (+2 hops)', `${data.pingSysFirewallMs.toFixed(3)} ms`, `${signed(data.pingSysFirewallMs - data.pingSysNetMs)} ms for sys-net`, 'report']);
    rows.push(['ping from work (+3 hops)', `${data.pingWorkMs.toFixed(3)} ms`, `${signed(data.pingWorkMs - data.pingSysFirewallMs)} ms for sys-firewall`, 'report']);

    // --- a 1000-rule firewall on the running work: from the Set call to the rules live in sys-firewall
    const admin = new AdminClient(String(inst.env.ISOLA_SOCKET));
    const rules = Array.from({ length: 999 }, (_, i) => `action=accept dst4=203.0.${Math.floor(i / 250)}.${i % 250}/32 proto=tcp dstports=${1000 + i}-${1000 + i}`);
    rules.push('action=drop');
    const pid = inst.containers().find((c) => c.id.startsWith('sys-firewall.'))!.pid;
    const workIp = (await inst.ok('qvm-prefs', 'work', 'ip')).trim();
    const chainRules = () => execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'nft', 'list', 'chain', 'inet', `isola-${inst.config.instance}`, `qbs-${workIp.replace(/\./g, '-')}`])
      .toString().split('\n').filter((l) => /accept|reject/.test(l)).length;
    const t = Date.now();
    await admin.call('admin.vm.firewall.Set', 'work', { payload: rules.join('\n') + '\n' });
    while (chainRules() < 1000 && Date.now() - t < 30_000) await new Promise((r) => setTimeout(r, 5));
    data.apply1000Ms = Date.now() - t;
    rows.push(['apply a 1000-rule firewall to a running qube', `${data.apply1000Ms} ms`, '', '≤ 1 s']);

    // --- start with a netvm (already running) vs without
    const startMs = async (vm: string) => {
      const xs: number[] = [];
      for (let i = 0; i < STARTS; i++) {
        const before = inst.daemonLog.length;
        await admin.call('admin.vm.Start', vm);
        xs.push(Number(new RegExp(`${vm}: started in (\\d+) ms`).exec(inst.daemonLog.slice(before))?.[1] ?? NaN));
        await admin.call('admin.vm.Kill', vm);
      }
      return median(xs);
    };
    await inst.ok('qvm-create', '--label', 'blue', '--prop', 'netvm=sys-firewall', 'online');
    data.startOfflineMs = await startMs('offline');
    data.startOnlineMs = await startMs('online');
    rows.push(['sandbox start with a netvm (inside isolad)', `${data.startOnlineMs} ms`, `${data.startOfflineMs} ms without`, '≤ +30 ms']);
    rows.push(['  the network steps add', `${data.startOnlineMs - data.startOfflineMs} ms`, '', '']);

    // --- hvm: the same chain; a TCG boot varies by more than the network costs, so its step is read too
    const hvmStart = async (vm: string) => {
      const total: number[] = [];
      const step: number[] = [];
      for (let i = 0; i < HVM_STARTS; i++) {
        const before = inst.daemonLog.length;
        await admin.call('admin.vm.Start', vm);
        const line = new RegExp(`${vm}: started in (\\d+) ms \\(([^)]*)\\)`).exec(inst.daemonLog.slice(before));
        total.push(Number(line?.[1] ?? NaN));
        step.push(Number(/network (\d+) ms/.exec(line?.[2] ?? '')?.[1] ?? 0));
        await admin.call('admin.vm.Kill', vm);
      }
      return { total: median(total), step: median(step) };
    };
    await inst.ok('qvm-create', '--label', 'blue', '--prop', 'netvm=sys-firewall', '--prop', 'virt_mode=hvm', 'vm-online');
    await inst.ok('qvm-create', '--label', 'black', '--prop', 'netvm=', '--prop', 'virt_mode=hvm', 'vm-offline');
    const vmOff = await hvmStart('vm-offline');
    const vmOn = await hvmStart('vm-online');
    Object.assign(data, { hvmStartOfflineMs: vmOff.total, hvmStartOnlineMs: vmOn.total, hvmNetworkStepMs: vmOn.step });
    rows.push(['hvm start with a netvm (inside isolad)', `${vmOn.total} ms`, `${vmOff.total} ms without`, 'report']);
    rows.push(['  its network step (tap bridged, link)', `${vmOn.step} ms`, '', '']);
  } finally {
    plain?.destroy();
    await inst.destroy();
    inet.destroy();
  }
  report('network', rows, { rows: data });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
