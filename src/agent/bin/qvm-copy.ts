// Entry of the in-qube qvm-copy bundle: `qvm-copy.js TOOL ARGS…`, TOOL being qvm-copy, qvm-copy-to-vm,
// qvm-move or qvm-move-to-vm (the wrappers in /usr/local/bin pass it).

import { isCopyTool, qvmCopy } from '../qvm-copy';
import { errorText } from '../../core/error-text';

const [tool, ...rest] = process.argv.slice(2);
if (!isCopyTool(tool)) {
  process.stderr.write(`qvm-copy: unknown tool '${tool}'\n`);
  process.exit(2);
}
qvmCopy(tool, rest).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`${tool}: ${errorText(e)}\n`);
    process.exit(125);
  },
);
