// Errors with Qubes' exception names as stable codes: the wire carries {code, message},
// the CLI prints the message on one line, stack traces stay in the daemon log.

export type QubesErrorCode =
  | 'QubesException'
  | 'QubesVMNotFoundError'
  | 'QubesVMAlreadyExistsError'
  | 'QubesVMError'
  | 'QubesVMInUseError'
  | 'QubesVMNotStartedError'
  | 'QubesVMNotRunningError'
  | 'QubesVMNotPausedError'
  | 'QubesVMNotHaltedError'
  | 'QubesVMShutdownTimeoutError'
  | 'QubesNoTemplateError'
  | 'QubesValueError'
  | 'QubesPropertyValueError'
  | 'QubesNoSuchPropertyError'
  | 'QubesNotImplementedError'
  | 'QubesFeatureNotFoundError'
  | 'QubesTagNotFoundError'
  | 'QubesLabelNotFoundError'
  | 'StoragePoolException'
  | 'PermissionDenied'
  | 'ProtocolError';

export class QubesError extends Error {
  constructor(readonly code: QubesErrorCode, message: string) {
    super(message);
    this.name = code;
  }
}

export const vmNotFound = (name: string) => new QubesError('QubesVMNotFoundError', `No such domain: '${name}'`);
export const valueError = (message: string) => new QubesError('QubesValueError', message);
export const protocolError = (message: string) => new QubesError('ProtocolError', message);

export function propertyValueError(qube: string, prop: string, message: string): QubesError {
  return new QubesError('QubesPropertyValueError', `${qube}: property '${prop}': ${message}`);
}

export function isQubesError(e: unknown): e is QubesError {
  return e instanceof QubesError;
}
