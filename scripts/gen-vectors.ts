/**
 * Generates the known-answer test vectors: test/fixtures/vectors.json and the appendix of
 * protocol.md (between `<!-- vectors:begin -->` and `<!-- vectors:end -->`). Everything is
 * fixed (keys, times, ids, nonces), so two runs write identical bytes. The keys follow
 * protocol.md "Keys": a server key from a keyring secret, an example token and lease ticket,
 * the session key derived from the token, and the wrapped key of HELLO_OK.
 *
 * Run: `npx tsx scripts/gen-vectors.ts` (or `npm run vectors`). The tests import the
 * builders and fail when the files differ from what this script would write.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import {
  type AnyDatagram,
  AuthMode,
  type Bodies,
  CheckoutStatus,
  cursor,
  ErrorCode,
  encodeToBytes,
  Flags,
  MsgType,
  ReservationType,
  SCHEMAS,
  ServerState,
  StatusRecord,
  TYPE_NAMES,
  toHex,
  utf8,
  writeBytes,
  writeString,
  writeU8,
  writeU16,
  writeU32,
  writeU53,
  writeU64,
} from '../lib/wire/index.ts';
import type { Schema } from '../lib/wire/schema.ts';

export const BEGIN = '<!-- vectors:begin -->';
export const END = '<!-- vectors:end -->';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURE_PATH = join(root, 'test/fixtures/vectors.json');
export const PROTOCOL_PATH = join(root, 'protocol.md');

/** JSON form of one vector (see protocol.md, appendix). */
export interface Vector {
  name: string;
  /** Which key signs it, in words. */
  keyName: string;
  key: string;
  datagram: string;
  type: number;
  typeName: string;
  flags: number;
  auth: number;
  requestId: number;
  sessionId: string;
  seq: number;
  timestamp: number;
  authBlock: Record<string, string>;
  body: Record<string, unknown>;
}

const range = (n: number, from = 0): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff);
const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const u32be = (v: number): Uint8Array => Uint8Array.of(v >>> 24, v >>> 16, v >>> 8, v);
const u64be = (v: bigint): Uint8Array => {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, v);
  return out;
};
function build(n: number, write: (c: ReturnType<typeof cursor>) => void): Uint8Array {
  const out = new Uint8Array(n);
  const c = cursor(out);
  write(c);
  return out.subarray(0, c.start);
}

/** Every fixed input of the vectors and every derived key, for protocol.md. */
export function derive() {
  const serverSecret = range(32, 0x40);
  const keyId = (1 << 16) | 5; // secret 1, epoch 5
  const serverKey = hkdf(sha256, serverSecret, utf8('floatlm keyring v1'), u32be(keyId), 32);
  const credentialKey = range(32, 0x00);
  const adminKey = range(32, 0x20);
  const tokenId = 0x0123456789abcdefn;
  const t0 = 1_780_000_000_000; // 2026-05-28T20:26:40Z
  const issuedAt = t0 / 1000;
  const tokenBody = build(256, (c) => {
    writeU8(c, 1);
    writeU32(c, keyId);
    writeU64(c, tokenId);
    writeU32(c, issuedAt);
    writeU32(c, issuedAt + 8 * 3600);
    writeU8(c, 4);
    writeBytes(c, Uint8Array.of(192, 0, 2, 10));
    writeU16(c, 50000);
    for (const s of ['ws1', 'acme', 'cad', '2.1', 'alice']) writeString(c, s);
  });
  const tokenMac = hmac(sha256, serverKey, concat(utf8('floatlm token v1'), tokenBody));
  const token = concat(tokenBody, tokenMac);
  const sessionKey = hkdf(
    sha256,
    serverKey,
    u64be(tokenId),
    concat(utf8('floatlm session v1'), tokenMac),
    32,
  );
  const helloNonce = range(16, 0xa0);
  const wrapMask = hmac(
    sha256,
    credentialKey,
    concat(utf8('floatlm wrap v1'), helloNonce, u64be(tokenId)),
  );
  const wrappedKey = sessionKey.map((b, i) => b ^ wrapMask[i]!);
  const leaseId = 0x1000000000000001n;
  const ticketBody = build(256, (c) => {
    writeU8(c, 1);
    writeU32(c, keyId);
    writeU64(c, leaseId);
    writeU64(c, tokenId);
    writeString(c, 'solver');
    writeString(c, '3.0');
    writeU16(c, 2);
    writeU53(c, t0 + 2_000);
  });
  const ticket = concat(
    ticketBody,
    hmac(sha256, serverKey, concat(utf8('floatlm ticket v1'), ticketBody)),
  );
  return {
    serverSecret,
    keyId,
    serverKey,
    credentialKey,
    adminKey,
    tokenId,
    t0,
    token,
    tokenMac,
    sessionKey,
    helloNonce,
    wrapMask,
    wrappedKey,
    leaseId,
    ticket,
  };
}

/** A JSON-safe copy: bigints as decimal strings, bytes as hex. */
function jsonOf(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return toHex(v);
  if (Array.isArray(v)) return v.map(jsonOf);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonOf(x)]));
  }
  return v;
}

/** The inverse of the JSON form of a body, driven by its schema. */
export function bodyFromJson(
  schema: Schema,
  json: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of schema) {
    const v = json[f.name];
    switch (f.kind) {
      case 'u64':
        out[f.name] = BigInt(v as string);
        break;
      case 'bytes':
      case 'fixed':
        out[f.name] = new Uint8Array(Buffer.from(v as string, 'hex'));
        break;
      case 'list':
        out[f.name] = (v as Record<string, unknown>[]).map((x) => bodyFromJson(f.item, x));
        break;
      case 'union':
        out[f.name] = (v as Record<string, unknown>[]).map((x) => ({
          [f.tag]: x[f.tag],
          ...bodyFromJson(f.variants[x[f.tag] as number]!, x),
        }));
        break;
      default:
        out[f.name] = v;
    }
  }
  return out;
}

/** The datagram a vector describes, tag all zero (sign it to compare). */
export function datagramFromVector(v: Vector): AnyDatagram {
  const request = v.flags === 0;
  const a = v.authBlock;
  const auth =
    v.auth === AuthMode.CREDENTIAL
      ? request
        ? { mode: 1, credId: a.credId, nonce: new Uint8Array(Buffer.from(a.nonce!, 'hex')) }
        : { mode: 1, credId: '', nonce: new Uint8Array(16) }
      : v.auth === AuthMode.TOKEN
        ? { mode: 2, token: new Uint8Array(request ? Buffer.from(a.token!, 'hex') : []) }
        : v.auth === AuthMode.ADMIN
          ? { mode: 4, keyId: request ? a.keyId : '' }
          : { mode: 3 };
  return {
    type: v.type,
    flags: v.flags,
    auth,
    requestId: v.requestId,
    sessionId: BigInt(v.sessionId),
    seq: v.seq,
    timestamp: v.timestamp,
    body: bodyFromJson(SCHEMAS[v.type as MsgType], v.body),
    tag: new Uint8Array(32),
  } as AnyDatagram;
}

/** Encodes `d` and signs it: the tag is HMAC-SHA256(key, every byte before the tag). */
export function sign(d: AnyDatagram, key: Uint8Array): Uint8Array {
  const bytes = encodeToBytes(d);
  bytes.set(hmac(sha256, key, bytes.subarray(0, bytes.length - 32)), bytes.length - 32);
  return bytes;
}

/** All vectors, in protocol.md's order. */
export function buildVectors(): Vector[] {
  const k = derive();
  const out: Vector[] = [];
  const sid = k.tokenId;
  const keys = {
    credential: [k.credentialKey, 'credential key "demo"'],
    session: [k.sessionKey, 'session key of the example token'],
    admin: [k.adminKey, 'admin key "admin"'],
  } as const;
  let n = 0;
  function add<T extends MsgType>(
    name: string,
    type: T,
    flags: number,
    auth: AuthMode,
    signer: keyof typeof keys,
    h: { requestId: number; sessionId: bigint; seq: number; dt: number },
    body: Bodies[T],
  ): void {
    const request = flags === 0;
    const authBlock: Record<string, string> = {};
    let a: AnyDatagram['auth'];
    if (auth === AuthMode.CREDENTIAL) {
      a = request
        ? { mode: 1, credId: 'demo', nonce: k.helloNonce.map((b) => b + n) }
        : { mode: 1, credId: '', nonce: new Uint8Array(16) };
      if (request) Object.assign(authBlock, { credId: a.credId, nonce: toHex(a.nonce) });
    } else if (auth === AuthMode.TOKEN) {
      a = { mode: 2, token: request ? k.token : new Uint8Array(0) };
      if (request) authBlock.token = toHex(k.token);
    } else if (auth === AuthMode.ADMIN) {
      a = { mode: 4, keyId: request ? 'admin' : '' };
      if (request) authBlock.keyId = 'admin';
    } else {
      a = { mode: 3 };
    }
    n++;
    const d = {
      type,
      flags,
      auth: a,
      requestId: h.requestId,
      sessionId: h.sessionId,
      seq: h.seq,
      timestamp: k.t0 + h.dt,
      body,
      tag: new Uint8Array(32),
    } as AnyDatagram;
    const [key, keyName] = keys[signer];
    out.push({
      name,
      keyName,
      key: toHex(key),
      datagram: toHex(sign(d, key)),
      type,
      typeName: TYPE_NAMES[type],
      flags,
      auth,
      requestId: h.requestId,
      sessionId: h.sessionId.toString(),
      seq: h.seq,
      timestamp: d.timestamp,
      authBlock,
      body: jsonOf(body) as Record<string, unknown>,
    });
  }
  const REQ = 0;
  const REP = Flags.REPLY | Flags.FROM_SERVER;
  const hello: Bodies[typeof MsgType.HELLO] = {
    vendor: 'acme',
    program: 'cad',
    version: '2.1',
    user: 'alice',
    host: 'ws1',
    padding: new Uint8Array(0),
  };
  // Pad HELLO to exactly 600 bytes (anti-amplification).
  const bare = encodeToBytes({
    type: MsgType.HELLO,
    flags: 0,
    auth: { mode: 1, credId: 'demo', nonce: k.helloNonce },
    requestId: 1,
    sessionId: 0n,
    seq: 0,
    timestamp: k.t0,
    body: hello,
    tag: new Uint8Array(32),
  }).length;
  hello.padding = new Uint8Array(600 - bare);

  const h = (requestId: number, seq: number, dt: number, sessionId = sid) => ({
    requestId,
    sessionId,
    seq,
    dt,
  });
  add('hello (credential)', MsgType.HELLO, REQ, 1, 'credential', h(1, 0, 0, 0n), hello);
  add('hello_ok', MsgType.HELLO_OK, REP, 1, 'session', h(1, 0, 15), {
    token: k.token,
    wrappedKey: k.wrappedKey,
    tokenExpires: k.t0 + 8 * 3600 * 1000,
    heartbeatMs: 30_000,
  });
  add('ping (credential)', MsgType.PING, REQ, 1, 'credential', h(2, 0, 100, 0n), {
    payload: utf8('are you there?'),
  });
  add('pong (credential, in restart grace)', MsgType.PONG, REP, 1, 'credential', h(2, 0, 101, 0n), {
    serverVersion: '0.1.0',
    uptimeMs: 12_000,
    state: ServerState.GRACE,
    graceLeftMs: 48_000,
  });
  add('error NEED_PADDING (credential)', MsgType.ERROR, REP, 1, 'credential', h(3, 0, 200, 0n), {
    code: ErrorCode.NEED_PADDING,
    retryAfterMs: 0,
    message: 'pad to 600',
  });
  const checkout = { feature: 'solver', version: '3.0', count: 2, options: 0 };
  add('checkout (session)', MsgType.CHECKOUT, REQ, 3, 'session', h(10, 1, 1_000), checkout);
  add('checkout_reply granted', MsgType.CHECKOUT_REPLY, REP, 3, 'session', h(10, 1, 1_002), {
    status: CheckoutStatus.GRANTED,
    feature: 'solver',
    leaseId: k.leaseId,
    count: 2,
    ticket: k.ticket,
    heartbeatMs: 30_000,
    position: 0,
    queueLength: 0,
    reason: 0,
    retryAfterMs: 0,
  });
  add('checkout with wait bit (session)', MsgType.CHECKOUT, REQ, 3, 'session', h(11, 2, 3_000), {
    ...checkout,
    count: 1,
    options: 1,
  });
  add('checkout_reply queued', MsgType.CHECKOUT_REPLY, REP, 3, 'session', h(11, 2, 3_001), {
    status: CheckoutStatus.QUEUED,
    feature: 'solver',
    leaseId: 0n,
    count: 0,
    ticket: new Uint8Array(0),
    heartbeatMs: 30_000,
    position: 2,
    queueLength: 3,
    reason: ErrorCode.NO_SEATS,
    retryAfterMs: 1_000,
  });
  add(
    'checkout_reply denied IN_GRACE',
    MsgType.CHECKOUT_REPLY,
    REP,
    3,
    'session',
    h(12, 3, 4_000),
    {
      status: CheckoutStatus.DENIED,
      feature: 'solver',
      leaseId: 0n,
      count: 0,
      ticket: new Uint8Array(0),
      heartbeatMs: 30_000,
      position: 0,
      queueLength: 0,
      reason: ErrorCode.IN_GRACE,
      retryAfterMs: 45_000,
    },
  );
  add('heartbeat (session)', MsgType.HEARTBEAT, REQ, 3, 'session', h(13, 4, 30_000), {});
  add('heartbeat_ack', MsgType.HEARTBEAT_ACK, REP, 3, 'session', h(13, 4, 30_001), {
    leases: 1,
    queued: 1,
    heartbeatMs: 30_000,
  });
  add('checkin (session)', MsgType.CHECKIN, REQ, 3, 'session', h(14, 5, 40_000), {
    leaseId: k.leaseId,
    feature: '',
  });
  add('checkin_ok', MsgType.CHECKIN_OK, REP, 3, 'session', h(14, 5, 40_001), {
    leaseId: k.leaseId,
    released: 2,
  });
  add('checkin leaving a queue (session)', MsgType.CHECKIN, REQ, 3, 'session', h(15, 6, 41_000), {
    leaseId: 0n,
    feature: 'solver',
  });
  add(
    'test_conn (server-originated)',
    MsgType.TEST_CONN,
    Flags.FROM_SERVER,
    3,
    'session',
    h(0x80000001, 1, 90_000),
    {
      nonce: range(8, 0xc0),
    },
  );
  add(
    'test_conn_ack (client answer)',
    MsgType.TEST_CONN_ACK,
    Flags.REPLY,
    3,
    'session',
    h(0x80000001, 1, 90_010),
    {
      nonce: range(8, 0xc0),
      leases: 1,
    },
  );
  add('status (session)', MsgType.STATUS, REQ, 3, 'session', h(16, 8, 50_000), {
    page: 0,
    feature: '',
  });
  add(
    'status_reply with all record kinds',
    MsgType.STATUS_REPLY,
    REP,
    3,
    'session',
    h(16, 8, 50_001),
    {
      page: 0,
      pages: 1,
      snapshot: 77,
      records: [
        {
          kind: StatusRecord.FEATURE,
          name: 'solver',
          version: '3.0',
          vendor: 'acme',
          expires: 1_798_761_600_000,
          count: 4,
          inUse: 4,
          queued: 1,
          issued: 120,
          denied: 3,
        },
        {
          kind: StatusRecord.HOLDER,
          feature: 'solver',
          user: 'alice',
          host: 'ws1',
          since: k.t0 + 1_002,
          count: 2,
          leaseId: k.leaseId,
          program: 'cad',
          version: '2.10',
        },
        {
          kind: StatusRecord.QUEUED,
          feature: 'solver',
          user: 'bob',
          host: 'ws2',
          since: k.t0 + 3_001,
          position: 1,
        },
        {
          kind: StatusRecord.RESERVATION,
          feature: 'solver',
          type: ReservationType.USER,
          name: 'alice',
          count: 2,
          inUse: 2,
        },
      ],
    },
  );
  add('ping (session)', MsgType.PING, REQ, 3, 'session', h(17, 9, 51_000), {
    payload: new Uint8Array(0),
  });
  add('pong (session)', MsgType.PONG, REP, 3, 'session', h(17, 9, 51_001), {
    serverVersion: '0.1.0',
    uptimeMs: 3_600_000,
    state: ServerState.RUNNING,
    graceLeftMs: 0,
  });
  add('error RATE_LIMITED (session)', MsgType.ERROR, REP, 3, 'session', h(18, 10, 52_000), {
    code: ErrorCode.RATE_LIMITED,
    retryAfterMs: 2_000,
    message: 'slow down',
  });
  add('reclaim (session)', MsgType.RECLAIM, REQ, 3, 'session', h(19, 11, 53_000), {
    tickets: [{ ticket: k.ticket }],
  });
  add(
    'checkout (token, after failover)',
    MsgType.CHECKOUT,
    REQ,
    2,
    'session',
    h(20, 12, 60_000),
    checkout,
  );
  add('reclaim (token, after failover)', MsgType.RECLAIM, REQ, 2, 'session', h(21, 13, 60_100), {
    tickets: [{ ticket: k.ticket }],
  });
  add('reclaim_reply', MsgType.RECLAIM_REPLY, REP, 2, 'session', h(21, 13, 60_102), {
    results: [{ leaseId: k.leaseId, code: ErrorCode.OK }],
  });
  add('admin remove (admin)', MsgType.ADMIN, REQ, 4, 'admin', h(30, 0, 70_000, 0n), {
    op: 1,
    feature: 'solver',
    user: 'alice',
    host: 'ws1',
    leaseId: 0n,
  });
  add('admin_reply', MsgType.ADMIN_REPLY, REP, 4, 'admin', h(30, 0, 70_001, 0n), {
    op: 1,
    affected: 1,
    message: 'removed 1 lease',
  });
  add('status (admin)', MsgType.STATUS, REQ, 4, 'admin', h(31, 1, 71_000, 0n), {
    page: 0,
    feature: 'solver',
  });
  add('status_reply (admin)', MsgType.STATUS_REPLY, REP, 4, 'admin', h(31, 1, 71_001, 0n), {
    page: 0,
    pages: 1,
    snapshot: 78,
    records: [],
  });
  return out;
}

/** Hex in groups of 16 bytes a line, bytes separated by spaces. */
export function hexLines(hex: string): string[] {
  const lines: string[] = [];
  for (let i = 0; i < hex.length; i += 32) {
    lines.push(hex.slice(i, i + 32).replace(/(..)(?!$)/g, '$1 '));
  }
  return lines;
}

/** The appendix text between the markers (markers excluded). */
export function renderAppendix(vectors: Vector[]): string {
  const k = derive();
  const parts: string[] = [
    '',
    '_Generated by `npm run vectors` from the codec; do not edit by hand._',
    '',
    '### Key derivation example',
    '',
    'Inputs and every intermediate value used by the vectors below (hex):',
    '',
    '```text',
    `server secret (id 1)      ${toHex(k.serverSecret)}`,
    `key id                    ${k.keyId.toString(16).padStart(8, '0')} (secret 1, epoch 5)`,
    `server key                ${toHex(k.serverKey)}`,
    `credential key "demo"     ${toHex(k.credentialKey)}`,
    `admin key "admin"         ${toHex(k.adminKey)}`,
    `token id = session id     ${k.tokenId.toString(16).padStart(16, '0')}`,
    `token mac                 ${toHex(k.tokenMac)}`,
    `session key               ${toHex(k.sessionKey)}`,
    `HELLO nonce               ${toHex(k.helloNonce)}`,
    `wrap mask                 ${toHex(k.wrapMask)}`,
    `wrapped key               ${toHex(k.wrappedKey)}`,
    '```',
    '',
    'Token (opaque to clients):',
    '',
    '```text',
    ...hexLines(toHex(k.token)),
    '```',
    '',
    'Lease ticket (opaque to clients):',
    '',
    '```text',
    ...hexLines(toHex(k.ticket)),
    '```',
    '',
  ];
  vectors.forEach((v, i) => {
    parts.push(
      `### Vector ${i + 1}: ${v.name}`,
      '',
      `- type: ${v.typeName} (0x${v.type.toString(16).padStart(2, '0')}), flags ${v.flags}, auth mode ${v.auth}, ${v.datagram.length / 2} bytes`,
      `- signed with: ${v.keyName}`,
      `- key: \`${v.key}\``,
      '',
      '```hex',
      ...hexLines(v.datagram),
      '```',
      '',
    );
  });
  return parts.join('\n');
}

/** protocol.md with its appendix replaced. @throws {Error} when a marker is missing */
export function withAppendix(doc: string, vectors: Vector[]): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`protocol.md must contain ${BEGIN} then ${END}`);
  return doc.slice(0, a + BEGIN.length) + renderAppendix(vectors) + doc.slice(b);
}

/** The fixture file's exact text. */
export function fixtureText(vectors: Vector[]): string {
  return `${JSON.stringify(vectors, null, 2)}\n`;
}

function main(): void {
  const vectors = buildVectors();
  writeFileSync(FIXTURE_PATH, fixtureText(vectors));
  writeFileSync(PROTOCOL_PATH, withAppendix(readFileSync(PROTOCOL_PATH, 'utf8'), vectors));
  process.stdout.write(`wrote ${vectors.length} vectors to ${FIXTURE_PATH} and ${PROTOCOL_PATH}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
