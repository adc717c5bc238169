/**
 * `floatlm decode`: dissects one datagram field by field, with the names protocol.md uses,
 * and checks its tag when given the key.
 */
import { readFileSync } from 'node:fs';
import { equalBytes, hmacSha256 } from '../crypto/hmac.ts';
import {
  type AnyDatagram,
  AuthMode,
  DecodeError,
  decodeDatagram,
  errorName,
  Flags,
  fromHex,
  MsgType,
  TAG_LENGTH,
  TYPE_NAMES,
  toHex,
} from '../wire/index.ts';
import { CliError, ExitCode } from './io.ts';

const AUTH_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(AuthMode).map(([k, v]) => [v, k]),
);

function show(v: unknown): string {
  if (typeof v === 'bigint') return `${v} (0x${v.toString(16).padStart(16, '0')})`;
  if (v instanceof Uint8Array)
    return v.length === 0 ? '(empty)' : `${toHex(v)} (${v.length} bytes)`;
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

function fields(obj: object, indent: string): string[] {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (Array.isArray(v)) {
      lines.push(`${indent}${k}: ${v.length} item(s)`);
      v.forEach((item, i) => {
        lines.push(`${indent}  [${i}]`);
        lines.push(...fields(item as object, `${indent}    `));
      });
    } else {
      lines.push(`${indent}${k.padEnd(13)} ${show(v)}${annotate(k, v)}`);
    }
  }
  return lines;
}

function annotate(name: string, v: unknown): string {
  if ((name === 'reason' || name === 'code') && typeof v === 'number' && v !== 0) {
    return ` ${errorName(v)}`;
  }
  if (
    (name === 'since' || name === 'tokenExpires' || name === 'expires') &&
    typeof v === 'number' &&
    v > 0
  ) {
    return ` (${new Date(v).toISOString()})`;
  }
  return '';
}

/**
 * The field-by-field description of a datagram, and whether its tag verified under `key`
 * (undefined when no key was given).
 * @throws {DecodeError} when the bytes are not a datagram
 */
export function describeDatagram(
  bytes: Uint8Array,
  key?: Uint8Array,
): { text: string; tagOk: boolean | undefined } {
  const d: AnyDatagram = decodeDatagram(bytes);
  const flagNames = [
    d.flags & Flags.REPLY ? 'REPLY' : '',
    d.flags & Flags.FROM_SERVER ? 'FROM_SERVER' : '',
  ].filter(Boolean);
  const lines = [
    `datagram: ${bytes.length} bytes`,
    'header',
    `  magic         464c ("FL")`,
    `  version       1`,
    `  type          0x${d.type.toString(16).padStart(2, '0')} ${TYPE_NAMES[d.type]}`,
    `  flags         0x${d.flags.toString(16).padStart(2, '0')} ${flagNames.join('|') || '(client request)'}`,
    `  auth          ${d.auth.mode} ${AUTH_NAMES[d.auth.mode]}`,
    `  length        ${bytes.length}`,
    `  requestId     ${d.requestId}`,
    `  sessionId     ${show(d.sessionId)}`,
    `  seq           ${d.seq}`,
    `  timestamp     ${d.timestamp} (${new Date(d.timestamp).toISOString()})`,
  ];
  if (d.flags === 0) {
    const { mode: _mode, ...rest } = d.auth;
    lines.push(`auth block (${AUTH_NAMES[d.auth.mode]})`);
    if (Object.keys(rest).length === 0) lines.push('  (none)');
    else lines.push(...fields(rest, '  '));
  }
  lines.push(`body (${TYPE_NAMES[d.type]})`);
  if (d.type === MsgType.HEARTBEAT) lines.push('  (empty)');
  else lines.push(...fields(d.body, '  '));
  let tagOk: boolean | undefined;
  if (key) {
    const expect = hmacSha256(key, bytes.subarray(0, bytes.length - TAG_LENGTH));
    tagOk = equalBytes(expect, d.tag);
    lines.push(
      `tag           ${toHex(d.tag)} ${tagOk ? 'OK' : `MISMATCH (expected ${toHex(expect)})`}`,
    );
  } else {
    lines.push(`tag           ${toHex(d.tag)} (not checked: give --key)`);
  }
  return { text: `${lines.join('\n')}\n`, tagOk };
}

/**
 * Reads the datagram named by a CLI argument: hex on the command line, a file holding hex
 * or raw bytes, or `-` for standard input.
 * @throws {CliError} when the input cannot be read or is not hex/bytes
 */
export function readDatagramArg(arg: string, readStdin: () => Buffer): Uint8Array {
  let raw: Buffer;
  // Hex as people paste it: spaces, colons (Wireshark's "copy as hex"), a 0x prefix.
  const hex = arg.replace(/^0x/i, '').replace(/[\s:]+/g, '');
  if (arg === '-') raw = readStdin();
  else if (/^[0-9a-fA-F]{2,}$/.test(hex)) return hexArg(hex);
  else if (/^[0-9a-fA-F]{2,}(…|\.{3})$/.test(hex)) {
    throw new CliError(
      `floatlm: decode: "${arg}" is cut short: give every hex digit of the datagram (or a file holding them, or - for stdin)`,
      ExitCode.BAD_FILE,
    );
  } else {
    try {
      raw = readFileSync(arg);
    } catch (e) {
      throw new CliError(
        `floatlm: decode: "${arg}" is neither hex digits nor a readable file (${(e as NodeJS.ErrnoException).code ?? e})`,
        ExitCode.BAD_FILE,
      );
    }
  }
  const text = raw
    .toString('latin1')
    .replace(/^0x/i, '')
    .replace(/[\s:]+/g, '');
  if (/^[0-9a-fA-F]+$/.test(text)) return hexArg(text);
  return new Uint8Array(raw);
}

function hexArg(s: string): Uint8Array {
  try {
    return fromHex(s);
  } catch {
    throw new CliError(
      'floatlm: decode: input is not an even number of hex digits',
      ExitCode.BAD_FILE,
    );
  }
}

/**
 * The decode action: prints the description; exit code 6 for undecodable input, 5 when a
 * key was given and the tag does not verify.
 */
export function decodeAction(
  bytes: Uint8Array,
  keyHex: string | undefined,
  out: (t: string) => void,
): number {
  let key: Uint8Array | undefined;
  if (keyHex !== undefined) {
    try {
      key = fromHex(keyHex);
    } catch {
      throw new CliError('floatlm: decode: --key must be hex', ExitCode.USAGE);
    }
  }
  try {
    const { text, tagOk } = describeDatagram(bytes, key);
    out(text);
    return tagOk === false ? ExitCode.AUTH : ExitCode.OK;
  } catch (e) {
    if (e instanceof DecodeError) {
      throw new CliError(`floatlm: decode: ${e.message}`, ExitCode.BAD_FILE);
    }
    throw e;
  }
}
