// qvm-volume as Qubes' client has it: list, info, config/set, resize, revert and clear of a qube's
// volumes (admin.vm.volume.*). Volumes are named `VM:VOLUME` and resolved as Qubes' VMVolumeAction.

import { QubesError } from '../../core/errors';
import { formatTable } from '../output';
import { collect, expandVmNames, lines, listQubes, newProgram, parseKeyValueLines, pyRepr, UsageError, type CliDeps } from './common';

export const description = 'Qubes volume and block device management.';

/** The keys `qvm-volume info` shows, in Qubes' order; `is_outdated` follows them. */
const INFO_ITEMS = ['pool', 'vid', 'rw', 'source', 'save_on_stop', 'snap_on_start', 'size', 'usage', 'revisions_to_keep', 'ephemeral'];
/** What `config`/`set` may change, as in Qubes (each is `admin.vm.volume.Set.<property>`). */
const SETTABLE = {
  rw: 'admin.vm.volume.Set.rw',
  revisions_to_keep: 'admin.vm.volume.Set.revisions_to_keep',
  ephemeral: 'admin.vm.volume.Set.ephemeral',
} as const;

export interface VolumeRef {
  vm: string;
  volume: string;
}

/**
 * Qubes' VMVolumeAction: `VM:VOLUME` split at its one colon (else a usage error), then the qube
 * and the volume must exist (else a runtime error, exit 1, before any other call).
 */
export async function resolveVolume(deps: CliDeps, spec: string): Promise<VolumeRef> {
  const parts = spec.split(':');
  if (parts.length !== 2) throw new UsageError('expected a vm & volume combination like foo:bar');
  const [vm, volume] = parts;
  const q = (await listQubes(deps.client)).find((e) => e.name === vm);
  if (!q) throw new QubesError('QubesVMNotFoundError', `no vm ${pyRepr(vm)}`);
  // dom0 has no volumes (and admin.vm.volume.List does not take it as destination).
  const volumes = q.klass === 'AdminVM' ? [] : lines(await deps.client.call('admin.vm.volume.List', vm));
  if (!volumes.includes(volume)) throw new QubesError('StoragePoolException', `vm ${pyRepr(vm)} has no volume ${pyRepr(volume)}`);
  return { vm, volume };
}

/** Bytes, or Qubes' suffixes: K/M/G/T (KB…) are powers of 1000, Ki/Mi/Gi/Ti (KiB…) of 1024. */
export function parseSize(text: string): number {
  const m = /^([0-9]+)\s*(?:([KMGT])(i)?B?)?$/i.exec(text.trim());
  // Qubes' parse_size raises a QubesException (exit 1), not a parser error.
  if (!m) throw new QubesError('QubesException', `Invalid size: ${text} (bytes, or a number with K, M, G, T, Ki, Mi, Gi, Ti, optionally followed by B)`);
  const power = m[2] ? 'KMGT'.indexOf(m[2].toUpperCase()) + 1 : 0;
  const bytes = Number(m[1]) * (m[3] ? 1024 : 1000) ** power;
  if (!Number.isSafeInteger(bytes)) throw new QubesError('QubesException', `Invalid size: ${text} (too large)`);
  return bytes;
}

const volumeInfo = async (deps: CliDeps, v: VolumeRef) => parseKeyValueLines(await deps.client.call('admin.vm.volume.Info', v.vm, { arg: v.volume }));
const revisionsOf = async (deps: CliDeps, v: VolumeRef) => lines(await deps.client.call('admin.vm.volume.ListSnapshots', v.vm, { arg: v.volume }));

interface ListOptions {
  pool: string[];
  full?: boolean;
}

async function list(deps: CliDeps, names: string[], o: ListOptions): Promise<number> {
  const { client } = deps;
  const all = await listQubes(client);
  if (o.pool.length > 0) {
    const known = lines(await client.call('admin.pool.List', 'dom0'));
    if (o.pool.some((p) => !known.includes(p))) throw new UsageError(`No such pools: [${o.pool.map(pyRepr).join(', ')}]`);
  }
  const qubes = names.length > 0 ? expandVmNames(all, names) : all.filter((q) => q.klass !== 'AdminVM');
  const perQube = await Promise.all(
    qubes.filter((q) => q.klass !== 'AdminVM').map(async (q) => {
      const vols = await Promise.all(
        lines(await client.call('admin.vm.volume.List', q.name)).map(async (volume) => ({ volume, info: await volumeInfo(deps, { vm: q.name, volume }) })),
      );
      // As Qubes, the revisions are only asked for volumes that are shown.
      const shown = vols.filter((v) => o.pool.length === 0 || o.pool.includes(v.info.get('pool') ?? ''));
      return Promise.all(
        shown.map(async ({ volume, info }) => ({
          id: `${info.get('pool') ?? ''}:${info.get('vid') ?? ''}`,
          vm: q.name,
          volume,
          revert: (await revisionsOf(deps, { vm: q.name, volume })).length > 0 ? 'Yes' : 'No',
        })),
      );
    }),
  );
  const rows = perQube.flat().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  // Qubes prints a volume shared by several qubes once on a terminal, unless --full.
  const out = rows.map((r, i) => [i > 0 && rows[i - 1].id === r.id && deps.isTTY && !o.full ? '' : r.id, r.vm, r.volume, r.revert]);
  deps.stdout(formatTable([['POOL:VOLUME', 'VMNAME', 'VOLUME_NAME', 'REVERT_POSSIBLE'], ...out]));
  return 0;
}

async function info(deps: CliDeps, spec: string, prop: string | undefined): Promise<number> {
  const v = await resolveVolume(deps, spec);
  if (prop === 'revisions') {
    deps.stdout((await revisionsOf(deps, v)).map((r) => r + '\n').join(''));
    return 0;
  }
  if (prop !== undefined && prop !== 'is_outdated' && !INFO_ITEMS.includes(prop)) {
    throw new QubesError('StoragePoolException', `No such property: ${prop}`);
  }
  const kv = await volumeInfo(deps, v);
  if (prop === 'is_outdated') {
    deps.stdout(`${kv.get('is_outdated') === 'True' ? 'True' : 'False'}\n`);
    return 0;
  }
  if (prop !== undefined) {
    // Kept raw (no "snapshot disabled" note) so that scripts can parse it, as Qubes does.
    deps.stdout(`${kv.get(prop) ?? ''}\n`);
    return 0;
  }
  const rows = INFO_ITEMS.map((k) => {
    const value = kv.get(k) ?? '';
    return [k, k === 'revisions_to_keep' && value === '-1' ? '-1 (snapshot disabled)' : value];
  });
  rows.push(['is_outdated', kv.get('is_outdated') === 'True' ? 'True' : 'False']);
  const revisions = await revisionsOf(deps, v);
  deps.stdout(formatTable(rows));
  deps.stdout(
    revisions.length > 0
      ? 'List of available revisions (for revert):\n' + revisions.map((r) => `  ${r}\n`).join('')
      : 'List of available revisions (for revert): none\n',
  );
  return 0;
}

async function config(deps: CliDeps, spec: string, prop: string, value: string): Promise<number> {
  const v = await resolveVolume(deps, spec);
  if (!Object.prototype.hasOwnProperty.call(SETTABLE, prop)) throw new QubesError('QubesNoSuchPropertyError', `Invalid property: ${prop}`);
  await deps.client.call(SETTABLE[prop as keyof typeof SETTABLE], v.vm, { arg: v.volume, payload: value });
  return 0;
}

async function resize(deps: CliDeps, spec: string, sizeText: string, force: boolean): Promise<number> {
  const v = await resolveVolume(deps, spec);
  const size = parseSize(sizeText);
  if (!force) {
    const current = Number((await volumeInfo(deps, v)).get('size'));
    if (size < current) {
      // Qubes' wording, on one line (Qubes breaks it after the first sentence).
      throw new QubesError(
        'StoragePoolException',
        `Refusing to shrink volume ${spec} from ${current} to ${size} bytes. If you really know what you are doing: ` +
          `manually shrink the filesystem on the volume first, in the qube, not on the host. ` +
          `Then use 'qvm-volume resize --force ${spec} ${size}'`,
      );
    }
  }
  await deps.client.call('admin.vm.volume.Resize', v.vm, { arg: v.volume, payload: String(size) });
  return 0;
}

async function revert(deps: CliDeps, spec: string, revision: string | undefined): Promise<number> {
  const v = await resolveVolume(deps, spec);
  let target = revision;
  if (!target) {
    // Oldest first, as Qubes lists them: the latest is the last one.
    target = (await revisionsOf(deps, v)).at(-1);
    if (!target) throw new QubesError('StoragePoolException', 'No snapshots available');
  }
  await deps.client.call('admin.vm.volume.Revert', v.vm, { arg: v.volume, payload: target });
  return 0;
}

async function clear(deps: CliDeps, spec: string, force: boolean): Promise<number> {
  const v = await resolveVolume(deps, spec);
  if (!force) {
    // Qubes reads the answer from stdin, so `echo y | qvm-volume clear …` works too.
    const ask = deps.prompt;
    if (!ask) throw new UsageError('refusing to clear without confirmation; use -f/--force');
    deps.stdout('This will empty the volume!\n(Data may be preserved in a revision.)\n');
    if ((await ask('Are you sure? [y/N] ')).trim().toLowerCase() !== 'y') {
      deps.stdout('Clear cancelled.\n');
      return 0;
    }
  }
  await deps.client.call('admin.vm.volume.Clear', v.vm, { arg: v.volume });
  return 0;
}

const SPEC_HELP = 'the volume, e.g. work:private';

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-volume', description, deps);
  let act: (() => Promise<number>) | undefined;
  p.command('info').alias('i').description('info about volume')
    .argument('<VM:VOLUME>', SPEC_HELP)
    .argument('[PROPERTY]', "Show only this property instead of all of them; use 'revisions' to list available revisions")
    .action((spec: string, prop?: string) => {
      act = () => info(deps, spec, prop);
    });
  p.command('config').aliases(['c', 'set', 's']).description('set config option for a volume')
    .argument('<VM:VOLUME>', SPEC_HELP).argument('<PROPERTY>', `one of: ${Object.keys(SETTABLE).join(', ')}`).argument('<VALUE>', 'the new value')
    .action((spec: string, prop: string, value: string) => {
      act = () => config(deps, spec, prop, value);
    });
  p.command('resize').alias('extend').description('resize volume for domain')
    .argument('<VM:VOLUME>', SPEC_HELP)
    .argument('<SIZE>', 'New size in bytes, or with K, M, G, T (10^3…) or Ki, Mi, Gi, Ti (2^10…), optionally followed by B')
    .option('-f, --force', 'Force operation, even if new size is smaller than the current one')
    .action((spec: string, size: string, o: { force?: boolean }) => {
      act = () => resize(deps, spec, size, Boolean(o.force));
    });
  p.command('list', { isDefault: true }).aliases(['ls', 'l']).description('list storage volumes')
    .argument('[VMNAME...]', 'list volumes from specified domain(s)')
    .option('-p, --pool <POOL_NAME>', 'only volumes in this pool (repeatable)', collect, [])
    .option('--full', 'print full line for each POOL_NAME:VOLUME_ID & vm combination')
    .action((names: string[], o: ListOptions) => {
      act = () => list(deps, names, o);
    });
  p.command('revert').aliases(['rv', 'r']).description('revert volume to previous revision')
    .argument('<VM:VOLUME>', SPEC_HELP)
    .argument('[REVISION]', 'Optional revision to revert to; if not specified, latest one is assumed')
    .action((spec: string, rev?: string) => {
      act = () => revert(deps, spec, rev);
    });
  p.command('clear').description('clear volume data')
    .argument('<VM:VOLUME>', SPEC_HELP)
    .option('-f, --force', 'Do not prompt for confirmation')
    .action((spec: string, o: { force?: boolean }) => {
      act = () => clear(deps, spec, Boolean(o.force));
    });
  p.parse(argv, { from: 'user' });
  return act ? act() : 0;
}
