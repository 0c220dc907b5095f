// Entry of the qubes.OpenInVM / qubes.OpenURL service bundle: `qubes-open.js file|url`.

import { openInVmService, openUrlService } from '../open/open-service';
import { errorText } from '../../core/error-text';

const kind = process.argv[2];
const run = kind === 'url' ? openUrlService() : kind === 'file' ? openInVmService() : Promise.resolve(2);
run.then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`qubes-open: ${errorText(e)}\n`);
    process.exit(125);
  },
);
