/**
 * The queues: per feature name, FIFO entries of sessions waiting for seats, with a
 * per-session index so "how many queues does this session wait in" (every HEARTBEAT_ACK)
 * and "touch this session's entries" cost the session's own entries, not every queue.
 * Who is granted when is the pool's business (lib/license/pool.ts); this keeps order.
 */
import type { CredentialCap } from './ledger.ts';

export interface QueueEntry {
  sessionId: bigint;
  user: string;
  host: string;
  /** Canonical source address; '' = unknown. */
  addr: string;
  /** The cap of the session's credential, when the checkout named one. */
  credential?: CredentialCap | undefined;
  feature: string;
  /** Minimum version wanted. */
  version: string;
  count: number;
  /** ms UTC when the entry joined the queue. */
  since: number;
  /** ms UTC of the last poll or touch. */
  lastPoll: number;
}

/** Every queue. See the module comment. */
export class Queues {
  /** Oldest first. */
  readonly #byFeature = new Map<string, QueueEntry[]>();
  readonly #bySession = new Map<bigint, Map<string, QueueEntry>>();
  /** Entries per feature of each capped credential: whose seats freed may unblock whom. */
  readonly #byCredential = new Map<string, Map<string, number>>();

  /** Feature names with a queue, in the order their queues were created. */
  features(): string[] {
    return [...this.#byFeature.keys()];
  }

  /** The queue of a feature, oldest first (empty when none). Do not modify. */
  of(feature: string): readonly QueueEntry[] {
    return this.#byFeature.get(feature) ?? [];
  }

  /** Entries of every queue, each queue oldest first. */
  *entries(): IterableIterator<QueueEntry> {
    for (const q of this.#byFeature.values()) yield* q;
  }

  entry(sessionId: bigint, feature: string): QueueEntry | undefined {
    return this.#bySession.get(sessionId)?.get(feature);
  }

  /** 1-based position of the session in the feature's queue, 0 when not in it. */
  position(sessionId: bigint, feature: string): number {
    const e = this.entry(sessionId, feature);
    return e ? this.of(feature).indexOf(e) + 1 : 0;
  }

  /** Number of queues the session waits in. */
  countOf(sessionId: bigint): number {
    return this.#bySession.get(sessionId)?.size ?? 0;
  }

  /** The feature names the session waits for. */
  featuresOf(sessionId: bigint): string[] {
    return [...(this.#bySession.get(sessionId)?.keys() ?? [])];
  }

  /** The features for which entries of a capped credential wait. */
  featuresOfCredential(id: string): string[] {
    return [...(this.#byCredential.get(id)?.keys() ?? [])];
  }

  /** Appends an entry; false (nothing changes) when the session already waits for it. */
  push(e: QueueEntry): boolean {
    if (this.entry(e.sessionId, e.feature)) return false;
    const q = this.#byFeature.get(e.feature);
    if (!q) this.#byFeature.set(e.feature, [e]);
    else {
      // In order of arrival: an entry restored (or mirrored from another server of a site)
      // takes its place by `since`, not the back of the queue. New entries are the latest.
      let i = q.length;
      while (i > 0 && q[i - 1]!.since > e.since) i--;
      q.splice(i, 0, e);
    }
    const s = this.#bySession.get(e.sessionId);
    if (s) s.set(e.feature, e);
    else this.#bySession.set(e.sessionId, new Map([[e.feature, e]]));
    if (e.credential) {
      const c = this.#byCredential.get(e.credential.id) ?? new Map<string, number>();
      c.set(e.feature, (c.get(e.feature) ?? 0) + 1);
      this.#byCredential.set(e.credential.id, c);
    }
    return true;
  }

  /** Removes the session's entry for a feature; the entry, or undefined when none. */
  remove(sessionId: bigint, feature: string): QueueEntry | undefined {
    const e = this.entry(sessionId, feature);
    if (!e) return undefined;
    const q = this.#byFeature.get(feature)!;
    q.splice(q.indexOf(e), 1);
    if (q.length === 0) this.#byFeature.delete(feature);
    this.#unindex(e);
    return e;
  }

  /** Keeps only the entries of a feature's queue that `keep` accepts; returns the others. */
  filter(feature: string, keep: (e: QueueEntry) => boolean): QueueEntry[] {
    const q = this.#byFeature.get(feature);
    if (!q) return [];
    const kept: QueueEntry[] = [];
    const gone: QueueEntry[] = [];
    for (const e of q) (keep(e) ? kept : gone).push(e);
    if (gone.length === 0) return gone;
    for (const e of gone) this.#unindex(e);
    if (kept.length) this.#byFeature.set(feature, kept);
    else this.#byFeature.delete(feature);
    return gone;
  }

  /** Marks the session's entries as polled at `now`. */
  touch(sessionId: bigint, now: number): void {
    for (const e of this.#bySession.get(sessionId)?.values() ?? []) e.lastPoll = now;
  }

  /**
   * Checks the two indexes agree.
   * @throws {Error} describing the first disagreement
   */
  check(): void {
    let n = 0;
    for (const [name, q] of this.#byFeature) {
      if (q.length === 0) throw new Error(`empty queue ${name}`);
      for (const e of q) {
        if (e.feature !== name || this.entry(e.sessionId, name) !== e)
          throw new Error(`queue ${name}: entry of session ${e.sessionId} not indexed`);
        n++;
      }
    }
    let m = 0;
    for (const s of this.#bySession.values()) m += s.size;
    if (m !== n) throw new Error(`queue index lists ${m} entries, queues hold ${n}`);
    let capped = 0;
    for (const e of this.entries()) if (e.credential) capped++;
    let c = 0;
    for (const byFeature of this.#byCredential.values()) for (const k of byFeature.values()) c += k;
    if (c !== capped) throw new Error(`credential index lists ${c} entries, queues hold ${capped}`);
  }

  #unindex(e: QueueEntry): void {
    const s = this.#bySession.get(e.sessionId);
    if (!s) return;
    s.delete(e.feature);
    if (s.size === 0) this.#bySession.delete(e.sessionId);
    if (!e.credential) return;
    const c = this.#byCredential.get(e.credential.id)!;
    const n = c.get(e.feature)! - 1;
    if (n > 0) c.set(e.feature, n);
    else c.delete(e.feature);
    if (c.size === 0) this.#byCredential.delete(e.credential.id);
  }
}
