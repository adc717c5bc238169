/**
 * Numeric error codes carried on the wire (ERROR replies, CHECKOUT_REPLY denials,
 * RECLAIM results), with a readable name and one-line meaning each. protocol.md's
 * "Error codes" section is checked against this table by the tests.
 */

export const ErrorCode = {
  OK: 0,
  BAD_REQUEST: 1,
  UNSUPPORTED: 2,
  TOKEN_BAD_SIGNATURE: 16,
  TOKEN_UNKNOWN_KEY: 17,
  TOKEN_EXPIRED: 18,
  TOKEN_FUTURE: 19,
  TOKEN_REVOKED: 20,
  TOKEN_WRONG_HOST: 21,
  TOKEN_MALFORMED: 22,
  CLOCK_SKEW: 32,
  REPLAY: 33,
  UNKNOWN_SESSION: 34,
  NEED_PADDING: 35,
  WRONG_MODE: 36,
  NO_SUCH_FEATURE: 48,
  NO_SUCH_VERSION: 49,
  FEATURE_EXPIRED: 50,
  NO_SEATS: 51,
  USER_MAX: 52,
  HOST_MAX: 53,
  QUEUE_FULL: 54,
  NOT_HOLDER: 55,
  IN_GRACE: 56,
  ALREADY_RECLAIMED: 57,
  SESSION_LIMIT: 58,
  TICKET_BAD: 59,
  REMOVED: 60,
  RATE_LIMITED: 64,
  BUSY: 65,
  SHUTTING_DOWN: 66,
  NOT_PERMITTED: 67,
  INTERNAL: 68,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** One line per code: what it means to the client. */
export const ERROR_TEXT: Readonly<Record<ErrorCode, string>> = {
  0: 'success',
  1: 'the request verified but its body is not acceptable for its type',
  2: 'the request is valid but this server does not support it',
  16: 'token signature does not verify',
  17: 'token was signed by an unknown or retired server key',
  18: 'token has expired',
  19: 'token was issued in the future beyond the allowed clock skew',
  20: 'token has been revoked',
  21: 'token presented from a host other than the one it was issued to',
  22: 'token bytes do not decode',
  32: 'request timestamp outside the allowed clock skew',
  33: 'request nonce or sequence number already seen',
  34: 'session unknown to this server: present the token (auth mode 2)',
  35: 'first-contact request too small: pad it to at least 600 bytes',
  36: 'this message type may not be sent in this auth mode',
  48: 'no such feature',
  49: 'no feature of the requested version or higher',
  50: 'feature has expired',
  51: 'all seats in use',
  52: 'per-user maximum reached',
  53: 'per-host maximum reached',
  54: 'queue is full',
  55: 'no such lease held by this session',
  56: 'server in restart grace: only reclaims are served; retry after the time given',
  57: 'lease already reclaimed',
  58: 'too many sessions for this user or host',
  59: 'lease ticket does not verify or belongs to another session',
  60: 'lease removed by an administrator',
  64: 'rate limited: retry after the time given',
  65: 'server busy: retry after the time given',
  66: 'server shutting down',
  67: 'not permitted for this key',
  68: 'internal server error',
};

/** Readable name of a code, or `CODE_<n>` for one this build does not know. */
export function errorName(code: number): string {
  for (const [name, value] of Object.entries(ErrorCode)) if (value === code) return name;
  return `CODE_${code}`;
}
