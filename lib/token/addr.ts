/**
 * IP addresses as tokens carry them: family 4 or 6 and the raw bytes. IPv4-mapped IPv6
 * addresses (what a dual-stack socket reports for an IPv4 peer) are treated as IPv4, so the
 * same client compares equal whichever socket it reached.
 */
import { isIP } from 'node:net';

export interface IpBytes {
  family: 4 | 6;
  bytes: Uint8Array;
}

function parse4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function parse6(s: string): Uint8Array | undefined {
  let tail: Uint8Array | undefined;
  let text = s;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    tail = parse4(text.slice(lastColon + 1));
    if (!tail) return undefined;
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string) => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...rest];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = all[i]!;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    const v = Number.parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  }
  if (tail) out.set(tail, 12);
  return out;
}

/**
 * Parses an IP address as node:dgram reports it (a zone suffix `%eth0` is ignored).
 * @throws {TypeError} when `addr` is not an IPv4 or IPv6 address
 */
export function parseIp(addr: string): IpBytes {
  if (typeof addr !== 'string') throw new TypeError('addr must be a string');
  const s = addr.replace(/%.*$/, '');
  const kind = isIP(s);
  if (kind === 4) {
    const b = parse4(s);
    if (b) return { family: 4, bytes: b };
  } else if (kind === 6) {
    const b = parse6(s);
    if (b) {
      const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
      return mapped ? { family: 4, bytes: b.slice(12) } : { family: 6, bytes: b };
    }
  }
  throw new TypeError(`addr must be an IPv4 or IPv6 address, got "${addr}"`);
}

/** Text of an address: dotted IPv4, or eight colon-separated hex groups for IPv6. */
export function formatIp(ip: IpBytes): string {
  if (ip.family === 4) return Array.from(ip.bytes).join('.');
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((ip.bytes[i]! << 8) | ip.bytes[i + 1]!).toString(16));
  return g.join(':');
}

/** True when two addresses name the same host (IPv4-mapped IPv6 equals IPv4). */
export function sameIp(a: IpBytes, b: IpBytes): boolean {
  if (a.family !== b.family || a.bytes.length !== b.bytes.length) return false;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return false;
  return true;
}
