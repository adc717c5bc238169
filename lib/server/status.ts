/**
 * Splits the pool's status into STATUS_REPLY pages that each fit one datagram: features
 * first, then reservations, then holders, then queued clients, in a stable order, so a client can page
 * through and stitch the answer back together (the snapshot number tells it when the
 * state changed between pages).
 *
 * The pool does not know a holder's program and version: the caller looks them up per
 * session (from the session's token, so sessions keep no copy of them).
 */
import type { PoolStatus } from '../license/pool.ts';
import {
  BODIES,
  HEADER_LENGTH,
  Limits,
  MAX_DATAGRAM,
  MsgType,
  ReservationType,
  type ServerRecord,
  StatusRecord,
  type StatusRecordValue,
  type StatusReply,
  TAG_LENGTH,
} from '../wire/index.ts';

const BUDGET = MAX_DATAGRAM - HEADER_LENGTH - TAG_LENGTH;

/** A session's program and version as its HELLO declared them. */
export interface ProgramInfo {
  program: string;
  version: string;
}
/** The program and version of a session; undefined when the session is not known. */
export type ProgramLookup = (sessionId: bigint) => ProgramInfo | undefined;

const UNKNOWN: ProgramInfo = { program: '', version: '' };

/**
 * The status as STATUS_REPLY bodies; always at least one page. `feature` '' means all.
 * `programOf` names each holder's program and version ('' when it returns undefined);
 * `servers` (a site's) come first.
 * @throws {TypeError} when programOf is given and is not a function
 */
export function buildStatusPages(
  status: PoolStatus,
  feature: string,
  snapshot: number,
  programOf?: ProgramLookup,
  servers: readonly ServerRecord[] = [],
): StatusReply[] {
  if (programOf !== undefined && typeof programOf !== 'function') {
    throw new TypeError(`programOf must be a function, got ${typeof programOf}`);
  }
  // A session often holds several leases: look each session up once per listing.
  const programs = new Map<bigint, ProgramInfo>();
  const programFor = (id: bigint): ProgramInfo => {
    let p = programs.get(id);
    if (!p) {
      p = programOf?.(id) ?? UNKNOWN;
      programs.set(id, p);
    }
    return p;
  };
  const want = (name: string) => feature === '' || name === feature;
  // A site's servers first: whichever page a client stops at, it knows who answered.
  const records: StatusRecordValue[] = [...servers];
  for (const f of status.features) {
    if (!want(f.name)) continue;
    records.push({
      kind: StatusRecord.FEATURE,
      name: f.name,
      version: f.version,
      vendor: f.vendor,
      expires: f.expires ?? 0,
      count: f.count,
      inUse: f.inUse,
      queued: f.queued,
      issued: f.issued,
      denied: f.denied,
    });
  }
  // One record per feature name and user or host, like HOLDER and QUEUED records: the
  // reservations of every version of a feature are summed.
  const reserved = new Map<string, StatusRecordValue & { kind: 4 }>();
  for (const r of status.reservations) {
    if (!want(r.feature)) continue;
    const type = r.type === 'user' ? ReservationType.USER : ReservationType.HOST;
    const key = `${r.feature}\0${type}\0${r.name}`;
    const known = reserved.get(key);
    if (known) {
      known.count = Math.min(0xffff, known.count + r.count);
      known.inUse = Math.min(known.count, known.inUse + r.inUse);
    } else {
      reserved.set(key, {
        kind: StatusRecord.RESERVATION,
        feature: r.feature,
        type,
        name: r.name,
        count: Math.min(0xffff, r.count),
        inUse: Math.min(0xffff, r.inUse),
      });
    }
  }
  records.push(...reserved.values());
  for (const h of status.holders) {
    if (!want(h.feature)) continue;
    const { program, version } = programFor(h.sessionId);
    records.push({
      kind: StatusRecord.HOLDER,
      feature: h.feature,
      user: h.user,
      host: h.host,
      since: h.since,
      count: h.count,
      leaseId: h.leaseId,
      program,
      version,
    });
  }
  for (const q of status.queue) {
    if (!want(q.feature)) continue;
    records.push({
      kind: StatusRecord.QUEUED,
      feature: q.feature,
      user: q.user,
      host: q.host,
      since: q.since,
      position: q.position,
    });
  }
  const codec = BODIES[MsgType.STATUS_REPLY];
  const pages: StatusReply[] = [];
  let current: StatusReply = { page: 0, pages: 1, snapshot, records: [] };
  for (const r of records) {
    current.records.push(r);
    if (codec.encodingLength(current) > BUDGET || current.records.length > Limits.STATUS_RECORDS) {
      current.records.pop();
      pages.push(current);
      current = { page: pages.length, pages: 1, snapshot, records: [r] };
    }
  }
  pages.push(current);
  for (const p of pages) p.pages = pages.length;
  return pages;
}
