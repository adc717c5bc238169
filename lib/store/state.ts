/**
 * The one interface the daemon writes and reads its durable state through, whichever backend
 * holds it: the embedded SQLite file of a single server (lib/store/sqlite.ts) or the etcd
 * ledger of a site (lib/store/site.ts). Writes are recorded, then made durable together by
 * `commit()` (group commit); reads see what is committed plus what is pending.
 */
import type {
  FlushResult,
  LeaseRecord,
  QueueRecord,
  ReclaimedWhy,
  ReplyRecord,
  SessionRecord,
  StoreSnapshot,
} from './sqlite.ts';

/** What an asynchronous commit (the site's) made durable and what it refused. */
export interface CommitOutcome {
  /** Changes applied. */
  applied: number;
  /**
   * Lease ids whose grant the site refused (another server took the last seats first): not
   * granted, and no reply that depends on them was kept. Empty for SQLite.
   */
  refused: ReadonlySet<bigint>;
}

export interface StateStore {
  /** Which backend this is: 'sqlite' (one server) or 'etcd' (a site). */
  readonly backend: 'sqlite' | 'etcd';
  putSession(s: SessionRecord): void;
  touchSessionAddr(tokenId: bigint, ip: string, port: number): void;
  setSeqFloor(tokenId: bigint, floor: number): void;
  /**
   * Keeps the reply to a request that changes state. `dependsOn`: lease ids granted by that
   * request; a backend that can refuse a grant at commit drops the record with it.
   */
  putReply(key: Uint8Array, r: ReplyRecord, dependsOn?: readonly bigint[]): void;
  getReply(key: Uint8Array, now: number): ReplyRecord | undefined;
  deleteSession(tokenId: bigint): void;
  putLease(l: LeaseRecord): void;
  deleteLease(leaseId: bigint): void;
  enqueue(e: Omit<QueueRecord, 'seq'>): void;
  dequeue(tokenId: bigint, feature: string): void;
  revoke(tokenId: bigint, expires: number): void;
  markReclaimed(leaseId: bigint, expires: number, why?: ReclaimedWhy): void;
  setMeta(key: string, value: string): void;
  discardPending(): number;
  probe(now: number): boolean;
  pending(): number;
  pendingForeground(): number;
  /** SQLite commits synchronously (a count); a site resolves once etcd has committed. */
  commit(): number | Promise<CommitOutcome>;
  isRevoked(tokenId: bigint): boolean;
  isReclaimed(leaseId: bigint): boolean;
  reclaimedWhy(leaseId: bigint): ReclaimedWhy | undefined;
  flushExpired(now: number, batch: number, budgetMs?: number): FlushResult;
  load(opts?: { sessions?: boolean }): StoreSnapshot;
  eachSession(): IterableIterator<SessionRecord>;
  close(): void | Promise<void>;
}
