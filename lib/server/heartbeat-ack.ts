/**
 * The HEARTBEAT_ACK, the reply the daemon sends most: its fixed layout written directly (the
 * generic encoder costs more than the rest of the reply).
 */
import type { KeyedHmac } from '../crypto/hmac.ts';
import {
  Flags,
  HEADER_LENGTH,
  MAGIC,
  MsgType,
  Offset,
  TAG_LENGTH,
  VERSION,
} from '../wire/index.ts';

/** Bytes of a HEARTBEAT_ACK: header, leases u16, queued u16, heartbeatMs u32, tag. */
export const HEARTBEAT_ACK_LENGTH = HEADER_LENGTH + 8 + TAG_LENGTH;

/**
 * A signed HEARTBEAT_ACK (protocol.md 5.6) with REPLY|FROM_SERVER and the request's mode,
 * request id, session id and seq, encoded directly: the daemon sends one per heartbeat, and
 * the generic encoder costs more than the rest of the reply. Positional, to allocate
 * nothing but the bytes.
 * @throws {RangeError} when a field is out of its range
 */
/**
 * The HEARTBEAT_ACK answering the HEARTBEAT `request` (whose header has been checked): its
 * request id, session id and seq copied from the request's header bytes, the rest written
 * byte by byte. The daemon's hot path; the same bytes as `encodeHeartbeatAck`.
 */
export function heartbeatAckFor(
  request: Uint8Array,
  mode: number,
  timestamp: number,
  leases: number,
  queued: number,
  heartbeatMs: number,
  key: KeyedHmac,
): Uint8Array {
  // From Node's buffer pool (every byte is written below): a fresh Uint8Array costs its own
  // zeroed ArrayBuffer, and dgram converts a non-Buffer before sending.
  const b = Buffer.allocUnsafe(HEARTBEAT_ACK_LENGTH);
  b[6] = 0;
  b[0] = MAGIC >> 8;
  b[1] = MAGIC & 0xff;
  b[2] = VERSION;
  b[3] = MsgType.HEARTBEAT_ACK;
  b[4] = Flags.REPLY | Flags.FROM_SERVER;
  b[5] = mode;
  b[7] = HEARTBEAT_ACK_LENGTH;
  // Request id, session id and seq, contiguous, as the request has them.
  b.set(request.subarray(Offset.REQUEST_ID, Offset.TIMESTAMP), Offset.REQUEST_ID);
  const hi = Math.floor(timestamp / 0x1_0000_0000);
  const lo = timestamp >>> 0;
  b[26] = (hi >>> 8) & 0xff;
  b[27] = hi & 0xff;
  b[24] = hi >>> 24;
  b[25] = (hi >>> 16) & 0xff;
  b[28] = lo >>> 24;
  b[29] = (lo >>> 16) & 0xff;
  b[30] = (lo >>> 8) & 0xff;
  b[31] = lo & 0xff;
  b[32] = leases >>> 8;
  b[33] = leases & 0xff;
  b[34] = queued >>> 8;
  b[35] = queued & 0xff;
  b[36] = heartbeatMs >>> 24;
  b[37] = (heartbeatMs >>> 16) & 0xff;
  b[38] = (heartbeatMs >>> 8) & 0xff;
  b[39] = heartbeatMs & 0xff;
  key.signTrailing(b);
  return b;
}

export function encodeHeartbeatAck(
  requestId: number,
  sessionId: bigint,
  seq: number,
  mode: number,
  timestamp: number,
  leases: number,
  queued: number,
  heartbeatMs: number,
  key: KeyedHmac,
): Uint8Array {
  if (!(u32(requestId) && u32(seq) && u32(heartbeatMs))) {
    throw new RangeError('requestId, seq and heartbeatMs must be in [0, 2^32)');
  }
  if (!(leases >= 0 && leases <= 0xffff && queued >= 0 && queued <= 0xffff)) {
    throw new RangeError('leases and queued must be in [0, 65535]');
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new RangeError('timestamp must be a non-negative safe integer');
  }
  if (!(mode >= 1 && mode <= 4)) throw new RangeError('mode must be 1, 2, 3 or 4');
  if (sessionId < 0n || sessionId > 0xffff_ffff_ffff_ffffn) {
    throw new RangeError('sessionId must be a u64');
  }
  const b = new Uint8Array(HEARTBEAT_ACK_LENGTH);
  const v = new DataView(b.buffer);
  v.setUint16(0, MAGIC);
  b[2] = VERSION;
  b[3] = MsgType.HEARTBEAT_ACK;
  b[4] = Flags.REPLY | Flags.FROM_SERVER;
  b[5] = mode;
  v.setUint16(6, HEARTBEAT_ACK_LENGTH);
  v.setUint32(8, requestId);
  v.setBigUint64(12, sessionId);
  v.setUint32(20, seq);
  v.setUint32(24, Math.floor(timestamp / 0x1_0000_0000));
  v.setUint32(28, timestamp >>> 0);
  v.setUint16(32, leases);
  v.setUint16(34, queued);
  v.setUint32(36, heartbeatMs);
  key.signTrailing(b);
  return b;
}

/** Whether `v` is a u32. */
export function u32(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
}
