/**
 * The package's public entry point (`import … from 'floatlm'`): the client library, its
 * errors, the wire's named error codes and admin operations, and `loadCredential` for the
 * credential file `floatlm keys init` writes. Everything else is internal and may change.
 */
import { type ClientCredential, loadClientCredential } from './crypto/files.ts';

export {
  type CheckoutOptions,
  Client,
  type ConnectOptions,
  connect,
  Lease,
  type PongInfo,
  parseServer,
  type StatusResult,
} from './client/client.ts';
export {
  AbortError,
  ClosedError,
  DeniedError,
  FloatlmError,
  TimeoutError,
} from './client/errors.ts';
export type { RetryPolicy } from './client/retry.ts';
export { KeyFileError, KeyFileErrorCode } from './crypto/errors.ts';
export type { ClientCredential } from './crypto/files.ts';
export { ERROR_TEXT, ErrorCode, errorName } from './wire/codes.ts';
export { AdminOp } from './wire/constants.ts';

/**
 * Loads a client credential file (`{"version":1,"id","key","servers"}`, mode 0600, as
 * `floatlm keys init` writes it); a relative path is taken from the current directory.
 * The result's `id` and `key` are what `connect({ credential })` takes, `servers` what
 * `connect({ servers })` takes.
 * @throws {TypeError} when file is not a non-empty string
 * @throws {KeyFileError} when the file is missing, unreadable, readable by group or others,
 *   or malformed (the message names the file and the field)
 */
export function loadCredential(file: string): ClientCredential {
  if (typeof file !== 'string' || file === '')
    throw new TypeError('file must be a non-empty string (the credential file path)');
  return loadClientCredential(file);
}
