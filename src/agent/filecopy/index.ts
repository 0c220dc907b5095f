// Public face of the qubes.Filecopy stream (Qubes-compatible): the sender the in-qube qvm-copy tools use
// and the hostile-stream-proof receiver the qubes.Filecopy service runs.

export { packPaths, describeRefusal, FilecopyError, type PackOptions, type PackResult } from './pack';
export { unpackStream, writeResult, type UnpackOptions, type UnpackResult } from './unpack';
export {
  Errno, errnoName, errnoText, crc32Update, needsAllowAllNames, MAX_PATH_LENGTH, MAX_SYMLINK_TARGET,
} from './format';
