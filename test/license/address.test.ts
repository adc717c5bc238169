/** lib/license/address.ts: canonical source addresses and INTERNET ranges. */
import t from 'tap';
import { canonicalAddr, parseAddrRange } from '../../lib/license/address.ts';

t.test('canonicalAddr: one text per address', async (t) => {
  t.equal(canonicalAddr(''), '', 'unknown stays unknown');
  t.equal(canonicalAddr('127.0.0.1'), '127.0.0.1');
  t.equal(canonicalAddr('::ffff:127.0.0.1'), '127.0.0.1', 'IPv4-mapped');
  t.equal(canonicalAddr('::FFFF:7f00:1'), '127.0.0.1', 'IPv4-mapped in hex');
  t.equal(canonicalAddr('2001:DB8:0:0::1'), '2001:db8::1');
  t.equal(canonicalAddr('fe80::1%eth0'), 'fe80::1', 'zone dropped');
  t.throws(() => canonicalAddr('host1'), RangeError);
  t.throws(() => canonicalAddr('1.2.3.256'), /not an IP address/);
  t.throws(() => canonicalAddr(1 as never), TypeError);
});

t.test('parseAddrRange: addresses and CIDR, each family on its own', async (t) => {
  const v4 = parseAddrRange('10.0.0.0/8');
  if (typeof v4 === 'string') throw new Error(v4);
  t.same([v4.family, v4.prefix, v4.text], [4, 8, '10.0.0.0/8']);
  t.ok(v4.has('10.255.0.1'));
  t.notOk(v4.has('11.0.0.0'));
  t.notOk(v4.has('::ffff:10.0.0.1'), 'ranges see canonical addresses only');
  t.notOk(v4.has(''), 'unknown matches nothing');
  const one = parseAddrRange('192.0.2.1');
  if (typeof one === 'string') throw new Error(one);
  t.same([one.prefix, one.has('192.0.2.1'), one.has('192.0.2.2')], [32, true, false]);
  const v6 = parseAddrRange('2001:db8::/32');
  if (typeof v6 === 'string') throw new Error(v6);
  t.ok(v6.has('2001:db8:ffff::1'));
  t.notOk(v6.has('2001:db9::1'));
  t.notOk(v6.has('10.0.0.1'));
  const all = parseAddrRange('0.0.0.0/0');
  t.ok(typeof all !== 'string' && all.has('203.0.113.9'));
  t.match(parseAddrRange('10.0.0.0/33'), /bad prefix "\/33"/);
  t.match(parseAddrRange('::/x'), /bad prefix/);
  t.match(parseAddrRange('example.com'), /bad address "example.com"/);
});
