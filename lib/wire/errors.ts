/**
 * Decode errors: the one exception type the codec throws for malformed bytes.
 * Every violation has a stable `code` (documented in protocol.md, "Error codes").
 */

/** Stable codes for every way a datagram (or token) can fail to decode. */
export const DecodeErrorCode = {
  TRUNCATED: 'TRUNCATED',
  BAD_MAGIC: 'BAD_MAGIC',
  BAD_VERSION: 'BAD_VERSION',
  UNKNOWN_TYPE: 'UNKNOWN_TYPE',
  BAD_AUTH_MODE: 'BAD_AUTH_MODE',
  BAD_FLAGS: 'BAD_FLAGS',
  BAD_LENGTH: 'BAD_LENGTH',
  TRAILING_BYTES: 'TRAILING_BYTES',
  OUT_OF_RANGE: 'OUT_OF_RANGE',
  BAD_STRING: 'BAD_STRING',
  TOO_LARGE: 'TOO_LARGE',
} as const;

export type DecodeErrorCode = (typeof DecodeErrorCode)[keyof typeof DecodeErrorCode];

/** Raised by every decoder for malformed input; never any other exception type. */
export class DecodeError extends Error {
  readonly code: DecodeErrorCode;
  /** Byte offset (from the start of the buffer) where the problem was found. */
  readonly offset: number;

  constructor(code: DecodeErrorCode, message: string, offset: number) {
    super(`${code}: ${message} at byte ${offset}`);
    this.name = 'DecodeError';
    this.code = code;
    this.offset = offset;
  }
}

/**
 * Builds a DecodeError; a factory so call sites stay one line and messages stay uniform.
 */
export function decodeError(code: DecodeErrorCode, message: string, offset: number): DecodeError {
  return new DecodeError(code, message, offset);
}
