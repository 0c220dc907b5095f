// The qubes.Filecopy service in the receiving qube: unpacks the (hostile) stream into
// ~/QubesIncoming/SOURCE/ and answers Qubes' result header. SOURCE comes from isolad, not the sender.

import { mkdirSync } from 'fs';
import { homedir } from 'os';
import { unpackStream, writeResult } from './filecopy';
import { remoteDomain } from './qube-env';

export async function qfileUnpacker(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const source = remoteDomain(env);
  if (!source) {
    process.stderr.write('qubes.Filecopy: QREXEC_REMOTE_DOMAIN is missing or invalid\n');
    return 125;
  }
  const dest = `${env.HOME || homedir()}/QubesIncoming/${source}`;
  mkdirSync(dest, { recursive: true, mode: 0o700 });
  const r = await unpackStream(process.stdin, dest, { allowAllNames: env.QREXEC_SERVICE_ARGUMENT === 'allow-all-names' });
  await writeResult(process.stdout, r);
  if (r.error) process.stderr.write(`qubes.Filecopy from ${source}: ${r.error.message}\n`);
  return r.error ? 1 : 0;
}
