/**
 * Lease tickets: the proof of a grant a client keeps and re-presents in RECLAIM after a
 * restart or to another server (DEVELOPERS.md "Lease ticket").
 *
 * Layout: version u8 (=1) | keyId u32 | leaseId u64 | tokenId u64 | feature str |
 * version str | count u16 | grantedAt u64 (ms) | mac[32],
 * mac = HMAC-SHA256(serverKey[keyId], "floatlm ticket v1" || bytes before mac).
 */
import { type Keyring, label, MAC_LENGTH } from '../crypto/index.ts';
import {
  cursor,
  DecodeError,
  ErrorCode,
  expectEnd,
  Limits,
  readString,
  readU16,
  readU32,
  readU53,
  readU64,
  stringLength,
  writeString,
  writeU8,
  writeU16,
  writeU32,
  writeU53,
  writeU64,
} from '../wire/index.ts';
import { openSigned } from './token.ts';

const TICKET_LABEL = label('floatlm ticket v1');

export interface LeaseTicket {
  keyId: number;
  leaseId: bigint;
  tokenId: bigint;
  feature: string;
  version: string;
  count: number;
  /** ms since the epoch. */
  grantedAt: number;
  mac: Uint8Array;
  bytes: Uint8Array;
}

export interface TicketFields {
  leaseId: bigint;
  tokenId: bigint;
  feature: string;
  version: string;
  count: number;
  grantedAt: number;
}

/**
 * A ticket signed with the keyring's current key at `now`.
 * @throws {TypeError|RangeError} naming the field when one is out of range
 */
export function makeTicket(f: TicketFields, keyring: Keyring, now: number): LeaseTicket {
  for (const n of ['leaseId', 'tokenId'] as const) {
    if (typeof f[n] !== 'bigint' || f[n] < 0n || f[n] > 0xffffffffffffffffn) {
      throw new RangeError(`fields.${n} must be a bigint in [0, 2^64)`);
    }
  }
  if (typeof f.feature !== 'string' || stringLength(f.feature) - 1 > Limits.NAME) {
    throw new RangeError(`fields.feature must be a string of at most ${Limits.NAME} bytes`);
  }
  if (typeof f.version !== 'string' || stringLength(f.version) - 1 > Limits.VERSION_STR) {
    throw new RangeError(`fields.version must be a string of at most ${Limits.VERSION_STR} bytes`);
  }
  if (!Number.isInteger(f.count) || f.count < 0 || f.count > 0xffff)
    throw new RangeError('fields.count must be a u16');
  if (!Number.isSafeInteger(f.grantedAt) || f.grantedAt < 0)
    throw new RangeError('fields.grantedAt must be ms ≥ 0');
  const key = keyring.current(now);
  const length =
    1 + 4 + 8 + 8 + stringLength(f.feature) + stringLength(f.version) + 2 + 8 + MAC_LENGTH;
  const out = new Uint8Array(length);
  const c = cursor(out);
  writeU8(c, 1);
  writeU32(c, key.keyId);
  writeU64(c, f.leaseId);
  writeU64(c, f.tokenId);
  writeString(c, f.feature);
  writeString(c, f.version);
  writeU16(c, f.count);
  writeU53(c, f.grantedAt);
  key.hmac.macInto(out, length - MAC_LENGTH, TICKET_LABEL, out.subarray(0, length - MAC_LENGTH));
  return decodeTicket(out);
}

/**
 * Decodes a ticket without checking its mac.
 * @throws {DecodeError} TOO_LARGE, TRUNCATED, BAD_VERSION, BAD_LENGTH, BAD_STRING,
 *   OUT_OF_RANGE, TRAILING_BYTES
 */
export function decodeTicket(bytes: Uint8Array): LeaseTicket {
  const c = openSigned(bytes, Limits.TICKET, 'ticket', 1);
  const keyId = readU32(c, 'keyId');
  const leaseId = readU64(c, 'leaseId');
  const tokenId = readU64(c, 'tokenId');
  const feature = readString(c, Limits.NAME, 'feature');
  const version = readString(c, Limits.VERSION_STR, 'version');
  const count = readU16(c, 'count');
  const grantedAt = readU53(c, 'grantedAt');
  expectEnd(c, 'ticket fields');
  return {
    keyId,
    leaseId,
    tokenId,
    feature,
    version,
    count,
    grantedAt,
    mac: bytes.slice(bytes.length - MAC_LENGTH),
    bytes: bytes.slice(),
  };
}

export type TicketCheck = { ok: true; ticket: LeaseTicket } | { ok: false; code: ErrorCode };

/**
 * Verifies a ticket: decodes, finds its key (unknown or retired → TICKET_BAD), checks the
 * mac in constant time, and, when `tokenId` is given, that the ticket belongs to that
 * session. Every failure is TICKET_BAD; never throws on hostile input.
 */
export function verifyTicket(
  bytes: Uint8Array,
  keyring: Keyring,
  now: number,
  tokenId?: bigint,
): TicketCheck {
  let ticket: LeaseTicket;
  try {
    ticket = decodeTicket(bytes);
  } catch (e) {
    if (e instanceof DecodeError) return { ok: false, code: ErrorCode.TICKET_BAD };
    throw e;
  }
  const found = keyring.lookup(ticket.keyId, now);
  if (!found.ok) return { ok: false, code: ErrorCode.TICKET_BAD };
  const body = ticket.bytes.subarray(0, ticket.bytes.length - MAC_LENGTH);
  if (!found.key.hmac.verify(ticket.mac, TICKET_LABEL, body))
    return { ok: false, code: ErrorCode.TICKET_BAD };
  if (tokenId !== undefined && ticket.tokenId !== tokenId)
    return { ok: false, code: ErrorCode.TICKET_BAD };
  return { ok: true, ticket };
}
