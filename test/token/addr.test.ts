import t from 'tap';
import { formatIp, parseIp, sameIp } from '../../lib/token/addr.ts';

t.test('parseIp handles IPv4, IPv6 forms, mapped addresses and zones', async (t) => {
  t.same(parseIp('10.1.2.3'), { family: 4, bytes: new Uint8Array([10, 1, 2, 3]) });
  t.same(parseIp('::ffff:10.1.2.3'), { family: 4, bytes: new Uint8Array([10, 1, 2, 3]) });
  t.same(parseIp('::FFFF:a01:203'), { family: 4, bytes: new Uint8Array([10, 1, 2, 3]) });
  const lo = parseIp('::1');
  t.equal(lo.family, 6);
  t.equal(formatIp(lo), '0:0:0:0:0:0:0:1');
  t.equal(formatIp(parseIp('fe80::1%eth0')), 'fe80:0:0:0:0:0:0:1');
  t.equal(formatIp(parseIp('2001:db8:1:2:3:4:5:6')), '2001:db8:1:2:3:4:5:6');
  t.equal(formatIp(parseIp('64:ff9b::192.0.2.1')), '64:ff9b:0:0:0:0:c000:201');
  t.ok(sameIp(parseIp('::ffff:10.1.2.3'), parseIp('10.1.2.3')));
  t.notOk(sameIp(parseIp('10.1.2.3'), parseIp('10.1.2.4')));
  t.notOk(sameIp(parseIp('::a01:203'), parseIp('10.1.2.3')), 'IPv4-compatible is not mapped');
  for (const bad of ['', 'host', '1.2.3', '1.2.3.256', '1::2::3', '12345::', 'localhost']) {
    t.throws(() => parseIp(bad), TypeError, bad);
  }
});
