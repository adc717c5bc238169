/**
 * Builds the C client (clients/c) once per test process into a temp dir, with the same
 * flags as its Makefile, and runs its programs.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const C_DIR = join(ROOT, 'clients/c');

let built: string | undefined;

/**
 * Runs `make` for the given targets (file names under the build dir) and returns the dir.
 * @throws {Error} with the compiler output when the build fails
 */
export function buildC(targets: string[]): string {
  if (built === undefined) {
    const d = mkdtempSync(join(tmpdir(), 'floatlm-c-'));
    process.once('exit', () => rmSync(d, { recursive: true, force: true }));
    built = d;
  }
  const dir = built;
  const r = spawnSync(
    'make',
    ['-s', '-C', C_DIR, `BUILD=${dir}`, ...targets.map((t) => join(dir, t))],
    {
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`make failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return dir;
}

/**
 * Runs a built program with `input` on stdin; returns stdout.
 * @throws {Error} when it exits non-zero (sanitizer reports included)
 */
export function runC(program: string, args: string[], input = ''): string {
  return execFileSync(program, args, {
    input,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0' },
  });
}
