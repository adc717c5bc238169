/**
 * The StateStore of a site: the daemon's writes go to the etcd ledger (lib/store/etcd.ts) at
 * each group commit, and its reads come from a mirror of the whole site kept current by one
 * etcd watch, so that every server knows every session, lease, queue entry, replay floor,
 * revocation and kept reply of the site without a round trip on the request path.
 *
 * What must never be wrong is decided by etcd, not by the mirror: a grant is the ledger's
 * compare-on-revision transaction (`commit()` reports the grants the site refused), replay
 * floors only ever rise, the first kept reply for a request wins. The mirror may lag (a
 * watch event is a few ms behind its commit); the daemon treats it as the site's state as
 * of a moment ago, and every change made elsewhere reaches it as an event:
 *
 * | event          | arguments                       | when                               |
 * | -------------- | ------------------------------- | ---------------------------------- |
 * | `lease`        | SiteLease                       | a lease was granted (anywhere)     |
 * | `lease-gone`   | SiteLease                       | a lease was released (anywhere)    |
 * | `session`      | SessionRecord                   | a session was stored or updated    |
 * | `session-gone` | tokenId                         | a session was deleted              |
 * | `alive`        | tokenId, serverId               | a server took over a session       |
 * | `alive-gone`   | tokenId                         | no server holds the session now    |
 * | `floor`        | tokenId, floor                  | a replay floor rose                |
 * | `queued`       | QueueRecord                     | a queue entry was added            |
 * | `dequeued`     | QueueRecord                     | a queue entry was removed          |
 * | `servers`      | —                               | a server joined or left the site   |
 * | `server-gone`  | serverId                        | a server left the site             |
 * | `warning`      | message                         | a record under our prefix is bad   |
 */
import { EventEmitter } from 'node:events';
import type { IKeyValue } from 'etcd3';
import {
  decodeLease,
  decodeQueue,
  decodeReply,
  decodeSession,
  type EtcdLedger,
  EtcdStoreError,
  type SiteLease,
} from './etcd.ts';
import type {
  FlushResult,
  LeaseRecord,
  QueueRecord,
  ReclaimedWhy,
  ReplyRecord,
  SessionRecord,
  StoreSnapshot,
} from './sqlite.ts';
import type { CommitOutcome, StateStore } from './state.ts';

/** How the daemon counts a lease's seats site-wide: counter name and licensed seats. */
export type SeatRule = (l: LeaseRecord) => { counter: string; licensed: number };

type Op =
  | { k: 'grant'; rec: LeaseRecord }
  | { k: 'release'; leaseId: bigint; why: ReclaimedWhy; until: number }
  | { k: 'session'; rec: SessionRecord }
  | { k: 'drop-session'; tokenId: bigint }
  | { k: 'floor'; tokenId: bigint; floor: number }
  | { k: 'reply'; key: Uint8Array; rec: ReplyRecord; deps: readonly bigint[] }
  | { k: 'enqueue'; e: Omit<QueueRecord, 'seq'> }
  | { k: 'dequeue'; tokenId: bigint; feature: string }
  | { k: 'revoke'; tokenId: bigint; expires: number };

const hex16 = (v: bigint) => v.toString(16).padStart(16, '0');
const idOf = (s: string) => BigInt(`0x${s}`);
/** Default life of a burned lease id when nothing better is known: a token's longest life. */
const BURN_MS = 2 * 86_400_000;

export interface SiteStoreOptions {
  /** Clock, ms UTC. */
  now?: () => number;
  /** Seat rule for grants (set by the daemon from its license). */
  seats: SeatRule;
}

/**
 * Opens the mirror of `ledger`'s site: resolves once the whole site has been read.
 * @throws {EtcdStoreError} UNREACHABLE, NO_MAJORITY, CLOSED
 */
export async function openSiteStore(ledger: EtcdLedger, o: SiteStoreOptions): Promise<SiteStore> {
  if (typeof o?.seats !== 'function') throw new TypeError('options.seats must be a function');
  const s = new SiteStore(ledger, o);
  await s.start();
  return s;
}

export class SiteStore extends EventEmitter implements StateStore {
  readonly backend = 'etcd' as const;
  readonly ledger: EtcdLedger;
  /** This server's id in the site. */
  readonly serverId: string;
  seats: SeatRule;
  readonly #now: () => number;

  // The mirror: the site as the watch last told it.
  readonly sessions = new Map<bigint, SessionRecord>();
  readonly alive = new Map<bigint, string>();
  readonly floors = new Map<bigint, number>();
  readonly leases = new Map<bigint, SiteLease>();
  /** Lease ids by session, as `leases` has them. */
  readonly #bySession = new Map<bigint, Set<bigint>>();
  readonly burned = new Map<bigint, { why: ReclaimedWhy; until: number }>();
  readonly revoked = new Map<bigint, number>();
  readonly replies = new Map<string, ReplyRecord>();
  readonly queue = new Map<string, QueueRecord>();
  readonly servers = new Map<string, { serverId: string; startedAt: number }>();
  readonly #meta = new Map<string, string>();

  #ops: Op[] = [];
  #background = 0;
  readonly #pendingRevoked = new Set<bigint>();
  readonly #pendingReplies = new Map<string, ReplyRecord>();
  readonly #pendingBurns = new Map<bigint, ReclaimedWhy>();
  #stop: (() => Promise<void>) | undefined;
  #closed = false;

  /** @internal use openSiteStore */
  constructor(ledger: EtcdLedger, o: SiteStoreOptions) {
    super();
    this.ledger = ledger;
    this.serverId = ledger.serverId;
    this.seats = o.seats;
    this.#now = o.now ?? Date.now;
  }

  /** @internal Reads the site and starts the watch. */
  async start(): Promise<void> {
    this.#stop = await this.ledger.watchSite((kind, rest, kv) => {
      try {
        this.#apply(kind, rest, kv);
      } catch (e) {
        this.emit('warning', `site: ${(e as Error).message}`);
      }
    });
  }

  #apply(kind: 'put' | 'delete', rest: string, kv: IKeyValue): void {
    const slash = rest.indexOf('/');
    const type = rest.slice(0, slash);
    const tail = rest.slice(slash + 1);
    const text = () => kv.value.toString('utf8');
    const put = kind === 'put';
    switch (type) {
      case 'server': {
        if (put) this.servers.set(tail, JSON.parse(text()));
        else if (this.servers.delete(tail)) this.emit('server-gone', tail);
        this.emit('servers');
        return;
      }
      case 'lease': {
        const id = idOf(tail);
        if (put) {
          const l = decodeLease(kv);
          this.leases.set(id, l);
          let ids = this.#bySession.get(l.tokenId);
          if (!ids) {
            ids = new Set();
            this.#bySession.set(l.tokenId, ids);
          }
          ids.add(id);
          this.emit('lease', l);
        } else {
          const l = this.leases.get(id);
          this.leases.delete(id);
          if (l) {
            const ids = this.#bySession.get(l.tokenId);
            ids?.delete(id);
            if (ids?.size === 0) this.#bySession.delete(l.tokenId);
            this.emit('lease-gone', l);
          }
        }
        return;
      }
      case 'burned': {
        const id = idOf(tail);
        if (!put) this.burned.delete(id);
        else {
          const o = JSON.parse(text()) as { why?: number; until?: number };
          this.burned.set(id, { why: o.why === 1 ? 1 : 0, until: Number(o.until ?? 0) });
        }
        return;
      }
      case 'session': {
        const id = idOf(tail);
        if (put) {
          const r = decodeSession(kv);
          this.sessions.set(id, r);
          this.emit('session', r);
        } else if (this.sessions.delete(id)) {
          this.floors.delete(id);
          this.emit('session-gone', id);
        }
        return;
      }
      case 'alive': {
        const id = idOf(tail);
        if (put) {
          const owner = text();
          this.alive.set(id, owner);
          this.emit('alive', id, owner);
        } else if (this.alive.delete(id)) this.emit('alive-gone', id);
        return;
      }
      case 'floor': {
        const id = idOf(tail);
        if (!put) this.floors.delete(id);
        else {
          const f = Number(text());
          if (f > (this.floors.get(id) ?? -1)) {
            this.floors.set(id, f);
            this.emit('floor', id, f);
          }
        }
        return;
      }
      case 'revoked': {
        const id = idOf(tail);
        if (put) this.revoked.set(id, Number(text()));
        else this.revoked.delete(id);
        return;
      }
      case 'reply': {
        if (put) this.replies.set(tail, decodeReply(kv));
        else this.replies.delete(tail);
        return;
      }
      case 'queue': {
        if (!tail.startsWith('entry/')) return;
        if (put) {
          const q = decodeQueue(kv);
          const known = this.queue.has(tail);
          this.queue.set(tail, q);
          if (!known) this.emit('queued', q);
        } else {
          const q = this.queue.get(tail);
          this.queue.delete(tail);
          if (q) this.emit('dequeued', q);
        }
        return;
      }
      default:
        // feature counters, indexes, the license check: the ledger's own business.
        return;
    }
  }

  #live(): void {
    if (this.#closed) throw new Error('the site store is closed');
  }

  #last<T extends Op>(is: (o: Op) => o is T): T | undefined {
    for (let i = this.#ops.length - 1; i >= 0; i--) {
      const o = this.#ops[i]!;
      if (is(o)) return o;
    }
    return undefined;
  }

  #push(op: Op, background = false): void {
    this.#live();
    this.#ops.push(op);
    if (background) this.#background++;
  }

  // ---------------------------------------------------------------- writes (pending)

  putSession(s: SessionRecord): void {
    this.#push({ k: 'session', rec: { ...s } });
  }

  touchSessionAddr(tokenId: bigint, ip: string, port: number): void {
    const pending = this.#last(
      (o): o is Extract<Op, { k: 'session' }> => o.k === 'session' && o.rec.tokenId === tokenId,
    );
    if (pending) {
      pending.rec.ip = ip;
      pending.rec.port = port;
      return;
    }
    const r = this.sessions.get(tokenId);
    if (r) this.#push({ k: 'session', rec: { ...r, ip, port } });
  }

  setSeqFloor(tokenId: bigint, floor: number): void {
    this.#push({ k: 'floor', tokenId, floor }, true);
  }

  putReply(key: Uint8Array, r: ReplyRecord, dependsOn: readonly bigint[] = []): void {
    this.#push({ k: 'reply', key, rec: r, deps: dependsOn });
    this.#pendingReplies.set(Buffer.from(key).toString('hex'), r);
  }

  deleteSession(tokenId: bigint): void {
    this.#push({ k: 'drop-session', tokenId });
  }

  putLease(l: LeaseRecord): void {
    this.#push({ k: 'grant', rec: l });
  }

  deleteLease(leaseId: bigint): void {
    this.#push({ k: 'release', leaseId, why: 0, until: this.#now() + BURN_MS });
    this.#pendingBurns.set(leaseId, 0);
  }

  enqueue(e: Omit<QueueRecord, 'seq'>): void {
    this.#push({ k: 'enqueue', e: { ...e } });
  }

  dequeue(tokenId: bigint, feature: string): void {
    this.#push({ k: 'dequeue', tokenId, feature });
  }

  revoke(tokenId: bigint, expires: number): void {
    this.#push({ k: 'revoke', tokenId, expires });
    this.#pendingRevoked.add(tokenId);
  }

  /**
   * A released lease's ticket is burned by the release itself (one transaction); here only
   * its reason and life are set. A ticket reclaimed onto a new grant needs nothing: the
   * lease key the grant creates is what makes a second reclaim fail.
   */
  markReclaimed(leaseId: bigint, expires: number, why: ReclaimedWhy = 0): void {
    const r = this.#last(
      (o): o is Extract<Op, { k: 'release' }> => o.k === 'release' && o.leaseId === leaseId,
    );
    if (!r) return;
    r.why = why;
    r.until = Math.max(expires, this.#now() + 1000);
    this.#pendingBurns.set(leaseId, why);
  }

  /** The leases the site holds for session `tokenId`, as the mirror has them. */
  leasesOfSession(tokenId: bigint): SiteLease[] {
    const ids = this.#bySession.get(tokenId);
    if (!ids) return [];
    const out: SiteLease[] = [];
    for (const id of ids) {
      const l = this.leases.get(id);
      if (l) out.push(l);
    }
    return out;
  }

  /** Per-server notes (grant tallies): kept in memory, a site has no per-server file. */
  setMeta(key: string, value: string): void {
    this.#meta.set(key, value);
  }

  discardPending(): number {
    const n = this.#ops.length;
    this.#ops = [];
    this.#background = 0;
    this.#pendingRevoked.clear();
    this.#pendingReplies.clear();
    this.#pendingBurns.clear();
    return n;
  }

  /** Whether the site takes writes now: this server holds a live etcd lease. */
  probe(_now: number): boolean {
    return !this.#closed && this.ledger.canGrant();
  }

  pending(): number {
    return this.#ops.length;
  }

  pendingForeground(): number {
    return this.#ops.length - this.#background;
  }

  /**
   * Sends every pending change to etcd in as few transactions as it takes: the grants and
   * releases together (the ledger batches one turn's into one transaction), session
   * attachments, revocations and kept replies grouped into one (`writeRecords`), the rest
   * (floors, queue, deletions) one transaction each, each key's changes in the order they
   * were made. Replies that acknowledge grants go out once the grants are settled, without
   * those the site refused. Rejects on the first etcd failure (after the others have
   * settled): nothing that depends on this commit may be acknowledged then.
   * @throws {EtcdStoreError}
   */
  async commit(): Promise<CommitOutcome> {
    this.#live();
    const ops = this.#ops;
    this.#ops = [];
    this.#background = 0;
    const revoked = [...this.#pendingRevoked];
    const replies = [...this.#pendingReplies];
    const burns = [...this.#pendingBurns];
    this.#pendingRevoked.clear();
    this.#pendingReplies.clear();
    this.#pendingBurns.clear();
    const refused = new Set<bigint>();
    const refusedFor = new Set<string>();
    const refuse = (l: LeaseRecord) => {
      refused.add(l.leaseId);
      refusedFor.add(`${hex16(l.tokenId)}/${l.feature}`);
    };
    let failure: unknown;
    const note = (e: unknown) => {
      failure ??= e;
    };
    // Keys touched more than once in this commit keep their order on a chain of their own.
    const uses = new Map<string, number>();
    const keyOf = (o: Op): string | undefined => {
      switch (o.k) {
        case 'session':
          return `s${o.rec.tokenId}`;
        case 'drop-session':
          return `s${o.tokenId}`;
        case 'reply':
          return `r${Buffer.from(o.key).toString('hex')}`;
        case 'revoke':
          return `v${o.tokenId}`;
        default:
          return undefined;
      }
    };
    for (const o of ops) {
      const k = keyOf(o);
      if (k !== undefined) uses.set(k, (uses.get(k) ?? 0) + 1);
    }
    const once = (o: Op) => uses.get(keyOf(o)!) === 1;
    const chains = new Map<string, Promise<void>>();
    const run = (key: string, f: () => Promise<unknown>) => {
      const prev = chains.get(key) ?? Promise.resolve();
      chains.set(
        key,
        prev.then(
          () => f().then(() => undefined, note),
          () => undefined,
        ),
      );
    };
    const sessions: SessionRecord[] = [];
    const revokes: { tokenId: bigint; expires: number }[] = [];
    const free: { key: Uint8Array; rec: ReplyRecord }[] = [];
    const acks: Extract<Op, { k: 'reply' }>[] = [];
    const dequeues: Extract<Op, { k: 'dequeue' }>[] = [];
    const settled: Promise<unknown>[] = [];
    let applied = 0;
    for (const o of ops) {
      applied++;
      switch (o.k) {
        case 'grant': {
          const rule = this.seats(o.rec);
          settled.push(
            this.ledger.grant({ ...o.rec, ...rule }).then(
              (r) => {
                if (r === 'full') refuse(o.rec);
              },
              (e: unknown) => {
                // The id is held by another session or burned: this grant, not the
                // commit, fails.
                if (e instanceof EtcdStoreError && (e.code === 'CONFLICT' || e.code === 'REVOKED'))
                  refuse(o.rec);
                else note(e);
              },
            ),
          );
          break;
        }
        case 'release':
          settled.push(
            this.ledger.release(o.leaseId, { why: o.why, burnUntil: o.until }).catch(note),
          );
          break;
        case 'session':
          if (once(o)) sessions.push(o.rec);
          else
            run(`s${o.rec.tokenId}`, () =>
              this.ledger.attachSession(o.rec.tokenId, o.rec).catch((e: unknown) => {
                // Ended site-wide meanwhile: it stays ended (the watch drops it here).
                if (!(e instanceof EtcdStoreError && e.code === 'REVOKED')) throw e;
              }),
            );
          break;
        case 'drop-session':
          run(`s${o.tokenId}`, () => this.ledger.deleteSession(o.tokenId));
          break;
        case 'revoke':
          if (once(o)) revokes.push({ tokenId: o.tokenId, expires: o.expires });
          else run(`v${o.tokenId}`, () => this.ledger.revoke(o.tokenId, o.expires));
          break;
        case 'reply':
          if (o.deps.length > 0) acks.push(o);
          else if (once(o)) free.push({ key: o.key, rec: o.rec });
          else
            run(`r${Buffer.from(o.key).toString('hex')}`, () => this.ledger.putReply(o.key, o.rec));
          break;
        case 'floor':
          run(`f${o.tokenId}`, () => this.ledger.setSeqFloor(o.tokenId, o.floor));
          break;
        case 'enqueue':
          run(`q${o.e.tokenId}/${o.e.feature}`, () => this.ledger.enqueue(o.e));
          break;
        case 'dequeue':
          dequeues.push(o);
          break;
      }
    }
    if (sessions.length + revokes.length + free.length > 0) {
      settled.push(this.ledger.writeRecords({ sessions, revokes, replies: free }).catch(note));
    }
    await Promise.all(settled);
    // The grants are settled: what depended on them now goes, without the refused ones.
    const kept = acks.filter((o) => !o.deps.some((id) => refused.has(id)));
    applied -= acks.length - kept.length;
    const after: Promise<unknown>[] = [];
    if (kept.length > 0 && failure === undefined) {
      after.push(
        this.ledger
          .writeRecords({ replies: kept.map((o) => ({ key: o.key, rec: o.rec })) })
          .catch(note),
      );
    }
    for (const o of dequeues) {
      // A queued session whose assigned seat the site refused keeps its place.
      if (refusedFor.has(`${hex16(o.tokenId)}/${o.feature}`)) {
        applied--;
        continue;
      }
      run(`q${o.tokenId}/${o.feature}`, () => this.ledger.dequeue(o.tokenId, o.feature));
    }
    await Promise.all([...after, ...chains.values()]);
    if (failure !== undefined) throw failure;
    // Committed: until the watch brings them, the mirror answers for them.
    for (const id of revoked) this.revoked.set(id, Math.max(this.revoked.get(id) ?? 0, 1));
    const dropped = new Set(
      acks.filter((o) => !kept.includes(o)).map((o) => Buffer.from(o.key).toString('hex')),
    );
    for (const [k, r] of replies)
      if (!dropped.has(k) && !this.replies.has(k)) this.replies.set(k, r);
    for (const [id, why] of burns) {
      if (!this.burned.has(id)) this.burned.set(id, { why, until: this.#now() + BURN_MS });
    }
    return { applied, refused };
  }

  // ---------------------------------------------------------------- reads (the mirror)

  getReply(key: Uint8Array, now: number): ReplyRecord | undefined {
    const k = Buffer.from(key).toString('hex');
    const r = this.#pendingReplies.get(k) ?? this.replies.get(k);
    return r && r.expires > now ? r : undefined;
  }

  isRevoked(tokenId: bigint): boolean {
    return this.#pendingRevoked.has(tokenId) || this.revoked.has(tokenId);
  }

  isReclaimed(leaseId: bigint): boolean {
    return this.reclaimedWhy(leaseId) !== undefined;
  }

  reclaimedWhy(leaseId: bigint): ReclaimedWhy | undefined {
    const p = this.#pendingBurns.get(leaseId);
    if (p !== undefined) return p;
    const b = this.burned.get(leaseId);
    if (!b) return undefined;
    return b.until > this.#now() ? b.why : undefined;
  }

  /** etcd expires records itself (leases per expiry bucket); this prunes the mirror. */
  flushExpired(now: number, batch: number): FlushResult {
    let deleted = 0;
    for (const [k, r] of this.replies) {
      if (deleted >= batch) return { deleted, more: true };
      if (r.expires <= now) {
        this.replies.delete(k);
        deleted++;
      }
    }
    for (const [id, b] of this.burned) {
      if (deleted >= batch) return { deleted, more: true };
      if (b.until <= now) {
        this.burned.delete(id);
        deleted++;
      }
    }
    return { deleted, more: false };
  }

  /** The site as mirrored now, for the pools and the session table. */
  load(opts: { sessions?: boolean } = {}): StoreSnapshot {
    const queue = [...this.queue.values()].sort((a, b) => a.seq - b.seq);
    return {
      sessions: opts.sessions === false ? [] : [...this.eachSession()],
      leases: [...this.leases.values()],
      queue,
      revokedCount: this.revoked.size,
      reclaimedCount: this.burned.size,
      meta: new Map(this.#meta),
    };
  }

  *eachSession(): IterableIterator<SessionRecord> {
    for (const s of this.sessions.values()) {
      yield { ...s, seqFloor: this.floors.get(s.tokenId) ?? -1 };
    }
  }

  /** The site's queue entry of (tokenId, feature), if any. */
  queued(tokenId: bigint, feature: string): QueueRecord | undefined {
    for (const q of this.queue.values())
      if (q.tokenId === tokenId && q.feature === feature) return q;
    return undefined;
  }

  /**
   * Stops the watch and closes the ledger, revoking this server's etcd lease (its sessions'
   * liveness keys go with it, so the other servers know at once). Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#stop?.().catch(() => undefined);
    await this.ledger.close();
  }
}
