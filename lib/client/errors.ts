/**
 * The client library's errors: one class per way a request can fail, each with a stable
 * `code`, so applications branch on class or code and never parse messages.
 */
import { ERROR_TEXT, type ErrorCode, errorName } from '../wire/index.ts';

/** Base class of every error the client library raises on purpose. */
export class FloatlmError extends Error {
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = 'FloatlmError';
    this.code = code;
  }
}

/** No server answered within the retransmission budget. */
export class TimeoutError extends FloatlmError {
  constructor(what: string, servers: readonly string[]) {
    super(
      'ETIMEDOUT',
      `${what}: no answer from ${servers.join(', ')} (server down, wrong port, or a key it does not know)`,
    );
    this.name = 'TimeoutError';
  }
}

/**
 * The server refused: `reason` is the numeric wire code (protocol.md, "Error codes") and
 * `reasonName` (also `code`) its name, e.g. 'NO_SEATS' (`CODE_n` for a code this library
 * does not know).
 */
export class DeniedError extends FloatlmError {
  readonly reason: number;
  readonly reasonName: string;
  readonly retryAfterMs: number;

  constructor(what: string, reason: number, retryAfterMs = 0, detail = '') {
    const text = detail || ERROR_TEXT[reason as ErrorCode] || '';
    const retry = retryAfterMs > 0 ? ` (retry in ${Math.ceil(retryAfterMs / 1000)} s)` : '';
    super(errorName(reason), `${what}: ${errorName(reason)}: ${text}${retry}`);
    this.name = 'DeniedError';
    this.reason = reason;
    this.reasonName = errorName(reason);
    this.retryAfterMs = retryAfterMs;
  }
}

/** The operation was aborted through its AbortSignal. */
export class AbortError extends FloatlmError {
  constructor(what: string) {
    super('ABORT_ERR', `${what}: aborted`);
    this.name = 'AbortError';
  }
}

/** The client was closed while the operation was under way. */
export class ClosedError extends FloatlmError {
  constructor(what: string) {
    super('ECLOSED', `${what}: client closed`);
    this.name = 'ClosedError';
  }
}
