// Entry of the in-qube qrexec-client-vm bundle (the library stays free of process-level code).

import { qrexecClientVm } from '../qrexec-client-vm';
import { EXIT_QREXEC_PROBLEM } from '../../qrexec/client';

qrexecClientVm(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`qrexec-client-vm: ${e.message}\n`);
    process.exit(EXIT_QREXEC_PROBLEM);
  },
);
