/**
 * Source addresses as the pool sees them: one canonical text per address (so "::ffff:10.0.0.1"
 * and "10.0.0.1" are one host, and IPv6 spellings agree), and IP/CIDR ranges for the options
 * file's INTERNET rules. Pure: node:net is used only for its address parsing.
 */
import { BlockList, isIP, SocketAddress } from 'node:net';

const MAPPED_V4 = /^::ffff:([0-9]{1,3}(?:\.[0-9]{1,3}){3})$/i;

/**
 * The canonical form of an IP address ('' stays '': unknown). IPv4-mapped IPv6 becomes
 * IPv4, a zone id is dropped, IPv6 is lowercased and compressed.
 * @throws {TypeError} when addr is not a string
 * @throws {RangeError} when addr is neither '' nor an IP address
 */
export function canonicalAddr(addr: string): string {
  if (typeof addr !== 'string') throw new TypeError('addr must be a string');
  if (addr === '') return '';
  const bare = addr.replace(/%.*$/, '');
  const mapped = MAPPED_V4.exec(bare);
  if (mapped && isIP(mapped[1]!) === 4) return mapped[1]!;
  const family = isIP(bare);
  if (family === 4) return bare;
  if (family === 6) {
    const text = new SocketAddress({ address: bare, family: 'ipv6' }).address;
    const m = MAPPED_V4.exec(text);
    return m ? m[1]! : text;
  }
  throw new RangeError(`addr: not an IP address: ${JSON.stringify(addr)}`);
}

/** An IP address or CIDR range, as written in an INTERNET rule. */
export interface AddrRange {
  /** As written. */
  text: string;
  family: 4 | 6;
  prefix: number;
  /** True when the address matches the range. */
  has(addr: string): boolean;
}

/**
 * Parses "10.1.2.3", "10.0.0.0/8", "2001:db8::/32" or "::1"; a string explaining the
 * problem when it is none of those.
 */
export function parseAddrRange(text: string): AddrRange | string {
  const slash = text.indexOf('/');
  const base = slash < 0 ? text : text.slice(0, slash);
  const ip = isIP(base);
  if (ip !== 4 && ip !== 6) {
    return `bad address "${base}": expected an IPv4 or IPv6 address, optionally /prefix`;
  }
  const family: 4 | 6 = ip;
  const bits = family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > bits) {
      return `bad prefix "/${p}": expected /0 to /${bits} for an IPv${family} address`;
    }
    prefix = Number(p);
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const list = new BlockList();
  list.addSubnet(base, prefix, type);
  return {
    text,
    family,
    prefix,
    has(addr: string): boolean {
      if (addr === '') return false;
      const f = isIP(addr);
      return f === family && list.check(addr, type);
    },
  };
}
