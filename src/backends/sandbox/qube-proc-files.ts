// The qube's own /proc/cmdline and boot_id. Inside a sandbox both are the host's: the command line
// names the host's kernel setup (and, on a host that is itself a guest, its hypervisor's agent), the
// boot id is a stable identifier of the host shared by all its qubes. A VM has its own of both, so
// a qube gets a neutral command line and a boot id made at each start. runc refuses bind mounts under
// /proc, so the files are put in place by a createContainer hook (src/native/isola-proc-bind.c).
// Pure: the backend supplies the helper's path and the random id.

export interface ProcFile {
  /** A file of the qube's procfs, covered by `content`. */
  destination: string;
  content: string;
}

export interface ProcFiles {
  /** Absolute host path of isola-proc-bind. */
  helper: string;
  files: readonly ProcFile[];
}

/** An OCI runtime-spec hook entry. */
export interface OciHook {
  path: string;
  args: string[];
  timeout?: number;
}

/** What a qube reads as its kernel command line: nothing of the host's. */
export const NEUTRAL_CMDLINE = 'quiet\n';
export const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const HOOK_TIMEOUT_S = 10;

/** The files for one start of a qube; `bootId` is a fresh random UUID (crypto.randomUUID()). */
export function qubeProcFiles(helper: string, bootId: string): ProcFiles {
  if (!helper.startsWith('/')) throw new Error(`isola-proc-bind helper ${JSON.stringify(helper)} must be an absolute path`);
  if (!UUID_RE.test(bootId)) throw new Error(`boot id ${JSON.stringify(bootId)} is not a lower-case UUID`);
  return {
    helper,
    files: [
      { destination: '/proc/cmdline', content: NEUTRAL_CMDLINE },
      { destination: BOOT_ID_FILE, content: `${bootId}\n` },
    ],
  };
}

/** The createContainer hook that binds the files (argv: DEST CONTENT pairs). */
export function procBindHook(p: ProcFiles): OciHook {
  const args = ['isola-proc-bind'];
  for (const f of p.files) {
    if (!f.destination.startsWith('/proc/') || f.content.includes('\0')) {
      throw new Error(`proc file ${JSON.stringify(f.destination)}: must be under /proc/, content without NUL`);
    }
    args.push(f.destination, f.content);
  }
  return { path: p.helper, args, timeout: HOOK_TIMEOUT_S };
}
