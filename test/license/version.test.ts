import fc from 'fast-check';
import t from 'tap';
import {
  compareVersion,
  isVersion,
  versionKey,
  versionProblem,
} from '../../lib/license/version.ts';

t.test('dotted numeric comparison', async (t) => {
  t.ok(compareVersion('2.10', '2.9') > 0, '2.10 > 2.9');
  t.ok(compareVersion('2.9', '2.10') < 0);
  t.equal(compareVersion('1', '1.0'), 0, 'missing components are 0');
  t.equal(compareVersion('1.0.0', '1'), 0);
  t.equal(compareVersion('01.002', '1.2'), 0, 'leading zeros do not matter');
  t.ok(compareVersion('1.0.1', '1') > 0);
  t.ok(compareVersion('10', '9.99') > 0);
  t.ok(compareVersion('0', '0.0.1') < 0);
  t.equal(compareVersion('999999999.1', '999999999.1'), 0);
});

t.test('versionKey groups equal versions', async (t) => {
  t.equal(versionKey('1'), '1');
  t.equal(versionKey('1.0'), '1');
  t.equal(versionKey('01.00'), '1');
  t.equal(versionKey('2.10'), '2.10');
  t.equal(versionKey('0'), '0');
  t.equal(versionKey('0.0'), '0');
  t.equal(versionKey('1.0.3'), '1.0.3');
});

t.test('valid and invalid versions', async (t) => {
  for (const ok of ['0', '1', '1.0', '2.10', '123456789', `${'1.'.repeat(15)}1`]) {
    t.equal(versionProblem(ok), undefined, ok);
    t.ok(isVersion(ok));
  }
  for (const bad of [
    '',
    '1.',
    '.1',
    '1..2',
    'a',
    '1.a',
    '1 2',
    '-1',
    '+1',
    '1e3',
    '1234567890',
    `${'1.'.repeat(16)}1`,
  ]) {
    t.type(versionProblem(bad), 'string', JSON.stringify(bad));
    t.notOk(isVersion(bad));
  }
  t.equal(`${'1.'.repeat(15)}1`.length, 31);
  t.equal(versionProblem('1'.repeat(9) + '.1'.repeat(12)), 'version longer than 32 characters');
  t.notOk(isVersion(1));
  t.throws(() => versionProblem(1 as unknown as string), TypeError);
  t.throws(() => compareVersion('x', '1'), { name: 'RangeError', message: /^a:/ });
  t.throws(() => compareVersion('1', ''), { name: 'RangeError', message: /^b:/ });
  t.throws(() => versionKey('1..'), RangeError);
});

t.test('comparison is a total order consistent with versionKey', async (t) => {
  const v = fc
    .array(fc.integer({ min: 0, max: 30 }), { minLength: 1, maxLength: 4 })
    .map((a) => a.join('.'));
  fc.assert(
    fc.property(v, v, v, (a, b, c) => {
      const ab = compareVersion(a, b);
      if (Math.sign(ab) !== -Math.sign(compareVersion(b, a))) return false;
      if ((ab === 0) !== (versionKey(a) === versionKey(b))) return false;
      if (ab <= 0 && compareVersion(b, c) <= 0 && compareVersion(a, c) > 0) return false;
      return true;
    }),
  );
  t.pass('antisymmetric, transitive, key-consistent');
});
