/**
 * The names a request is kept under: its in-memory reply-cache key and its durable record
 * key (who, authenticated, and which request), which request types change state, and the
 * clipping of a message to the wire's 200 bytes.
 */
import { AuthMode, type Head, MsgType, Offset } from '../wire/index.ts';

/** A reply-cache key for modes 2 and 3 from the header bytes (request id, session id). */
export function sessionCacheKey(bytes: Uint8Array): string {
  const o = Offset.REQUEST_ID;
  // Request id and session id are contiguous: six UTF-16 units after an `s`, never equal
  // to a mode 1 or 4 key, which are longer.
  return String.fromCharCode(
    0x73,
    (bytes[o]! << 8) | bytes[o + 1]!,
    (bytes[o + 2]! << 8) | bytes[o + 3]!,
    (bytes[o + 4]! << 8) | bytes[o + 5]!,
    (bytes[o + 6]! << 8) | bytes[o + 7]!,
    (bytes[o + 8]! << 8) | bytes[o + 9]!,
    (bytes[o + 10]! << 8) | bytes[o + 11]!,
  );
}

/** Whether requests of this type change state (and so are kept durably, exactly once). */
export function changesState(type: number): boolean {
  return (
    type === MsgType.HELLO ||
    type === MsgType.CHECKOUT ||
    type === MsgType.CHECKIN ||
    type === MsgType.RECLAIM ||
    type === MsgType.ADMIN
  );
}

/** Durable record key: 's' session id, request id; 'c' credId nonce; 'a' keyId tag prefix. */
export function recordKey(head: Head): Uint8Array {
  const b = head.bytes;
  switch (head.auth.mode) {
    case AuthMode.CREDENTIAL:
      return Buffer.concat([Buffer.from(`c${head.auth.credId}\0`), head.auth.nonce]);
    case AuthMode.ADMIN:
      return Buffer.concat([
        Buffer.from(`a${head.auth.keyId}\0`),
        b.subarray(b.length - 32, b.length - 16),
      ]);
    default:
      return Buffer.concat([Buffer.from('s'), b.subarray(Offset.REQUEST_ID, Offset.SEQ)]);
  }
}

/** The in-memory cache key of a request. */
export function cacheKeyOf(head: Head): string {
  switch (head.auth.mode) {
    case AuthMode.CREDENTIAL:
    case AuthMode.ADMIN:
      return Buffer.from(recordKey(head)).toString('latin1');
    default:
      return sessionCacheKey(head.bytes);
  }
}

/** Clips a message to the wire's 200 bytes. */
export function clip(s: string): string {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= 200) return s;
  const head = b
    .subarray(0, 197)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
  return `${head}...`;
}
