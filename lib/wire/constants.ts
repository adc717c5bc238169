/**
 * Wire constants: magic, version, message types, flags, auth modes, limits. protocol.md
 * lists the same numbers; the tests check the two agree through the vectors.
 */

export const MAGIC = 0x464c; // "FL"
export const VERSION = 1;
export const HEADER_LENGTH = 32;
export const TAG_LENGTH = 32;
export const MAX_DATAGRAM = 1200;
export const NONCE_LENGTH = 16;
export const WRAPPED_KEY_LENGTH = 32;
export const DEFAULT_PORT = 27400;
/** Minimum size of a request that may be answered before its sender is known (anti-amplification). */
export const MIN_FIRST_CONTACT = 600;

export const MsgType = {
  HELLO: 0x01,
  CHECKOUT: 0x02,
  HEARTBEAT: 0x03,
  CHECKIN: 0x04,
  TEST_CONN: 0x05,
  STATUS: 0x06,
  ADMIN: 0x07,
  PING: 0x08,
  RECLAIM: 0x09,
  HELLO_OK: 0x81,
  CHECKOUT_REPLY: 0x82,
  HEARTBEAT_ACK: 0x83,
  CHECKIN_OK: 0x84,
  TEST_CONN_ACK: 0x85,
  STATUS_REPLY: 0x86,
  ADMIN_REPLY: 0x87,
  PONG: 0x88,
  RECLAIM_REPLY: 0x89,
  ERROR: 0x8f,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];

/** Types reserved for server-to-server messages (not yet defined; decoded as UNKNOWN_TYPE). */
export const PEER_TYPE_RANGES = [
  [0x40, 0x5f],
  [0xc0, 0xdf],
] as const;

export const Flags = {
  /** Set on every answer to a request. */
  REPLY: 0x01,
  /** Set on every datagram the server sends. */
  FROM_SERVER: 0x02,
} as const;
export const KNOWN_FLAGS = Flags.REPLY | Flags.FROM_SERVER;

export const AuthMode = {
  /** Signed with a client credential key (first contact, the notes' "ktext"). */
  CREDENTIAL: 1,
  /** Carries the session token; signed with the session key derived from it. */
  TOKEN: 2,
  /** Signed with the session key of the session named in the header. */
  SESSION: 3,
  /** Signed with an operator's admin key. */
  ADMIN: 4,
} as const;
export type AuthMode = (typeof AuthMode)[keyof typeof AuthMode];

/** Caps on wire lengths, checked before anything is allocated. */
export const Limits = {
  NAME: 64,
  VERSION_STR: 32,
  CRED_ID: 64,
  TOKEN: 512,
  TICKET: 256,
  TICKETS: 8,
  MESSAGE: 200,
  PADDING: 1100,
  PING_PAYLOAD: 1024,
  STATUS_RECORDS: 64,
} as const;

/** Status of a CHECKOUT_REPLY. */
export const CheckoutStatus = { GRANTED: 0, QUEUED: 1, DENIED: 2 } as const;
export type CheckoutStatus = (typeof CheckoutStatus)[keyof typeof CheckoutStatus];

/** Operations of an ADMIN request. */
export const AdminOp = { REMOVE: 1, REREAD: 2, SHUTDOWN: 3 } as const;
export type AdminOp = (typeof AdminOp)[keyof typeof AdminOp];

/** Server states a PONG reports. */
export const ServerState = { RUNNING: 0, GRACE: 1, CLOSING: 2, DEGRADED: 3 } as const;
export type ServerState = (typeof ServerState)[keyof typeof ServerState];

/** Record kinds of a STATUS_REPLY. */
export const StatusRecord = {
  FEATURE: 1,
  HOLDER: 2,
  QUEUED: 3,
  RESERVATION: 4,
  SERVER: 5,
} as const;

/**
 * A STATUS for this feature name (no license feature can be named so) returns only the
 * SERVER records: the site as the answering server sees it (`floatlm ping` uses it).
 */
export const SITE_ONLY_FEATURE = '-';

/** What a SERVER status record says of a server of the site. */
export const SiteServerState = {
  /** It left the site (its etcd lease is gone) at `since`. */
  GONE: 0,
  /** Serving since `since`. */
  UP: 1,
  /** The server that answered, cut off from the etcd majority: not granting. */
  NO_ETCD: 2,
} as const;
export type SiteServerState = (typeof SiteServerState)[keyof typeof SiteServerState];

/** Whom a RESERVATION status record keeps seats for. */
export const ReservationType = { USER: 1, HOST: 2 } as const;
export type ReservationType = (typeof ReservationType)[keyof typeof ReservationType];
