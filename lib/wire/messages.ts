/**
 * The body of every message type: its TypeScript shape and its field list. The order of
 * fields here is the order on the wire; protocol.md documents each one.
 */
import {
  AdminOp,
  CheckoutStatus,
  Limits,
  MsgType,
  ReservationType,
  ServerState,
  SiteServerState,
  StatusRecord,
  WRAPPED_KEY_LENGTH,
} from './constants.ts';
import { type Codec, codecOf, type Field, type Schema } from './schema.ts';

const str = (name: string, max: number = Limits.NAME): Field => ({ name, kind: 'str', max });

export interface Hello {
  vendor: string;
  program: string;
  version: string;
  user: string;
  host: string;
  /** Zero bytes that make first contact at least as large as its answer. */
  padding: Uint8Array;
}
export interface HelloOk {
  token: Uint8Array;
  /** Session key XOR a key derived from the credential key (protocol.md §Keys). */
  wrappedKey: Uint8Array;
  tokenExpires: number;
  heartbeatMs: number;
}
export interface Checkout {
  feature: string;
  version: string;
  count: number;
  /** Bit 0: wait in the queue when no seat is free. */
  options: number;
}
export interface CheckoutReply {
  status: CheckoutStatus;
  feature: string;
  leaseId: bigint;
  count: number;
  ticket: Uint8Array;
  heartbeatMs: number;
  position: number;
  queueLength: number;
  reason: number;
  retryAfterMs: number;
}
export type Heartbeat = Record<string, never>;
export interface HeartbeatAck {
  leases: number;
  queued: number;
  heartbeatMs: number;
}
export interface Checkin {
  leaseId: bigint;
  /** With leaseId 0: leave the queue of this feature. */
  feature: string;
}
export interface CheckinOk {
  leaseId: bigint;
  released: number;
}
export interface TestConn {
  nonce: Uint8Array;
}
export interface TestConnAck {
  nonce: Uint8Array;
  leases: number;
}
export interface Status {
  page: number;
  feature: string;
}
export interface FeatureRecord {
  kind: typeof StatusRecord.FEATURE;
  name: string;
  version: string;
  vendor: string;
  expires: number;
  count: number;
  inUse: number;
  queued: number;
  issued: number;
  denied: number;
}
export interface HolderRecord {
  kind: typeof StatusRecord.HOLDER;
  feature: string;
  user: string;
  host: string;
  since: number;
  count: number;
  leaseId: bigint;
  /** The holder's program as its HELLO declared it; '' when unknown or not sent. */
  program: string;
  /** The program's version as its HELLO declared it; '' when unknown or not sent. */
  version: string;
}
export interface QueuedRecord {
  kind: typeof StatusRecord.QUEUED;
  feature: string;
  user: string;
  host: string;
  since: number;
  position: number;
}
/** Seats of a feature name kept for one user or host (license option RESERVE=). */
export interface ReservationRecord {
  kind: typeof StatusRecord.RESERVATION;
  feature: string;
  type: ReservationType;
  /** The user or host name. */
  name: string;
  /** Seats reserved. */
  count: number;
  /** Reserved seats the user or host holds now (≤ count). */
  inUse: number;
}
/** A server of the site (only a site's servers send them; first in the listing). */
export interface ServerRecord {
  kind: typeof StatusRecord.SERVER;
  /** The server's id in the site. */
  name: string;
  state: SiteServerState;
  /** ms UTC: when it started serving (UP, NO_ETCD) or left the site (GONE). */
  since: number;
  /** 1 for the server that sent this reply. */
  self: number;
}
export type StatusRecordValue =
  | FeatureRecord
  | HolderRecord
  | QueuedRecord
  | ReservationRecord
  | ServerRecord;
export interface StatusReply {
  page: number;
  pages: number;
  snapshot: number;
  records: StatusRecordValue[];
}
export interface Admin {
  op: AdminOp;
  feature: string;
  user: string;
  host: string;
  leaseId: bigint;
}
export interface AdminReply {
  op: AdminOp;
  affected: number;
  message: string;
}
export interface Ping {
  payload: Uint8Array;
}
export interface Pong {
  serverVersion: string;
  uptimeMs: number;
  state: ServerState;
  graceLeftMs: number;
}
export interface Reclaim {
  tickets: { ticket: Uint8Array }[];
}
export interface ReclaimReply {
  results: { leaseId: bigint; code: number }[];
}
export interface ErrorReply {
  code: number;
  retryAfterMs: number;
  message: string;
}

/** Message bodies by type. */
export interface Bodies {
  [MsgType.HELLO]: Hello;
  [MsgType.HELLO_OK]: HelloOk;
  [MsgType.CHECKOUT]: Checkout;
  [MsgType.CHECKOUT_REPLY]: CheckoutReply;
  [MsgType.HEARTBEAT]: Heartbeat;
  [MsgType.HEARTBEAT_ACK]: HeartbeatAck;
  [MsgType.CHECKIN]: Checkin;
  [MsgType.CHECKIN_OK]: CheckinOk;
  [MsgType.TEST_CONN]: TestConn;
  [MsgType.TEST_CONN_ACK]: TestConnAck;
  [MsgType.STATUS]: Status;
  [MsgType.STATUS_REPLY]: StatusReply;
  [MsgType.ADMIN]: Admin;
  [MsgType.ADMIN_REPLY]: AdminReply;
  [MsgType.PING]: Ping;
  [MsgType.PONG]: Pong;
  [MsgType.RECLAIM]: Reclaim;
  [MsgType.RECLAIM_REPLY]: ReclaimReply;
  [MsgType.ERROR]: ErrorReply;
}

const featureRecord: Schema = [
  str('name'),
  str('version', Limits.VERSION_STR),
  str('vendor'),
  { name: 'expires', kind: 'u53' },
  { name: 'count', kind: 'u32' },
  { name: 'inUse', kind: 'u32' },
  { name: 'queued', kind: 'u32' },
  { name: 'issued', kind: 'u32' },
  { name: 'denied', kind: 'u32' },
];
const holderRecord: Schema = [
  str('feature'),
  str('user'),
  str('host'),
  { name: 'since', kind: 'u53' },
  { name: 'count', kind: 'u16' },
  { name: 'leaseId', kind: 'u64' },
  str('program'),
  str('version', Limits.VERSION_STR),
];
const queuedRecord: Schema = [
  str('feature'),
  str('user'),
  str('host'),
  { name: 'since', kind: 'u53' },
  { name: 'position', kind: 'u16' },
];
const reservationRecord: Schema = [
  str('feature'),
  { name: 'type', kind: 'u8', min: ReservationType.USER, max: ReservationType.HOST },
  str('name'),
  { name: 'count', kind: 'u16' },
  { name: 'inUse', kind: 'u16' },
];

const serverRecord: Schema = [
  str('name'),
  { name: 'state', kind: 'u8', max: SiteServerState.NO_ETCD },
  { name: 'since', kind: 'u53' },
  { name: 'self', kind: 'u8', max: 1 },
];

/** Field lists of every body, by message type. */
export const SCHEMAS: Readonly<Record<MsgType, Schema>> = {
  [MsgType.HELLO]: [
    str('vendor'),
    str('program'),
    str('version', Limits.VERSION_STR),
    str('user'),
    str('host'),
    { name: 'padding', kind: 'bytes', prefix: 2, max: Limits.PADDING },
  ],
  [MsgType.HELLO_OK]: [
    { name: 'token', kind: 'bytes', prefix: 2, max: Limits.TOKEN },
    { name: 'wrappedKey', kind: 'fixed', length: WRAPPED_KEY_LENGTH },
    { name: 'tokenExpires', kind: 'u53' },
    { name: 'heartbeatMs', kind: 'u32' },
  ],
  [MsgType.CHECKOUT]: [
    str('feature'),
    str('version', Limits.VERSION_STR),
    { name: 'count', kind: 'u16', min: 1, max: 1000 },
    { name: 'options', kind: 'u8', max: 1 },
  ],
  [MsgType.CHECKOUT_REPLY]: [
    { name: 'status', kind: 'u8', max: CheckoutStatus.DENIED },
    str('feature'),
    { name: 'leaseId', kind: 'u64' },
    { name: 'count', kind: 'u16' },
    { name: 'ticket', kind: 'bytes', prefix: 2, max: Limits.TICKET },
    { name: 'heartbeatMs', kind: 'u32' },
    { name: 'position', kind: 'u16' },
    { name: 'queueLength', kind: 'u16' },
    { name: 'reason', kind: 'u16' },
    { name: 'retryAfterMs', kind: 'u32' },
  ],
  [MsgType.HEARTBEAT]: [],
  [MsgType.HEARTBEAT_ACK]: [
    { name: 'leases', kind: 'u16' },
    { name: 'queued', kind: 'u16' },
    { name: 'heartbeatMs', kind: 'u32' },
  ],
  [MsgType.CHECKIN]: [{ name: 'leaseId', kind: 'u64' }, str('feature')],
  [MsgType.CHECKIN_OK]: [
    { name: 'leaseId', kind: 'u64' },
    { name: 'released', kind: 'u16' },
  ],
  [MsgType.TEST_CONN]: [{ name: 'nonce', kind: 'fixed', length: 8 }],
  [MsgType.TEST_CONN_ACK]: [
    { name: 'nonce', kind: 'fixed', length: 8 },
    { name: 'leases', kind: 'u16' },
  ],
  [MsgType.STATUS]: [{ name: 'page', kind: 'u16' }, str('feature')],
  [MsgType.STATUS_REPLY]: [
    { name: 'page', kind: 'u16' },
    { name: 'pages', kind: 'u16', min: 1 },
    { name: 'snapshot', kind: 'u32' },
    {
      name: 'records',
      kind: 'union',
      max: Limits.STATUS_RECORDS,
      tag: 'kind',
      variants: {
        [StatusRecord.FEATURE]: featureRecord,
        [StatusRecord.HOLDER]: holderRecord,
        [StatusRecord.QUEUED]: queuedRecord,
        [StatusRecord.RESERVATION]: reservationRecord,
        [StatusRecord.SERVER]: serverRecord,
      },
    },
  ],
  [MsgType.ADMIN]: [
    { name: 'op', kind: 'u8', min: AdminOp.REMOVE, max: AdminOp.SHUTDOWN },
    str('feature'),
    str('user'),
    str('host'),
    { name: 'leaseId', kind: 'u64' },
  ],
  [MsgType.ADMIN_REPLY]: [
    { name: 'op', kind: 'u8', min: AdminOp.REMOVE, max: AdminOp.SHUTDOWN },
    { name: 'affected', kind: 'u32' },
    str('message', Limits.MESSAGE),
  ],
  [MsgType.PING]: [{ name: 'payload', kind: 'bytes', prefix: 2, max: Limits.PING_PAYLOAD }],
  [MsgType.PONG]: [
    str('serverVersion', Limits.VERSION_STR),
    { name: 'uptimeMs', kind: 'u53' },
    { name: 'state', kind: 'u8', max: ServerState.DEGRADED },
    { name: 'graceLeftMs', kind: 'u32' },
  ],
  [MsgType.RECLAIM]: [
    {
      name: 'tickets',
      kind: 'list',
      max: Limits.TICKETS,
      item: [{ name: 'ticket', kind: 'bytes', prefix: 2, max: Limits.TICKET }],
    },
  ],
  [MsgType.RECLAIM_REPLY]: [
    {
      name: 'results',
      kind: 'list',
      max: Limits.TICKETS,
      item: [
        { name: 'leaseId', kind: 'u64' },
        { name: 'code', kind: 'u16' },
      ],
    },
  ],
  [MsgType.ERROR]: [
    { name: 'code', kind: 'u16' },
    { name: 'retryAfterMs', kind: 'u32' },
    str('message', Limits.MESSAGE),
  ],
};

/** The body codec of each message type. */
export const BODIES: { readonly [K in MsgType]: Codec<Bodies[K]> } = Object.fromEntries(
  Object.entries(SCHEMAS).map(([type, schema]) => [type, codecOf(schema)]),
) as { [K in MsgType]: Codec<Bodies[K]> };

/** Readable name of each message type, as protocol.md names it. */
export const TYPE_NAMES: Readonly<Record<MsgType, string>> = Object.fromEntries(
  Object.entries(MsgType).map(([name, value]) => [value, name]),
) as Record<MsgType, string>;

/** Types a client sends as requests (the others are replies or server-originated). */
export const CLIENT_REQUESTS: ReadonlySet<number> = new Set([
  MsgType.HELLO,
  MsgType.CHECKOUT,
  MsgType.HEARTBEAT,
  MsgType.CHECKIN,
  MsgType.STATUS,
  MsgType.ADMIN,
  MsgType.PING,
  MsgType.RECLAIM,
]);
