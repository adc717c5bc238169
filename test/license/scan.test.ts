/** lib/license/scan.ts: logical lines, tokens and file:line:column problems. */
import t from 'tap';
import { at, problem, scan } from '../../lib/license/scan.ts';

t.test('scan: comments, blanks, continuations, quotes, KEY=VALUE', async (t) => {
  const { logical, physical } = scan('# c\nA b \\\n  K="x y"\n\nC\td\r\nE "bad');
  t.equal(physical.length, 6);
  t.same(
    logical.map((l) => [l.line, l.tokens.map((x) => [x.raw, x.key, x.value, x.line, x.column])]),
    [
      [
        2,
        [
          ['A', undefined, 'A', 2, 1],
          ['b', undefined, 'b', 2, 3],
          ['K="x y"', 'K', 'x y', 3, 3],
        ],
      ],
      [
        5,
        [
          ['C', undefined, 'C', 5, 1],
          ['d', undefined, 'd', 5, 3],
        ],
      ],
      [6, [['E', undefined, 'E', 6, 1]]],
    ],
  );
  t.same(logical[2]!.error, { line: 6, column: 3, message: 'unterminated quoted string' });
  t.same([logical[0]!.lastLine, logical[0]!.endColumn], [3, 10], 'where a missing field would go');
  t.match(scan('a"b"c').logical[0]!.error?.message, /misplaced quote/);
});

t.test('problem: file:line:column: reason', async (t) => {
  const tok = scan('X  y').logical[0]!.tokens[1]!;
  t.same(problem('f.opt', at(tok, 'bad y')), {
    file: 'f.opt',
    line: 1,
    column: 4,
    message: 'bad y',
    text: 'f.opt:1:4: bad y',
  });
});
