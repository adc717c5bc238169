/**
 * Store durability under `kill -9`: a real child process group-commits leases and prints
 * each id after its commit returned; the parent SIGKILLs it at a random moment and checks
 * that every printed (acknowledged) id is in the database on reopen. Five rounds per
 * durability setting, on the same state dir, each reopen recovering the last crash.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { openStore } from '../../lib/store/index.ts';

const child = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

interface Round {
  acked: bigint[];
  signal: NodeJS.Signals | null;
  stderr: string;
}

function runAndKill(dir: string, durability: string): Promise<Round> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, dir, durability], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let stderr = '';
    let armed = false;
    // Bounded in time whatever happens: never wait on a child that prints nothing.
    const guard = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (d: string) => {
      out += d;
      if (!armed) {
        armed = true;
        setTimeout(() => p.kill('SIGKILL'), 10 + Math.floor(Math.random() * 250));
      }
    });
    p.stderr.setEncoding('utf8');
    p.stderr.on('data', (d: string) => {
      stderr += d;
    });
    p.on('error', reject);
    p.on('close', (_code, signal) => {
      clearTimeout(guard);
      // Only whole lines count: a line cut by the kill was never fully acknowledged.
      const whole = out.slice(0, out.lastIndexOf('\n') + 1);
      const acked = whole
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => BigInt(l));
      resolve({ acked, signal, stderr });
    });
  });
}

for (const durability of ['full', 'normal'] as const) {
  t.test(`every acknowledged commit survives SIGKILL (synchronous ${durability})`, async (tt) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'floatlm-crash-'));
    tt.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const all = new Set<bigint>();
    for (let round = 1; round <= 5; round++) {
      const r = await runAndKill(dir, durability);
      tt.equal(r.signal, 'SIGKILL', `round ${round}: killed, not exited (${r.stderr.trim()})`);
      tt.ok(r.acked.length > 0, `round ${round}: the child acknowledged ${r.acked.length} leases`);
      for (const id of r.acked) all.add(id);
      const s = openStore(dir);
      tt.equal(s.cleanShutdown, false, `round ${round}: the crash is seen as unclean`);
      const snap = s.load();
      const stored = new Set(snap.leases.map((l) => l.leaseId));
      const missing = [...all].filter((id) => !stored.has(id));
      tt.same(missing, [], `round ${round}: every acknowledged lease is stored`);
      const revokedAcked = [...all].filter((id) => id % 3n === 0n);
      tt.ok(
        revokedAcked.every((id) => s.isRevoked(id)),
        `round ${round}: every acknowledged revocation is stored`,
      );
      tt.equal(snap.leases.length, stored.size);
      s.close();
    }
  });
}
