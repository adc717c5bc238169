/**
 * The optional native addon (native/*.c, built by `npm install` into
 * build/Release/floatlm_native.node): the batched UDP socket and the keyed HMAC of a
 * datagram's tag. Loaded once, on first use; everything it offers has a JavaScript
 * counterpart giving the same results, so a machine without a compiler runs floatlm slower,
 * not differently.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What native/addon.c exports. */
export interface Addon {
  /** Datagrams a receive or send batch holds, and bytes a datagram's slot holds. */
  readonly BATCH: number;
  readonly SLOT: number;
  open(
    host: string,
    port: number,
    rcvbuf: number,
    recv: ArrayBuffer,
    recvMeta: ArrayBuffer,
    send: ArrayBuffer,
    sendMeta: ArrayBuffer,
    /** Answers how many of the batch's n datagrams failed authentication. */
    onBatch: (n: number) => number,
    onWritable: () => void,
    self: object,
    /**
     * After a read that emptied the socket and of which more than half failed
     * authentication, reading rests this long (0: never).
     */
    pauseMs: number,
  ): unknown;
  port(handle: unknown): number;
  /** The receive buffer the kernel gave, as SO_RCVBUF reads it (Linux: twice the size set). */
  rcvbuf(handle: unknown): number;
  /** How many times reading rested after a read mostly of datagrams failing authentication. */
  pauses(handle: unknown): number;
  send(handle: unknown, n: number): number;
  /** Tests: the next k datagrams go, then one send reports EAGAIN (a full send buffer). */
  fullAfter(handle: unknown, k: number): void;
  close(handle: unknown): void;
  /** Whether the last 32 bytes of `bytes` are the HMAC, keyed by state[at..at+16), of the rest. */
  hmacVerify(state: Int32Array, at: number, bytes: Uint8Array): boolean;
  /** Writes that HMAC into the last 32 bytes of `bytes`. */
  hmacSign(state: Int32Array, at: number, bytes: Uint8Array): void;
  /** Keys the 32 words at `at` of `state` as KeyedHmac lays them out. */
  hmacKey(state: Int32Array, at: number, key: Uint8Array): void;
  /** HKDF-SHA256 filling `out`; false (nothing written) when `info` is over 512 bytes. */
  hkdf(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, out: Uint8Array): boolean;
  /** Selects the SHA-256 compression ('portable', or the fastest); returns the one in use. */
  sha256Impl(name?: string): string;
}

const FILE = 'floatlm_native.node';
/** Every function of Addon: a build missing one is not used. @internal */
export const ADDON_FUNCTIONS = [
  'open',
  'port',
  'rcvbuf',
  'pauses',
  'send',
  'fullAfter',
  'close',
  'hmacVerify',
  'hmacSign',
  'hmacKey',
  'hkdf',
  'sha256Impl',
] as const satisfies readonly (keyof Addon)[];
let addon: Addon | undefined;
let why: string | undefined;

/**
 * The addon, from build/Release at the package root (this file is in lib/ or dist/lib/);
 * undefined when it is not built, does not load, or FLOATLM_NATIVE=0 is set (then
 * `addonUnavailable()` says why).
 */
export function loadAddon(): Addon | undefined {
  if (addon || why) return addon;
  if (process.env.FLOATLM_NATIVE === '0') {
    why = 'the addon is disabled (FLOATLM_NATIVE=0)';
    return undefined;
  }
  const here = dirname(fileURLToPath(import.meta.url));
  const require = createRequire(import.meta.url);
  for (const up of ['..', '../..']) {
    const file = join(here, up, 'build', 'Release', FILE);
    if (!existsSync(file)) continue;
    try {
      const a = require(file) as Partial<Addon>;
      // A build left from an older floatlm loads but lacks what this one calls.
      const lacking = ADDON_FUNCTIONS.filter((f) => typeof a[f] !== 'function');
      if (lacking.length > 0) {
        why = `${file} is an older build (no ${lacking.join(', ')}): npm rebuild floatlm`;
        return undefined;
      }
      addon = a as Addon;
      return addon;
    } catch (e) {
      why = `${file}: ${(e as Error).message.split('\n')[0]}`;
      return undefined;
    }
  }
  why = `build/Release/${FILE} not built (npm rebuild builds it; needs gcc)`;
  return undefined;
}

/** Why the addon cannot be used here, or undefined when it can. */
export function addonUnavailable(): string | undefined {
  return loadAddon() ? undefined : why;
}
