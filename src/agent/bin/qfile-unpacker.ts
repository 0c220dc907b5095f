// Entry of the qubes.Filecopy service bundle, run by the agent for a qvm-copy from another qube.

import { qfileUnpacker } from '../qfile-unpacker';
import { errorText } from '../../core/error-text';

qfileUnpacker().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`qubes.Filecopy: ${errorText(e)}\n`);
    process.exit(125);
  },
);
