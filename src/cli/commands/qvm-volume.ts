// qvm-volume: list a qube's volumes, show one (admin.vm.volume.Info/ListSnapshots), resize,
// revert to a kept revision and set revisions_to_keep. Volumes are named `VM:VOLUME`.

import { InvalidArgumentError } from 'commander';
import { QubesError } from '../../core/errors';
import { formatTable } from '../output';
import { collect, lines, listQubes, newProgram, parseKeyValueLines, UsageError, type CliDeps } from './common';

export const description = 'Manage storage volumes of qubes.';

/** The order `qvm-volume info` shows, as Qubes; other keys the daemon sends follow. */
const INFO_ORDER = ['pool', 'vid', 'rw', 'source', 'save_on_stop', 'snap_on_start', 'size', 'usage', 'revisions_to_keep', 'is_outdated'];
const NOT_SHOWN = new Set(['revisions', 'path']);

export function parseVolumeSpec(spec: string): { vm: string; volume: string } {
  const m = /^([^:\s]+):([^:\s]+)$/.exec(spec);
  if (!m) throw new UsageError(`expected VM:VOLUME (e.g. work:private), got '${spec}'`);
  return { vm: m[1], volume: m[2] };
}

/** Bytes, or Qubes' suffixes: K/M/G/T (KB…) are powers of 1000, Ki/Mi/Gi/Ti (KiB…) of 1024. */
export function parseSize(text: string): number {
  const m = /^([0-9]+)\s*(?:([KMGT])(i)?B?)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`invalid size '${text}' (bytes, or a number with K, M, G, T, KiB, MiB, GiB, TiB)`);
  const power = m[2] ? 'KMGT'.indexOf(m[2].toUpperCase()) + 1 : 0;
  const bytes = Number(m[1]) * (m[3] ? 1024 : 1000) ** power;
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`size '${text}' is too large`);
  return bytes;
}

const unsigned = (v: string) => {
  if (!/^[0-9]+$/.test(v)) throw new InvalidArgumentError('expected a non-negative integer');
  return v;
};

async function list(deps: CliDeps, names: string[], pools: string[]): Promise<number> {
  const { client } = deps;
  const qubes = names.length > 0 ? names : (await listQubes(client)).filter((q) => q.klass !== 'AdminVM').map((q) => q.name);
  const perQube = await Promise.all(
    qubes.map(async (vm) =>
      Promise.all(
        lines(await client.call('admin.vm.volume.List', vm)).map(async (volume) => {
          const info = parseKeyValueLines(await client.call('admin.vm.volume.Info', vm, { arg: volume }));
          const revisions = lines(await client.call('admin.vm.volume.ListSnapshots', vm, { arg: volume }));
          return { pool: info.get('pool') ?? '', id: `${info.get('pool') ?? ''}:${info.get('vid') ?? ''}`, vm, volume, revert: revisions.length > 0 ? 'Yes' : 'No' };
        }),
      ),
    ),
  );
  const rows = perQube
    .flat()
    .filter((v) => pools.length === 0 || pools.includes(v.pool))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.vm < b.vm ? -1 : 1))
    .map((v) => [v.id, v.vm, v.volume, v.revert]);
  deps.stdout(formatTable([['POOL:VOLUME', 'VMNAME', 'VOLUME_NAME', 'REVERT_POSSIBLE'], ...rows]));
  return 0;
}

async function info(deps: CliDeps, spec: string, prop: string | undefined): Promise<number> {
  const { vm, volume } = parseVolumeSpec(spec);
  const snapshots = async () => lines(await deps.client.call('admin.vm.volume.ListSnapshots', vm, { arg: volume }));
  if (prop === 'revisions') {
    deps.stdout((await snapshots()).map((r) => r + '\n').join(''));
    return 0;
  }
  const kv = parseKeyValueLines(await deps.client.call('admin.vm.volume.Info', vm, { arg: volume }));
  if (prop !== undefined) {
    const v = kv.get(prop);
    if (v === undefined || NOT_SHOWN.has(prop)) throw new QubesError('StoragePoolException', `No such property: ${prop}`);
    deps.stdout(v + '\n');
    return 0;
  }
  const keys = [...INFO_ORDER.filter((k) => kv.has(k)), ...[...kv.keys()].filter((k) => !INFO_ORDER.includes(k) && !NOT_SHOWN.has(k))];
  const revisions = await snapshots();
  deps.stdout(formatTable(keys.map((k) => [k, kv.get(k) ?? ''])));
  deps.stdout(revisions.length > 0 ? 'Available revisions (for revert):\n' + revisions.map((r) => `  ${r}\n`).join('') : 'Available revisions (for revert): none\n');
  return 0;
}

async function resize(deps: CliDeps, spec: string, sizeText: string, force: boolean): Promise<number> {
  const { vm, volume } = parseVolumeSpec(spec);
  const size = parseSize(sizeText);
  const current = Number(parseKeyValueLines(await deps.client.call('admin.vm.volume.Info', vm, { arg: volume })).get('size'));
  if (size < current && !force) {
    throw new QubesError('StoragePoolException', `For your own safety, shrinking of ${spec} is disabled (${size} < ${current}); use resize -f if you really mean it`);
  }
  await deps.client.call('admin.vm.volume.Resize', vm, { arg: volume, payload: String(size) });
  return 0;
}

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-volume', description, deps);
  let act: (() => Promise<number>) | undefined;
  p.command('list', { isDefault: true }).aliases(['ls', 'l']).description('list volumes (the default command)')
    .argument('[VMNAME...]', 'only volumes of these qubes')
    .option('-p, --pool <POOL>', 'only volumes in this pool (repeatable)', collect, [])
    .action((names: string[], o: { pool: string[] }) => {
      act = () => list(deps, names, o.pool);
    });
  p.command('info').alias('i').description('show the properties of a volume')
    .argument('<VM:VOLUME>', 'the volume, e.g. work:private').argument('[PROPERTY]', "show only this property; 'revisions' lists the revisions")
    .action((spec: string, prop?: string) => {
      act = () => info(deps, spec, prop);
    });
  p.command('config').aliases(['c', 'set', 's']).description('set revisions_to_keep of a volume')
    .argument('<VM:VOLUME>', 'the volume, e.g. work:private').argument('<PROPERTY>', 'revisions_to_keep').argument('<VALUE>', 'number of revisions', unsigned)
    .action((spec: string, prop: string, value: string) => {
      act = async () => {
        const { vm, volume } = parseVolumeSpec(spec);
        if (prop !== 'revisions_to_keep') throw new UsageError(`cannot set '${prop}' of a volume; only revisions_to_keep can be set`);
        await deps.client.call('admin.vm.volume.Set.revisions_to_keep', vm, { arg: volume, payload: value });
        return 0;
      };
    });
  p.command('resize').alias('extend').description('resize a volume')
    .argument('<VM:VOLUME>', 'the volume, e.g. work:private').argument('<SIZE>', 'new size: bytes, or with K, M, G, T (10^3…) or KiB, MiB, GiB, TiB (2^10…)')
    .option('-f, --force', 'allow shrinking (may destroy data)')
    .action((spec: string, size: string, o: { force?: boolean }) => {
      act = () => resize(deps, spec, size, Boolean(o.force));
    });
  p.command('revert').aliases(['rv', 'r']).description('revert a volume to a kept revision (default: the latest)')
    .argument('<VM:VOLUME>', 'the volume, e.g. work:private').argument('[REVISION]', 'revision to revert to')
    .action((spec: string, rev?: string) => {
      act = async () => {
        const { vm, volume } = parseVolumeSpec(spec);
        await deps.client.call('admin.vm.volume.Revert', vm, { arg: volume, payload: rev ?? '' });
        return 0;
      };
    });
  p.parse(argv, { from: 'user' });
  return act ? act() : 0;
}
