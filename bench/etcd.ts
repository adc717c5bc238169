/**
 * A real etcd cluster for benchmarks and tests: three (or `size`) `etcd` child processes on
 * 127.0.0.1, ports picked free by the kernel, data dirs in a temp dir, started with
 * `--initial-cluster-state new` and waited on until every member agrees on a leader. Members
 * can be killed (SIGKILL), frozen (SIGSTOP/SIGCONT) and restarted on their own data dir by
 * index. `etcdMissing()` says when `etcd` is not on PATH (the bench prints its etcd rows as
 * not run; test/helpers/etcd.ts re-exports all of this and decides how a test skips).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';

/** Why etcd tests cannot run here, or undefined when `etcd` is on PATH. */
export function etcdMissing(): string | undefined {
  const r = spawnSync('etcd', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    return 'etcd is not on PATH: install it with `apt-get install etcd-server` (Debian)';
  }
  return undefined;
}

/** Ports the kernel calls free right now on 127.0.0.1 (bound to port 0, then closed). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      servers.push(s);
      s.listen(0, '127.0.0.1');
      await once(s, 'listening');
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export interface ClusterOptions {
  /** Members, default 3. */
  size?: number;
  /** Raft heartbeat interval, ms (default 50: fast elections for tests). */
  heartbeatMs?: number;
  /** Raft election timeout, ms (default 500). */
  electionMs?: number;
  /** How long start() and waitHealthy() wait at most, ms (default 30 000). */
  startTimeoutMs?: number;
}

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  proc?: ChildProcess;
  /** Last lines of stderr, for the error message when a member dies at start. */
  log: string;
}

/** A running cluster; see startCluster. */
export class EtcdCluster {
  readonly dir: string;
  private readonly members: Member[];
  private readonly opts: Required<ClusterOptions>;
  private readonly token = `floatlm-${randomBytes(6).toString('hex')}`;

  /** @internal use startCluster */
  constructor(dir: string, members: Member[], opts: Required<ClusterOptions>) {
    this.dir = dir;
    this.members = members;
    this.opts = opts;
  }

  /** Client URLs of every member, `http://127.0.0.1:PORT`, in member order. */
  get endpoints(): string[] {
    return this.members.map((m) => `http://127.0.0.1:${m.clientPort}`);
  }

  /** Number of members. */
  get size(): number {
    return this.members.length;
  }

  /** Whether member `i`'s process is running (possibly stopped). */
  running(i: number): boolean {
    const p = this.member(i).proc;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  private member(i: number): Member {
    const m = this.members[i];
    if (m === undefined) throw new RangeError(`member index ${i} out of range`);
    return m;
  }

  private initialCluster(): string {
    return this.members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  }

  /** Spawns member `i` on its data dir (new or existing). */
  spawnMember(i: number, state: 'new' | 'existing'): void {
    const m = this.member(i);
    if (this.running(i)) throw new Error(`member ${i} is already running`);
    const peer = `http://127.0.0.1:${m.peerPort}`;
    const client = `http://127.0.0.1:${m.clientPort}`;
    m.log = '';
    const p = spawn(
      'etcd',
      [
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        `--listen-client-urls=${client}`,
        `--advertise-client-urls=${client}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=${this.initialCluster()}`,
        `--initial-cluster-state=${state}`,
        `--initial-cluster-token=${this.token}`,
        `--heartbeat-interval=${this.opts.heartbeatMs}`,
        `--election-timeout=${this.opts.electionMs}`,
        '--logger=zap',
        '--log-level=error',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    p.stderr?.setEncoding('utf8');
    p.stderr?.on('data', (d: string) => {
      m.log = (m.log + d).slice(-4000);
    });
    m.proc = p;
  }

  /** SIGKILLs member `i` and waits for it to exit. No-op when it is not running. */
  async kill(i: number): Promise<void> {
    const p = this.member(i).proc;
    if (p === undefined || !this.running(i)) return;
    const exited = once(p, 'exit');
    p.kill('SIGKILL');
    await exited;
  }

  /** Freezes member `i` (SIGSTOP). */
  stop(i: number): void {
    if (!this.running(i)) throw new Error(`member ${i} is not running`);
    this.member(i).proc!.kill('SIGSTOP');
  }

  /** Thaws member `i` (SIGCONT). */
  cont(i: number): void {
    if (!this.running(i)) throw new Error(`member ${i} is not running`);
    this.member(i).proc!.kill('SIGCONT');
  }

  /** Starts member `i` again on its data dir after a kill. Does not wait for health. */
  restart(i: number): void {
    this.spawnMember(i, 'existing');
  }

  /** A client of member `i` alone, every call bounded by 1 s. Close it after use. */
  memberClient(i: number): Etcd3 {
    return new Etcd3({
      hosts: this.endpoints[i]!,
      dialTimeout: 1000,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 1000 }),
    });
  }

  /**
   * Waits until every running member (or those in `which`) reports the same leader, polling
   * each member's Status over its own endpoint.
   * @throws Error naming the members' last log lines after `timeoutMs` or when one exits.
   */
  async waitHealthy(
    which: number[] = this.members.map((_, i) => i),
    timeoutMs = this.opts.startTimeoutMs,
  ): Promise<void> {
    const clients = which.map((i) => this.memberClient(i));
    const deadline = Date.now() + timeoutMs;
    try {
      for (;;) {
        for (const i of which) {
          if (!this.running(i)) throw new Error(`etcd member ${i} exited: ${this.member(i).log}`);
        }
        const leaders = await Promise.all(
          clients.map((c) =>
            c.maintenance.status().then(
              (s) => s.leader,
              () => '0',
            ),
          ),
        );
        const first = leaders[0];
        if (first !== undefined && first !== '0' && leaders.every((l) => l === first)) {
          // A member answers Status before it serves linearizable writes: prove a write.
          const ok = await clients[0]!
            .put('floatlm-test/health')
            .value('1')
            .then(
              () => true,
              () => false,
            );
          if (ok) return;
        }
        if (Date.now() > deadline) {
          const logs = which.map((i) => `member ${i}: ${this.member(i).log.trim()}`).join('\n');
          throw new Error(`etcd cluster not healthy after ${timeoutMs} ms\n${logs}`);
        }
        // Polling a remote state with nothing to wait on: a bounded retry, not a sync sleep.
        await new Promise((r) => setTimeout(r, 50).unref());
      }
    } finally {
      for (const c of clients) c.close();
    }
  }

  /**
   * Index of the member the running members name as leader, asking each over its own
   * endpoint; undefined when none answers with a leader.
   */
  async leaderIndex(): Promise<number | undefined> {
    const answers = await Promise.all(
      this.members.map(async (_, i) => {
        if (!this.running(i)) return undefined;
        const c = this.memberClient(i);
        try {
          const s = await c.maintenance.status();
          return { self: s.header.member_id, leader: s.leader };
        } catch {
          return undefined;
        } finally {
          c.close();
        }
      }),
    );
    for (const a of answers) {
      if (a === undefined || a.leader === '0') continue;
      const i = answers.findIndex((b) => b?.self === a.leader);
      if (i >= 0) return i;
    }
    return undefined;
  }

  /** Kills every member (SIGCONT first, so a frozen one can die) and removes the data dirs. */
  async teardown(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) {
      if (this.running(i)) this.member(i).proc!.kill('SIGCONT');
      await this.kill(i);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Starts a fresh cluster and waits until it is healthy. A member that loses the race for
 * its port (another process took it between pick and bind) makes the whole start retry
 * with new ports, at most three times.
 * @throws Error when etcd is missing or the cluster does not become healthy.
 */
export async function startCluster(o: ClusterOptions = {}): Promise<EtcdCluster> {
  const opts: Required<ClusterOptions> = {
    size: o.size ?? 3,
    heartbeatMs: o.heartbeatMs ?? 50,
    electionMs: o.electionMs ?? 500,
    startTimeoutMs: o.startTimeoutMs ?? 30_000,
  };
  if (!Number.isInteger(opts.size) || opts.size < 1) {
    throw new RangeError('size must be a positive integer');
  }
  const missing = etcdMissing();
  if (missing) throw new Error(missing);
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'floatlm-etcd-'));
    const ports = await freePorts(2 * opts.size);
    const members: Member[] = [];
    for (let i = 0; i < opts.size; i++) {
      members.push({
        name: `m${i}`,
        clientPort: ports[2 * i]!,
        peerPort: ports[2 * i + 1]!,
        dataDir: join(dir, `m${i}`),
        log: '',
      });
    }
    const cluster = new EtcdCluster(dir, members, opts);
    for (let i = 0; i < opts.size; i++) cluster.spawnMember(i, 'new');
    try {
      await cluster.waitHealthy();
      return cluster;
    } catch (e) {
      lastError = e;
      await cluster.teardown();
      if (!/address already in use/.test(String(e))) break;
    }
  }
  throw lastError;
}
