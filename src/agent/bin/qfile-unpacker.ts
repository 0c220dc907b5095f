// Entry of the qubes.Filecopy service bundle, run by the agent for a qvm-copy from another qube.

import { qfileUnpacker } from '../qfile-unpacker';

qfileUnpacker().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`qubes.Filecopy: ${e.message}\n`);
    process.exit(125);
  },
);
