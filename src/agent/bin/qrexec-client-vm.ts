// Entry of the in-qube qrexec-client-vm bundle (the library stays free of process-level code).

import { qrexecClientVm } from '../qrexec-client-vm';
import { EXIT_QREXEC_PROBLEM } from '../../qrexec/client';
import { errorText } from '../../core/error-text';

qrexecClientVm(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`qrexec-client-vm: ${errorText(e)}\n`);
    process.exit(EXIT_QREXEC_PROBLEM);
  },
);
