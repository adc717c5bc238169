/**
 * A small field-list schema from which each message body gets its encode, decode and
 * encodingLength. Every field kind reads through the checked cursor, so a body codec
 * cannot read past its datagram or allocate more than its declared cap.
 */
import {
  type Cursor,
  checkString,
  readBytes,
  readString,
  readU8,
  readU16,
  readU32,
  readU53,
  readU64,
  readVarBytes,
  writeBytes,
  writeString,
  writeU8,
  writeU16,
  writeU32,
  writeU53,
  writeU64,
  writeVarBytes,
} from './cursor.ts';
import { DecodeError, DecodeErrorCode } from './errors.ts';

export type Field =
  | { name: string; kind: 'u8' | 'u16' | 'u32' | 'u53' | 'u64'; min?: number; max?: number }
  | { name: string; kind: 'str'; max: number }
  | { name: string; kind: 'bytes'; prefix: 1 | 2; max: number }
  | { name: string; kind: 'fixed'; length: number }
  | { name: string; kind: 'list'; max: number; item: Schema }
  | { name: string; kind: 'union'; max: number; tag: string; variants: Record<number, Schema> };

export type Schema = readonly Field[];

/** An encoder/decoder triple for one body shape. */
export interface Codec<T> {
  encodingLength(value: T): number;
  /** Writes `value` at the cursor and advances it. @throws {RangeError} on a bad value */
  encode(value: T, c: Cursor): void;
  /** Reads a value at the cursor and advances it. @throws {DecodeError} */
  decode(c: Cursor): T;
}

const INT_MAX = { u8: 0xff, u16: 0xffff, u32: 0xffffffff, u53: Number.MAX_SAFE_INTEGER } as const;

type Rec = Record<string, unknown>;

/**
 * Wire length of one field. It validates the value too, so that `encodingLength` (called
 * before anything is written) rejects a bad value with an error naming the field.
 */
function fieldLength(f: Field, v: unknown): number {
  switch (f.kind) {
    case 'u8':
      checkInt(f, v);
      return 1;
    case 'u16':
      checkInt(f, v);
      return 2;
    case 'u32':
      checkInt(f, v);
      return 4;
    case 'u53':
      checkInt(f, v);
      return 8;
    case 'u64':
      checkU64(f, v);
      return 8;
    case 'str':
      return 1 + Buffer.byteLength(checkString(v, f.max, f.name), 'utf8');
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw new TypeError(`${f.name} must be a Uint8Array`);
      if (v.length > f.max)
        throw new RangeError(`${f.name} is ${v.length} bytes, at most ${f.max}`);
      return f.prefix + v.length;
    case 'fixed':
      if (!(v instanceof Uint8Array) || v.length !== f.length) {
        throw new TypeError(`${f.name} must be a Uint8Array of ${f.length} bytes`);
      }
      return f.length;
    case 'list':
    case 'union': {
      if (!Array.isArray(v)) throw new TypeError(`${f.name} must be an array`);
      if (v.length > f.max)
        throw new RangeError(`${f.name} has ${v.length} items, at most ${f.max}`);
      let n = 1;
      for (const item of v as unknown[]) {
        if (typeof item !== 'object' || item === null) {
          throw new TypeError(`${f.name} items must be objects`);
        }
        n += f.kind === 'list' ? 0 : 1;
        n += schemaLength(f.kind === 'list' ? f.item : variantOf(f, item as Rec), item as Rec);
      }
      return n;
    }
  }
}

function checkU64(f: Field, v: unknown): bigint {
  if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) {
    throw new RangeError(`${f.name} must be a bigint in [0, 2^64-1], got ${String(v)}`);
  }
  return v;
}

function variantOf(f: Extract<Field, { kind: 'union' }>, item: Rec): Schema {
  const tag = item[f.tag];
  const s = typeof tag === 'number' ? f.variants[tag] : undefined;
  if (!s) throw new RangeError(`${f.name}: unknown ${f.tag} ${String(tag)}`);
  return s;
}

function checkInt(f: Field & { min?: number; max?: number }, v: unknown): number {
  const hi = f.kind === 'u64' ? Number.MAX_SAFE_INTEGER : INT_MAX[f.kind as keyof typeof INT_MAX];
  const lo = f.min ?? 0;
  const top = Math.min(f.max ?? hi, hi);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > top) {
    throw new RangeError(`${f.name} must be an integer in [${lo}, ${top}], got ${String(v)}`);
  }
  return v;
}

function encodeField(f: Field, v: unknown, c: Cursor): void {
  switch (f.kind) {
    case 'u8':
      writeU8(c, checkInt(f, v), f.name);
      return;
    case 'u16':
      writeU16(c, checkInt(f, v), f.name);
      return;
    case 'u32':
      writeU32(c, checkInt(f, v), f.name);
      return;
    case 'u53':
      writeU53(c, checkInt(f, v), f.name);
      return;
    case 'u64':
      writeU64(c, checkU64(f, v), f.name);
      return;
    case 'str':
      writeString(c, checkString(v, f.max, f.name), f.name);
      return;
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw new TypeError(`${f.name} must be a Uint8Array`);
      if (v.length > f.max)
        throw new RangeError(`${f.name} is ${v.length} bytes, at most ${f.max}`);
      writeVarBytes(c, f.prefix, v, f.name);
      return;
    case 'fixed':
      if (!(v instanceof Uint8Array) || v.length !== f.length) {
        throw new TypeError(`${f.name} must be a Uint8Array of ${f.length} bytes`);
      }
      writeBytes(c, v, f.name);
      return;
    case 'list':
    case 'union': {
      if (!Array.isArray(v)) throw new TypeError(`${f.name} must be an array`);
      if (v.length > f.max)
        throw new RangeError(`${f.name} has ${v.length} items, at most ${f.max}`);
      writeU8(c, v.length, f.name);
      for (const item of v as Rec[]) {
        if (typeof item !== 'object' || item === null) {
          throw new TypeError(`${f.name} items must be objects`);
        }
        if (f.kind === 'list') {
          encodeSchema(f.item, item, c);
        } else {
          const variant = variantOf(f, item);
          writeU8(c, item[f.tag] as number, f.tag);
          encodeSchema(variant, item, c);
        }
      }
      return;
    }
  }
}

function decodeInt(f: Field & { min?: number; max?: number }, v: number, at: number): number {
  if ((f.min !== undefined && v < f.min) || (f.max !== undefined && v > f.max)) {
    throw new DecodeError(
      DecodeErrorCode.OUT_OF_RANGE,
      `${f.name} ${v} not in [${f.min ?? 0}, ${f.max ?? '∞'}]`,
      at,
    );
  }
  return v;
}

function decodeField(f: Field, c: Cursor): unknown {
  const at = c.start;
  switch (f.kind) {
    case 'u8':
      return decodeInt(f, readU8(c, f.name), at);
    case 'u16':
      return decodeInt(f, readU16(c, f.name), at);
    case 'u32':
      return decodeInt(f, readU32(c, f.name), at);
    case 'u53':
      return decodeInt(f, readU53(c, f.name), at);
    case 'u64':
      return readU64(c, f.name);
    case 'str':
      return readString(c, f.max, f.name);
    case 'bytes':
      return readVarBytes(c, f.prefix, f.max, f.name);
    case 'fixed':
      return readBytes(c, f.length, f.name);
    case 'list':
    case 'union': {
      const n = readU8(c, `${f.name} count`);
      if (n > f.max) {
        throw new DecodeError(
          DecodeErrorCode.BAD_LENGTH,
          `${f.name} count ${n} exceeds ${f.max}`,
          at,
        );
      }
      const out: Rec[] = [];
      for (let i = 0; i < n; i++) {
        if (f.kind === 'list') {
          out.push(decodeSchema(f.item, c));
        } else {
          const tagAt = c.start;
          const tag = readU8(c, f.tag);
          const s = f.variants[tag];
          if (!s) {
            throw new DecodeError(DecodeErrorCode.OUT_OF_RANGE, `unknown ${f.tag} ${tag}`, tagAt);
          }
          const rec = decodeSchema(s, c);
          out.push({ [f.tag]: tag, ...rec });
        }
      }
      return out;
    }
  }
}

function schemaLength(s: Schema, v: Rec): number {
  let n = 0;
  for (const f of s) n += fieldLength(f, v[f.name]);
  return n;
}

function encodeSchema(s: Schema, v: Rec, c: Cursor): void {
  for (const f of s) encodeField(f, v[f.name], c);
}

function decodeSchema(s: Schema, c: Cursor): Rec {
  const out: Rec = {};
  for (const f of s) out[f.name] = decodeField(f, c);
  return out;
}

function checkBody(v: unknown): Rec {
  if (typeof v !== 'object' || v === null) throw new TypeError('body must be an object');
  return v as Rec;
}

/** Builds the codec of a body from its field list. */
export function codecOf<T extends object>(schema: Schema): Codec<T> {
  return {
    encodingLength: (v) => schemaLength(schema, checkBody(v)),
    encode: (v, c) => encodeSchema(schema, checkBody(v), c),
    decode: (c) => decodeSchema(schema, c) as T,
  };
}
