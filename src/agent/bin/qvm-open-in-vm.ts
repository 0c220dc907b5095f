// Entry of the in-qube qvm-open-in-vm bundle: `qvm-open-in-vm.js TOOL ARGS…` (qvm-open-in-vm or qvm-open-in-dvm).

import { isOpenTool, qvmOpenInVm } from '../open/qvm-open-in-vm';
import { errorText } from '../../core/error-text';

const [tool, ...rest] = process.argv.slice(2);
if (!isOpenTool(tool)) {
  process.stderr.write(`qvm-open-in-vm: unknown tool '${tool}'\n`);
  process.exit(2);
}
qvmOpenInVm(tool, rest).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`${tool}: ${errorText(e)}\n`);
    process.exit(125);
  },
);
