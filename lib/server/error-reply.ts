/**
 * ERROR replies written directly: the daemon answers every refusal with one (the floor
 * resync of each restored session, BUSY, skew, ...), and the generic encoder costs three
 * times the HMAC. Byte for byte what `signDatagram` makes of the same ERROR (tested).
 */
import type { KeyedHmac } from '../crypto/hmac.ts';
import {
  checkString,
  Flags,
  HEADER_LENGTH,
  Limits,
  MAGIC,
  MsgType,
  TAG_LENGTH,
  VERSION,
} from '../wire/index.ts';

/** An ERROR's bytes beyond its message text: header, code u16, retryAfterMs u32, length u8, tag. */
export const ERROR_OVERHEAD = HEADER_LENGTH + 2 + 4 + 1 + TAG_LENGTH;

/**
 * A signed ERROR (protocol.md 5.x) with REPLY|FROM_SERVER in auth `mode`, for the request
 * whose header carried `requestId` and `sessionId`.
 * @throws {TypeError|RangeError} when `message` is not a well-formed string of at most
 * Limits.MESSAGE UTF-8 bytes (as the generic encoder)
 */
export function errorReply(
  requestId: number,
  sessionId: bigint,
  seq: number,
  mode: number,
  timestamp: number,
  code: number,
  retryAfterMs: number,
  message: string,
  key: KeyedHmac,
): Uint8Array {
  checkString(message, Limits.MESSAGE, 'message');
  const n = message.length === 0 ? 0 : Buffer.byteLength(message, 'utf8');
  const length = ERROR_OVERHEAD + n;
  // From Node's buffer pool (every byte is written below), as dgram sends Buffers as they are.
  const b = Buffer.allocUnsafe(length);
  b.writeUInt16BE(MAGIC, 0);
  b[2] = VERSION;
  b[3] = MsgType.ERROR;
  b[4] = Flags.REPLY | Flags.FROM_SERVER;
  b[5] = mode;
  b.writeUInt16BE(length, 6);
  b.writeUInt32BE(requestId >>> 0, 8);
  b.writeBigUInt64BE(sessionId, 12);
  b.writeUInt32BE(seq >>> 0, 20);
  b.writeUInt32BE(Math.floor(timestamp / 0x1_0000_0000), 24);
  b.writeUInt32BE(timestamp >>> 0, 28);
  b.writeUInt16BE(code, HEADER_LENGTH);
  b.writeUInt32BE(retryAfterMs >>> 0, HEADER_LENGTH + 2);
  b[HEADER_LENGTH + 6] = n;
  if (n > 0) b.write(message, HEADER_LENGTH + 7, 'utf8');
  key.signTrailing(b);
  return b;
}
