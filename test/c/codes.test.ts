/**
 * The C client's wire error codes equal lib/wire/codes.ts, both ways: the FLM_CODE_*
 * constants of floatlm.h (read back through the compiler, not only the text) and the names
 * flm_code_name gives at run time. A code added on either side without the other fails here.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ErrorCode } from '../../lib/wire/codes.ts';
import { buildC, C_DIR, runC } from './build.ts';

type Table = Record<string, number>;

const ts: Table = { ...ErrorCode };
const dir = buildC(['test_vectors']);

/** The names of the header's FLM_CODE_* enum, as written. */
function headerNames(): string[] {
  const h = readFileSync(join(C_DIR, 'floatlm.h'), 'utf8');
  return [...h.matchAll(/\bFLM_CODE_([A-Z0-9_]+)\s*=/g)].map((m) => m[1]!);
}

/** The header's constants with the values the compiler gives them. */
function headerTable(): Table {
  const names = headerNames();
  const src = join(dir, 'codes.c');
  writeFileSync(
    src,
    [
      '#include <stdio.h>',
      '#include "floatlm.h"',
      'int main(void) {',
      ...names.map((n) => `  printf("%s %ld\\n", "${n}", (long)FLM_CODE_${n});`),
      '  return 0;',
      '}',
      '',
    ].join('\n'),
  );
  const bin = join(dir, 'codes');
  execFileSync('cc', ['-std=c99', '-pedantic', '-Wall', '-Werror', '-I', C_DIR, src, '-o', bin]);
  return parse(runC(bin, []));
}

/** "NAME NUMBER" or "NUMBER NAME" lines into a table. */
function parse(out: string, numberFirst = false): Table {
  const table: Table = {};
  for (const l of out.trim().split('\n')) {
    const [a, b] = l.split(' ');
    const [name, value] = numberFirst ? [b!, a!] : [a!, b!];
    table[name] = Number(value);
  }
  return table;
}

/** What differs between the TypeScript table and one of the C side's, in both directions. */
function compare(t: Test, c: Table, what: string): void {
  const missingInC = Object.keys(ts).filter((n) => !(n in c));
  const onlyInC = Object.keys(c).filter((n) => !(n in ts));
  const differ = Object.keys(ts)
    .filter((n) => n in c && c[n] !== ts[n])
    .map((n) => `${n}: ${c[n]} in C, ${ts[n]} in codes.ts`);
  t.same(missingInC, [], `${what}: no code of lib/wire/codes.ts is missing`);
  t.same(onlyInC, [], `${what}: no code that lib/wire/codes.ts does not have`);
  t.same(differ, [], `${what}: the same number for each name`);
}

t.test('floatlm.h FLM_CODE_* equals lib/wire/codes.ts', async (t) => {
  const names = headerNames();
  t.ok(names.length >= 30, `the header's codes were found (${names.length})`);
  t.equal(new Set(names).size, names.length, 'no name twice');
  compare(t, headerTable(), 'floatlm.h');
});

t.test('flm_code_name equals lib/wire/codes.ts', async (t) => {
  // every u16 the code field can carry, so a name for a code TypeScript lacks shows too
  const out = runC(join(dir, 'test_vectors'), ['codes']);
  const names = parse(out, true);
  compare(t, names, 'flm_code_name');
  t.equal(out.trim().split('\n').length, Object.keys(names).length, 'no two codes share a name');
});
