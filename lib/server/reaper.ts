/**
 * The housekeeping timer: the notes' test_conn (ping quiet holders, reap the silent),
 * forgetting idle sessions, expiring tokens, ending the restart grace, flushing expired
 * revocations and records, and committing what the tick changed. Bounded work per tick.
 */
import { signDatagram } from '../auth/sign.ts';
import { randomBytes } from '../crypto/index.ts';
import { AuthMode, Flags, MsgType } from '../wire/index.ts';
import { type Core, hexId } from './core.ts';
import { degrade, tryRecover } from './faults.ts';
import type { Session } from './session.ts';
import { endServed, endSiteSession, siteTick, unheardMs } from './site-sessions.ts';

/** Sessions looked at per tick: a host with a million sweeps them over several ticks. */
const SWEEP_BUDGET = 20_000;

export class Reaper {
  readonly #core: Core;
  /** Where the quiet-session sweep resumes on the next tick. */
  #scan: Iterator<Session> | undefined;

  constructor(core: Core) {
    this.#core = core;
  }

  tick(): void {
    const core = this.#core;
    try {
      const now = core.now();
      core.outbox.replies.sweep(now);
      this.#sweep(now);
      core.graceLeft(now);
      // A site's seats idle by options TIMEOUT are not returned yet (docs/site.md).
      if (!core.site) this.#expireIdle(now);
      else siteTick(core, core.site);
      core.tokens.flushTokens(now, 5000);
      // A degraded daemon writes nothing until a probe write succeeds (then it commits).
      if (!tryRecover(core, now)) return;
      core.saveTallies();
      try {
        core.store.flushExpired(now, 100_000, 4);
      } catch (e) {
        degrade(core, e as Error, now);
        return;
      }
      if (core.store.pending() > 0) core.outbox.commitAndSend();
    } catch (e) {
      core.counters.internal++;
      core.log.error(`timer: ${(e as Error).message}`);
    }
  }

  /** Options TIMEOUT: seats idle (no checkout activity) that long go back to the pool. */
  #expireIdle(now: number): void {
    const core = this.#core;
    const idle = core.pool.expireIdle(now);
    for (const l of idle) {
      core.store.deleteLease(l.leaseId);
      core.burn(l.leaseId, l.sessionId, now);
      core.report.write('release', now, {
        session: hexId(l.sessionId),
        user: l.user,
        host: l.host,
        lease: hexId(l.leaseId),
        feature: l.feature,
        reason: 'idle timeout',
      });
    }
    if (idle.length) {
      core.log.info(`options TIMEOUT: ${idle.length} idle seat(s) returned to the pool`);
      core.afterRelease(now);
    }
  }

  #sweep(now: number): void {
    const core = this.#core;
    const o = core.opts;
    let budget = SWEEP_BUDGET;
    for (;;) {
      if (budget-- <= 0) return;
      this.#scan ??= core.sessions.values();
      const next = this.#scan.next();
      if (next.done) {
        this.#scan = undefined;
        return;
      }
      const s = next.value;
      const site = core.site;
      if (site && (site.remote.has(s.id) || site.orphans.has(s.id) || site.ending.has(s.id))) {
        // Another server looks after it; an orphan is reaped by the site's first server once
        // nobody has heard from it for the test_conn time.
        const since = site.orphans.get(s.id);
        if (since !== undefined && now - since >= unheardMs(o) && site.reapsOrphans()) {
          endSiteSession(
            core,
            site,
            s,
            'its server left the site and no server heard from it since',
            'none',
          );
        }
        continue;
      }
      if (now >= s.expires) {
        endServed(core, s, now, 'token expired');
        continue;
      }
      if (now - s.lastSeen < o.quietMs) continue;
      const holds = core.pool.leasesOf(s.id).length > 0 || core.pool.queuedOf(s.id) > 0;
      if (!holds) {
        // Holding nothing and idle for long: forget it (not revoked; its token restores it).
        if (now - s.lastSeen >= o.idleSessionMs) endServed(core, s, now, null);
        continue;
      }
      if (now < s.nextPingAt) continue;
      if (s.pings >= o.testConnTries) {
        endServed(core, s, now, `no answer to ${o.testConnTries} test_conn pings`);
        continue;
      }
      this.#testConn(s, now);
    }
  }

  #testConn(s: Session, now: number): void {
    const core = this.#core;
    const key = s.hmac;
    if (!key) {
      // Its server key left the keyring: nobody can talk in this session any more.
      endServed(core, s, now, 'its server key is gone from the keyring');
      return;
    }
    s.pings++;
    s.nextPingAt = now + core.opts.testConnIntervalMs;
    // One nonce for all pings of a quiet spell, so a late answer to an earlier one counts.
    s.pingNonce ??= randomBytes(8);
    // Seconds-based, so a restarted server's pings still advance the client's window.
    s.serverSeq = Math.max(s.serverSeq + 1, Math.floor(now / 1000)) >>> 0;
    const bytes = signDatagram(
      {
        type: MsgType.TEST_CONN,
        flags: Flags.FROM_SERVER,
        auth: { mode: AuthMode.SESSION },
        requestId: s.serverSeq,
        sessionId: s.id,
        seq: s.serverSeq,
        timestamp: now,
        body: { nonce: s.pingNonce },
        tag: new Uint8Array(32),
      },
      key,
    );
    core.outbox.sendRaw(bytes, s);
  }
}
