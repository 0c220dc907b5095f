// qvm-unpause: see qvm-pause.ts.
import { pauseCommand } from './qvm-pause';

export const { description, run } = pauseCommand('qvm-unpause');
