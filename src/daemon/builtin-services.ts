// What isolad puts in every qube's /usr/lib/isola besides the bundles: the built-in qrexec services
// (found after the qube's own /etc/qubes-rpc, which may override them) and small shell tools.

const LIB = '/usr/lib/isola';
const node = (bundle: string, ...args: string[]) => `#!/bin/sh\nexec /usr/bin/node ${LIB}/${bundle} ${[...args, '"$@"'].join(' ')}\n`;

/**
 * The qube's own clipboard until qubes have a GUI: a private file in the user's home. `copy` stores
 * stdin (what Ctrl+C would do), `paste` prints it; the host's qvm-clipboard moves it between qubes.
 */
const ISOLA_CLIPBOARD = `#!/bin/sh
# isola-clipboard copy|paste: this qube's clipboard (stdin -> clipboard, clipboard -> stdout).
dir="\${HOME:?}/.cache/isola"
case "$1" in
  copy) umask 077 && mkdir -p "$dir" && cat > "$dir/.clipboard.new" && mv -f "$dir/.clipboard.new" "$dir/clipboard" ;;
  paste) if [ -f "$dir/clipboard" ]; then exec cat -- "$dir/clipboard"; fi ;;
  *) echo "usage: isola-clipboard copy|paste" >&2; exit 2 ;;
esac
`;

/**
 * Qubes' qubes.VMShell: a shell that reads its commands from the caller's stdin (dom0's qvm-run sends
 * `COMMAND; exit\n` first, then its own stdin). qubes.VMRootShell is the same shell; its rpc-config
 * below makes the agent run it as root, as Qubes' `force-user='root'` does.
 */
// bash, not dash: reading a script from a pipe, bash takes one byte at a time, so the caller's own
// stdin that follows `COMMAND; exit` is left to the command; dash reads ahead and swallows it.
const VM_SHELL = '#!/bin/sh\nif [ -x /bin/bash ]; then exec /bin/bash; fi\nexec /bin/sh\n';

/** Service name -> script. */
export const BUILTIN_SERVICES: Record<string, string> = {
  'qubes.VMShell': VM_SHELL,
  'qubes.VMRootShell': VM_SHELL,
  'qubes.Filecopy': node('qfile-unpacker.js'),
  'qubes.OpenInVM': node('qubes-open.js', 'file'),
  'qubes.OpenURL': node('qubes-open.js', 'url'),
  'qubes.ClipboardCopy': `#!/bin/sh\nexec /bin/sh ${LIB}/isola-clipboard paste\n`,
  'qubes.ClipboardPaste': `#!/bin/sh\nexec /bin/sh ${LIB}/isola-clipboard copy\n`,
};

/**
 * Service name -> Qubes' TCP service target: a symlink the agent connects to instead of running it.
 * qubes.UpdatesProxy reaches the update qube's tinyproxy (started there only if it is a netvm, so
 * elsewhere the call fails with "connection refused"), as Qubes' symlink to /dev/tcp/127.0.0.1/8082.
 */
export const BUILTIN_TCP_SERVICES: Record<string, string> = {
  'qubes.UpdatesProxy': '/dev/tcp/127.0.0.1/8082',
};

/** Service name -> Qubes' rpc-config text (/usr/lib/isola/rpc-config in the qube; the qube's own /etc/qubes/rpc-config wins). */
export const BUILTIN_RPC_CONFIG: Record<string, string> = {
  'qubes.VMRootShell': "force-user = 'root'\n",
};

/** File name in /usr/lib/isola -> shell script. */
export const BUILTIN_SCRIPTS: Record<string, string> = { 'isola-clipboard': ISOLA_CLIPBOARD };
