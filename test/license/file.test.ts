import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import fc from 'fast-check';
import t from 'tap';
import {
  demoLicense,
  formatExpiry,
  generateVendorKeyPair,
  parseLicense,
  SIGN_DOMAIN,
  signedMessage,
  signLicense,
  signLicenseDetailed,
  vendorPublicKey,
  verifyLicense,
} from '../../lib/license/file.ts';

const FIX = join(import.meta.dirname, '../fixtures/licenses');
const acmeKey = hexToBytes(readFileSync(join(FIX, 'acme.key'), 'utf8').trim());
const acmePub = hexToBytes(readFileSync(join(FIX, 'acme.pub'), 'utf8').trim());
const keys = new Map([['acme', acmePub]]);
const NOW = Date.parse('2030-06-01T00:00:00Z');

const parse = (text: string, now = NOW, vendorKeys: Map<string, Uint8Array> = keys) =>
  parseLicense(text, 'x.lic', { vendorKeys, now });

t.test('fixture key pair matches', async (t) => {
  t.same(vendorPublicKey(acmeKey), acmePub);
});

t.test('a good file: every line served, continuation and comments, one expired line', async (t) => {
  const r = parseLicense(readFileSync(join(FIX, 'good.lic'), 'utf8'), 'good.lic', {
    vendorKeys: keys,
    now: NOW,
  });
  t.same(
    r.problems.map((p) => p.text),
    ['good.lic:11:25: viewer 1.0 expired on 31-dec-2020'],
  );
  t.same(r.servers, [{ host: 'lichost', hostid: 'ANY', port: 27400, line: 2 }]);
  t.same(r.vendors, [{ name: 'acme', options: {}, line: 3 }]);
  t.same(
    r.features.map((f) => [f.line, f.keyword, f.name, f.version, f.count, f.expired]),
    [
      [4, 'FEATURE', 'cad', '2.10', 3, false],
      [5, 'INCREMENT', 'cad', '2.10', 2, false],
      [7, 'FEATURE', 'cad', '1.0', 1, false],
      [8, 'FEATURE', 'solver', '3', 4, false],
      [11, 'FEATURE', 'viewer', '1.0', 5, true],
    ],
  );
  const cad = r.features[0]!;
  t.equal(cad.expires, null);
  t.equal(cad.rawOptions.ISSUER, 'Acme Licensing, Inc.');
  t.equal(cad.file, 'good.lic');
  const solver = r.features[3]!;
  t.same(solver.options, {
    dupGroup: 'UHD',
    maxPerUser: 2,
    maxPerHost: 3,
    queue: true,
    queueMax: 10,
    heartbeat: 60,
  });
  t.equal(solver.rawOptions.NOTICE, 'for "testing"', 'escaped quotes inside a quoted value');
  t.equal(solver.expires, Date.parse('2040-01-02T00:00:00Z'), 'serves through its expiry day');
  t.equal(
    solver.canonical,
    'FEATURE solver acme 3 1-jan-2040 4 HEARTBEAT=60 MAX_PER_HOST=3 MAX_PER_USER=2 NOTICE="for \\"testing\\"" QUEUE=yes QUEUE_MAX=10',
  );
  t.same(r.features[4]!.options.dupGroup, 'NONE');
  t.equal(r.features[4]!.options.queue, false);
});

t.test('a bad file: each failing line at its line:column, the rest served', async (t) => {
  const r = parseLicense(readFileSync(join(FIX, 'bad.lic'), 'utf8'), 'bad.lic', {
    vendorKeys: keys,
    now: NOW,
  });
  const expected: [number, number, RegExp][] = [
    [4, 39, /^signature does not verify/],
    [5, 1, /^missing SIGN=/],
    [6, 21, /^bad version "1\.\.2"/],
    [7, 26, /^bad expiry "31-feb-2030": no such date/],
    [8, 37, /^uncounted licenses are not supported/],
    [9, 37, /^unknown option MAX_PER_USR/],
    [10, 33, /^missing count:/],
    [11, 15, /^no public key for vendor "other"/],
    [12, 1, /^duplicate FEATURE ok 1\.0 \(vendor acme\): the one on line 3 is served/],
    [13, 1, /^options differ from line 3/],
    [14, 22, /^old 1\.0 expired on 1-jan-2020$/],
    [15, 1, /^unknown keyword "FROB"/],
    [16, 43, /^unterminated quoted string$/],
    [17, 7, /^missing host hostid/],
    [18, 39, /^signature does not verify/],
    [20, 14, /^DUP_GROUP must be UHD, UH, U, H or NONE, not "XY"$/],
    [21, 37, /^SIGN must be 128 hex digits/],
  ];
  t.equal(r.problems.length, expected.length);
  expected.forEach(([line, column, re], i) => {
    const p = r.problems[i]!;
    t.same([p.line, p.column], [line, column], `problem ${i}: ${p.text}`);
    t.match(p.message, re);
    t.equal(p.text, `bad.lic:${line}:${column}: ${p.message}`);
    t.equal(p.file, 'bad.lic');
  });
  t.same(
    r.features.map((f) => [f.line, f.name, f.count, f.expired]),
    [
      [3, 'ok', 2, false],
      [14, 'old', 1, true],
      [22, 'ok', 2, false],
    ],
  );
});

t.test('a tampered count fails its signature and only that line is dropped', async (t) => {
  const signed = signLicense(
    'FEATURE a acme 1.0 permanent 2\nFEATURE b acme 1.0 permanent 2\n',
    acmeKey,
  );
  t.same(verifyLicense(signed, 'f', keys), []);
  const tampered = signed.replace(
    'FEATURE b acme 1.0 permanent 2',
    'FEATURE b acme 1.0 permanent 20',
  );
  const r = parse(tampered);
  t.same(
    r.features.map((f) => f.name),
    ['a'],
  );
  t.equal(r.problems.length, 1);
  t.equal(r.problems[0]!.line, 2);
  t.equal(r.problems[0]!.column, 33, 'the column of SIGN=');
  t.match(r.problems[0]!.message, /signature does not verify/);
  // Every signed field counts.
  for (const [from, to] of [
    ['a acme', 'A acme'],
    ['1.0', '1.1'],
    ['permanent', '31-dec-2099'],
    ['FEATURE a', 'INCREMENT a'],
  ] as const) {
    const changed = signed.replace(
      `FEATURE a acme 1.0 permanent 2`,
      `FEATURE a acme 1.0 permanent 2`.replace(from, to),
    );
    t.equal(parse(changed).problems.length, 1, `${from} -> ${to}`);
  }
});

t.test('sign and verify round trip; canonical form tolerates layout, not content', async (t) => {
  const text =
    '# comment kept\r\nVENDOR acme\r\nfeature x acme 2.10 31-DEC-2099 3 queue=yes ISSUER="A \\\\ B" \\\r\n   MAX_PER_USER=2\r\nINCREMENT x acme 2.10 permanent 1 QUEUE=yes MAX_PER_USER=2 SIGN=00\r\n';
  const d = signLicenseDetailed(text, acmeKey, 'x.lic');
  t.equal(d.signed, 2);
  t.same(d.problems, []);
  t.match(d.text, /^# comment kept\r\nVENDOR acme\r\n/);
  t.equal(d.text.split('\r\n').length, text.split('\r\n').length, 'line endings kept');
  t.match(
    d.text,
    /MAX_PER_USER=2 SIGN=[0-9a-f]{128}\r\nINCREMENT/,
    'appended on the last physical line',
  );
  t.notMatch(d.text, /SIGN=00\r\n/, 'an old SIGN is replaced');
  t.same(verifyLicense(d.text, 'x.lic', keys), []);
  t.equal(signLicense(d.text, acmeKey), d.text, 'signing again changes nothing');

  const r = parse(d.text);
  t.same(r.problems, []);
  const x = r.features[0]!;
  t.equal(
    x.canonical,
    'FEATURE x acme 2.10 31-dec-2099 3 ISSUER="A \\\\ B" MAX_PER_USER=2 QUEUE=yes',
  );
  t.ok(ed25519.verify(x.signature, signedMessage(x.canonical), acmePub));
  t.same(signedMessage('Q'), new TextEncoder().encode(`${SIGN_DOMAIN}Q`));

  const sig = /SIGN=([0-9a-f]{128})/.exec(d.text)![1]!;
  const layouts = [
    `FEATURE   x\tacme 2.10 31-dec-2099 3 MAX_PER_USER=2 QUEUE=yes ISSUER="A \\\\ B" SIGN=${sig}`,
    `Feature x acme 2.10 31-Dec-2099 3 \\\n max_per_user=2 \\\n  # between\n Queue=yes Issuer="A \\\\ B" SIGN=${sig.toUpperCase()}`,
  ];
  for (const l of layouts) t.same(parse(l).problems, [], l);
  const content = [
    `FEATURE x acme 2.10 31-dec-2099 3 MAX_PER_USER=2 QUEUE=YES ISSUER="A \\\\ B" SIGN=${sig}`,
    `FEATURE x acme 2.10 31-dec-2099 3 MAX_PER_USER=2 QUEUE=yes ISSUER="A \\\\ b" SIGN=${sig}`,
    `FEATURE x acme 2.10 31-dec-2099 3 MAX_PER_USER=2 QUEUE=yes ISSUER="A \\\\ B" HEARTBEAT=5 SIGN=${sig}`,
    `FEATURE x acme 2.10 31-dec-2099 03 MAX_PER_USER=2 QUEUE=yes ISSUER="A \\\\ B" SIGN=${sig}`.replace(
      ' 03 ',
      ' 4 ',
    ),
  ];
  for (const l of content) t.match(parse(l).problems[0]?.message, /signature does not verify/, l);

  const other = generateVendorKeyPair();
  t.match(
    verifyLicense(d.text, 'x.lic', new Map([['acme', other.publicKey]]))[0]?.text,
    /^x\.lic:4:19: signature/,
  );
  t.match(
    verifyLicense(d.text, 'x.lic', new Map())[0]?.text,
    /^x\.lic:3:11: no public key for vendor "acme"/,
  );
});

t.test('signLicense leaves lines with syntax errors unsigned and reports them', async (t) => {
  const d = signLicenseDetailed(
    'FEATURE a acme 1.x permanent 1\nFEATURE b acme 1 permanent 1\n',
    acmeKey,
    'f',
  );
  t.equal(d.signed, 1);
  t.same(
    d.problems.map((p) => p.text),
    [
      'f:1:16: bad version "1.x": expected dotted numbers such as 1.0 or 2.10 (at most 9 digits each)',
    ],
  );
  t.match(d.text, /^FEATURE a acme 1\.x permanent 1\nFEATURE b acme 1 permanent 1 SIGN=/);
});

t.test('expiry boundary: serves through the expiry day, UTC', async (t) => {
  const text = signLicense('FEATURE a acme 1 31-dec-2029 1\n', acmeKey);
  const end = Date.parse('2030-01-01T00:00:00Z');
  const before = parse(text, end - 1);
  t.same(before.problems, []);
  t.equal(before.features[0]!.expired, false);
  t.equal(before.features[0]!.expires, end);
  const after = parse(text, end);
  t.equal(after.features.length, 1, 'still loaded so the pool can say FEATURE_EXPIRED');
  t.equal(after.features[0]!.expired, true);
  t.same(
    after.problems.map((p) => p.text),
    ['x.lic:1:18: a 1 expired on 31-dec-2029'],
  );
  t.same(verifyLicense(text, 'x.lic', keys), [], 'verify without now ignores expiry');
  t.equal(verifyLicense(text, 'x.lic', keys, end).length, 1);
  t.equal(formatExpiry(Date.parse('2027-12-31T23:59:59Z')), '31-dec-2027');
  t.equal(formatExpiry(Date.parse('2028-02-29T00:00:00Z')), '29-feb-2028');
});

t.test('a renewed FEATURE below an expired one is served, not a duplicate', async (t) => {
  const text = signLicense(
    'FEATURE a acme 1 31-dec-2029 5 QUEUE=no\nFEATURE a acme 1.0 31-dec-2031 2\nFEATURE a acme 1 31-dec-2031 9\n',
    acmeKey,
  );
  const r = parse(text);
  t.same(
    r.problems.map((p) => [p.line, p.column]),
    [
      [1, 18],
      [3, 1],
    ],
  );
  t.match(
    r.problems[1]!.message,
    /^duplicate FEATURE a 1 \(vendor acme\): the one on line 2 is served/,
  );
  t.same(
    r.features.map((f) => [f.line, f.count, f.expired]),
    [
      [1, 5, true],
      [2, 2, false],
    ],
  );
});

t.test('syntax details', async (t) => {
  const one = (line: string) => {
    const p = parse(line).problems;
    return p.length ? `${p[0]!.column}: ${p[0]!.message}` : 'ok';
  };
  const signed = (line: string) => one(signLicense(line, acmeKey));
  t.equal(signed('FEATURE a acme 1 permanent 1'), 'ok');
  t.equal(signed('FEATURE a acme 1 permanent 1000000000'), 'ok');
  t.match(
    signed('FEATURE a acme 1 permanent 1000000001'),
    /^28: count must be an integer from 1 to 1000000000/,
  );
  t.match(signed('FEATURE a acme 1 permanent 0'), /^28: count must be/);
  t.match(signed('FEATURE a acme 1 permanent -1'), /^28: count must be/);
  t.match(signed('FEATURE .a acme 1 permanent 1'), /^9: bad feature name/);
  t.match(
    signed(`FEATURE ${'a'.repeat(65)} acme 1 permanent 1`),
    /^9: feature name longer than 64/,
  );
  t.equal(signed(`FEATURE ${'a'.repeat(64)} acme 1 permanent 1`), 'ok');
  t.match(
    signed('FEATURE a acme 1 permanent 1 extra'),
    /^30: unexpected "extra": options are KEY=VALUE/,
  );
  t.match(signed('FEATURE a acme 1 permanent 1 QUEUE=maybe'), /^30: QUEUE must be yes or no/);
  t.match(
    signed('FEATURE a acme 1 permanent 1 MAX_PER_USER=0'),
    /^30: MAX_PER_USER must be an integer from 1 to 65535/,
  );
  t.equal(signed('FEATURE a acme 1 permanent 1 MAX_PER_USER=65535'), 'ok');
  t.match(signed('FEATURE a acme 1 permanent 1 MAX_PER_USER=65536'), /^30: MAX_PER_USER must/);
  t.match(
    signed('FEATURE a acme 1 permanent 1 HEARTBEAT=86401'),
    /^30: HEARTBEAT must be an integer from 1 to 86400/,
  );
  t.match(signed('FEATURE a acme 1 permanent 1 QUEUE=yes QUEUE=no'), /^40: QUEUE given twice/);
  t.match(signed('FEATURE a acme 1 permanent 1 ISSUER=a"b"'), /^30: misplaced quote/);
  t.match(signed('FEATURE a acme 1 permanent 1 ISSUER=a"b'), /^38: unterminated quoted string/);
  t.match(
    signed(`FEATURE a acme 1 permanent 1 ISSUER="${'x'.repeat(201)}"`),
    /^30: ISSUER longer than 200/,
  );
  t.match(signed('FEATURE a acme 1 29-feb-2031 1'), /^18: bad expiry "29-feb-2031": no such date/);
  t.equal(signed('FEATURE a acme 1 29-feb-2032 1'), 'ok');
  t.match(signed('FEATURE a acme 1 2031-12-31 1'), /^18: bad expiry/);
  t.match(signed('FEATURE a acme 1 permanent'), /^27: missing count/);
  t.match(signed('FEATURE'), /^8: missing name vendor version expiry count/);
  t.match(signed('FEATURE a acme 1 QUEUE=yes'), /^18: missing expiry count/);
  t.match(signed(`FEATURE a acme ${'1.'.repeat(16)}1 permanent 1`), /^16: version longer than 32/);
  t.match(one('SERVER h ANY 70000'), /^14: port must be an integer from 1 to 65535/);
  t.match(one('SERVER h ANY 1 2'), /^16: unexpected "2"/);
  t.match(one('SERVER h'), /^9: missing hostid/);
  t.match(one('VENDOR'), /^7: missing vendor name/);
  t.match(one('VENDOR acme x'), /^13: unexpected "x": VENDOR options are KEY=VALUE/);
  t.same(parse('server h 0123abcd').servers, [
    { host: 'h', hostid: '0123abcd', port: 27400, line: 1 },
  ]);
  t.same(parse('VENDOR acme PORT=1 options="a b"').vendors, [
    { name: 'acme', options: { PORT: '1', OPTIONS: 'a b' }, line: 1 },
  ]);
  t.same(parse('\n\n   # c\n\t\n').problems, [], 'blank lines and comments');
  const cont = parse('FEATURE a acme \\\n\n1 permanent 1');
  t.same(
    cont.problems.map((p) => p.text),
    [
      'x.lic:1:15: missing version expiry count: expected FEATURE name vendor version expiry count [KEY=VALUE ...] SIGN=<hex>',
      'x.lic:3:1: unknown keyword "1": expected SERVER, VENDOR, FEATURE or INCREMENT',
    ],
    'a blank line ends a continued line',
  );
});

t.test('RESERVE: syntax, limits and columns', async (t) => {
  const one = (line: string) => {
    const p = parse(signLicense(line, acmeKey)).problems;
    return p.length ? `${p[0]!.column}: ${p[0]!.message}` : 'ok';
  };
  const base = 'FEATURE a acme 1 permanent 3 ';
  const good = parse(signLicense(`${base}RESERVE="USER:alice:2,host:ws9.lab:1"`, acmeKey));
  t.same(good.problems, []);
  t.same(good.features[0]!.reservations, [
    { type: 'user', name: 'alice', count: 2 },
    { type: 'host', name: 'ws9.lab', count: 1 },
  ]);
  t.match(
    good.features[0]!.canonical,
    / RESERVE=USER:alice:2,host:ws9.lab:1$/,
    'signed as written',
  );
  t.same(parse(signLicense(`${base.trim()}`, acmeKey)).features[0]!.reservations, [], 'none');
  t.equal(one(`${base}RESERVE=USER:a:3`), 'ok', 'the whole count may be reserved');
  t.equal(
    one(`${base}RESERVE=USER:a:2,HOST:b:2`),
    "30: RESERVE reserves 4 seats, more than the line's count of 3",
  );
  t.equal(one(`${base}RESERVE=GROUP:x:1`), '38: bad RESERVE kind "GROUP": expected USER or HOST');
  t.equal(
    one(`${base}RESERVE=USER:a:1,HOST:b:0`),
    '54: RESERVE seats must be an integer from 1 to 65535, not "0"',
  );
  t.match(one(`${base}RESERVE="USER:a:1,HOST:b:x"`), /^55: RESERVE seats must be/, 'quoted');
  t.match(
    one('FEATURE a acme 1 permanent 70000 RESERVE=USER:a:65536'),
    /^49: RESERVE seats must be an integer from 1 to 65535, not "65536"/,
  );
  t.equal(one('FEATURE a acme 1 permanent 70000 RESERVE=USER:a:65535'), 'ok');
  t.match(
    one(`${base}RESERVE=USER:a`),
    /^38: bad RESERVE entry "USER:a": expected USER:name:seats/,
  );
  t.match(one(`${base}RESERVE=USER:a:1:2`), /^38: bad RESERVE entry/);
  t.match(one(`${base}RESERVE=USER:a:1,`), /^47: bad RESERVE entry ""/, 'a trailing comma');
  t.match(one(`${base}RESERVE=USER::1`), /^43: bad RESERVE name "": 1 to 64 characters/);
  t.match(one(`${base}RESERVE=USER:${'n'.repeat(65)}:1`), /^43: bad RESERVE name/);
  t.equal(one(`${base}RESERVE=USER:${'n'.repeat(64)}:1`), 'ok');
  t.match(
    one(`${base}RESERVE="USER:a\\\\b:1"`),
    /^30: bad RESERVE name "a\\b"/,
    'escapes: the option',
  );
  t.equal(one(`${base}RESERVE=USER:a:1,user:a:1`), '47: RESERVE USER:a given twice');
  t.equal(one(`${base}RESERVE=USER:a:1,HOST:a:1`), 'ok', 'a user and a host may share a name');
  const many = (n: number) => Array.from({ length: n }, (_, i) => `USER:u${i}:1`).join(',');
  t.equal(one(`FEATURE a acme 1 permanent 20 RESERVE=${many(16)}`), 'ok');
  t.match(
    one(`FEATURE a acme 1 permanent 20 RESERVE=${many(17)}`),
    /: RESERVE has more than 16 entries/,
  );
  t.match(one(`${base}RESERVE=USER:a:1 RESERVE=USER:b:1`), /^47: RESERVE given twice/);
  // Part of the signed line: changing a reservation breaks the signature.
  const signed = signLicense(`${base}RESERVE=USER:alice:2`, acmeKey);
  const tampered = parse(signed.replace('USER:alice:2', 'USER:mallory:2'));
  t.match(tampered.problems[0]!.message, /signature does not verify/);
  t.same(tampered.features, []);
});

t.test('parseLicense never throws on arbitrary text', async (t) => {
  const token = fc.oneof(
    fc.constantFrom(
      'FEATURE',
      'INCREMENT',
      'SERVER',
      'VENDOR',
      'acme',
      '1.0',
      'permanent',
      '31-dec-2030',
      '2',
      'SIGN=',
      '"',
      '\\',
      '#',
      '=',
      ' ',
      '\t',
      '\n',
      '\r\n',
      'QUEUE=no',
      'X="a b"',
    ),
    fc.string({ maxLength: 8 }),
  );
  fc.assert(
    fc.property(fc.array(token, { maxLength: 40 }), (parts) => {
      const text = parts.join(' ');
      const r = parse(text);
      for (const p of r.problems) {
        if (!(p.line >= 1 && p.column >= 1 && p.text.startsWith(`x.lic:${p.line}:${p.column}: `)))
          return false;
      }
      const s = signLicenseDetailed(text, acmeKey);
      return typeof s.text === 'string' && parse(s.text).features.length >= 0;
    }),
    { numRuns: 300 },
  );
  t.pass('no throw');
});

t.test('signed lines of any valid shape parse back and verify', async (t) => {
  const name = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}$/);
  const version = fc
    .array(fc.integer({ min: 0, max: 999 }), { minLength: 1, maxLength: 4 })
    .map((a) => a.join('.'));
  const text = fc.string({ maxLength: 20 }).filter((s) => !/[\r\n]/.test(s));
  fc.assert(
    fc.property(
      name,
      version,
      fc.integer({ min: 1, max: 1e9 }),
      fc.option(text),
      fc.boolean(),
      (n, v, c, issuer, inc) => {
        const line = `${inc ? 'INCREMENT' : 'FEATURE'} ${n} acme ${v} permanent ${c}${issuer === null ? '' : ` ISSUER="${issuer.replace(/[\\"]/g, '\\$&')}"`}`;
        const r = parse(signLicense(line, acmeKey));
        return (
          r.problems.length === 0 &&
          r.features[0]!.name === n &&
          r.features[0]!.count === c &&
          (issuer === null || r.features[0]!.rawOptions.ISSUER === issuer)
        );
      },
    ),
    { numRuns: 200 },
  );
  t.pass('round trips');
});

t.test('demoLicense: the npm start license', async (t) => {
  const kp = generateVendorKeyPair();
  t.equal(kp.privateKey.length, 32);
  t.equal(kp.publicKey.length, 32);
  t.same(vendorPublicKey(kp.privateKey), kp.publicKey);
  const dir = mkdtempSync(join(tmpdir(), 'floatlm-license-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'demo.lic');
  writeFileSync(file, demoLicense(kp.privateKey, NOW));
  const r = parseLicense(readFileSync(file, 'utf8'), file, {
    vendorKeys: new Map([['demo', kp.publicKey]]),
    now: NOW,
  });
  t.same(r.problems, []);
  t.same(
    r.features.map((f) => [
      f.name,
      f.vendor,
      f.version,
      f.count,
      f.options.queue,
      f.options.maxPerUser,
    ]),
    [
      ['demo', 'demo', '1.0', 2, true, null],
      ['solver', 'demo', '2.5', 1, true, 1],
    ],
  );
  t.equal(r.features[0]!.expires, null);
  t.equal(r.features[1]!.expiry, formatExpiry(NOW + 365 * 86_400_000));
  t.equal(r.servers[0]!.port, 27400);
  t.same(
    verifyLicense(
      readFileSync(file, 'utf8'),
      file,
      new Map([['demo', generateVendorKeyPair().publicKey]]),
    ).length,
    2,
  );
});

t.test('API misuse throws TypeError naming the parameter', async (t) => {
  t.throws(() => parseLicense(1 as unknown as string, 'f', { vendorKeys: keys, now: 0 }), /text/);
  t.throws(
    () => parseLicense('', 1 as unknown as string, { vendorKeys: keys, now: 0 }),
    /fileName/,
  );
  t.throws(
    () => parseLicense('', 'f', { vendorKeys: {} as Map<string, Uint8Array>, now: 0 }),
    /options\.vendorKeys/,
  );
  t.throws(() => parseLicense('', 'f', { vendorKeys: keys, now: Number.NaN }), /options\.now/);
  t.throws(() => signLicense('', new Uint8Array(31)), { name: 'TypeError', message: /privateKey/ });
  t.throws(() => verifyLicense('', 'f', [] as unknown as Map<string, Uint8Array>), /publicKeys/);
  t.throws(() => demoLicense(acmeKey, Number.POSITIVE_INFINITY), /now/);
  t.equal(bytesToHex(vendorPublicKey(acmeKey)).length, 64);
});
