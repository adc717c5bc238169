/**
 * The daemon's UDP socket, one interface over two implementations: `batch`, the native
 * addon (native/udp.c: recvmmsg/sendmmsg, one call into JavaScript per batch of up to 64
 * datagrams, IPv4 only), and `dgram`, node:dgram (one call, one Buffer and one address
 * object per datagram). `auto` takes `batch` where the addon loaded and the host is IPv4.
 * Datagrams are handed over as bytes the receiver owns (copied out of the shared receive
 * area) with the sender's address and port; replies queue in a shared send area that goes
 * to the kernel once per batch, or at the end of the current job when sent from elsewhere.
 * Under a flood of forged datagrams the batched socket reads less often (`floodPauseMs`), so
 * that they are taken a batch a system call and a wake-up rather than one each.
 */
import dgram from 'node:dgram';
import { isIPv4 } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { type Addon, addonUnavailable, loadAddon } from '../native.ts';

/**
 * Called for every datagram received: its bytes (the receiver's to keep) and sender. Answers
 * true when the datagram failed authentication (or was thrown away before it could verify):
 * the batched socket rests after a read that emptied it and was mostly such datagrams.
 */
export type OnDatagram = (bytes: Uint8Array, address: string, port: number) => boolean;

export type UdpKind = 'batch' | 'dgram';

/** What the daemon needs of a socket, whichever implementation is under it. */
export interface UdpSocket {
  readonly kind: UdpKind;
  /** The bound port. */
  port(): number;
  /** Queues one datagram; `sent` runs once the kernel has it (or it was dropped). */
  send(bytes: Uint8Array, port: number, address: string, sent?: () => void): void;
  /** How many times reading rested after a read mostly of datagrams failing authentication. */
  readPauses(): number;
  /**
   * The receive buffer the kernel gave, in bytes as SO_RCVBUF reads it (Linux: twice the
   * size asked, capped at twice net.core.rmem_max).
   */
  readonly recvBuffer: number;
  /** Stops receiving and releases the socket; idempotent. */
  close(): void;
}

const META = 3;
/** Bytes of a block received datagrams are copied into (a new one when it is full). */
const KEPT_BLOCK = 64 * 1024;

/**
 * What to tell the operator when the kernel gave a smaller receive buffer than `asked`;
 * undefined when it gave all of it. `got` is as SO_RCVBUF reads it: on Linux (`doubled`)
 * twice the size granted, which is the size asked capped at net.core.rmem_max.
 */
export function recvBufferShort(
  asked: number,
  got: number,
  doubled = process.platform === 'linux',
): string | undefined {
  const granted = doubled ? got / 2 : got;
  if (granted >= asked) return undefined;
  const kib = (n: number) => `${Math.round(n / 1024)} KiB`;
  return `the kernel capped the UDP receive buffer at ${kib(granted)} (asked ${kib(asked)}; net.core.rmem_max): bursts, and what queues behind a flood, are dropped sooner; sysctl -w net.core.rmem_max=${asked} gives it all`;
}

/** Why the batched socket cannot be used here, or undefined when it can. */
export function batchUnavailable(host: string): string | undefined {
  if (!isIPv4(host)) return `the batched socket takes an IPv4 address, not ${host}`;
  return addonUnavailable();
}

/**
 * Binds a socket of `kind` on host:port and starts handing its datagrams to `onDatagram`.
 * On the batched socket, a read that emptied the socket and of which more than half failed
 * authentication (by onDatagram's answers) rests reading for `floodPauseMs` (0: never);
 * node:dgram reads on.
 * @throws {Error} with the system's code (EADDRINUSE, …) when the address cannot be bound;
 *   {Error} when `kind` is 'batch' and the addon cannot be used here
 */
export async function bindUdp(
  kind: UdpKind | 'auto',
  host: string,
  port: number,
  rcvbuf: number,
  onDatagram: OnDatagram,
  onError: (e: Error) => void,
  floodPauseMs = 0,
): Promise<UdpSocket> {
  if (!Number.isInteger(floodPauseMs) || floodPauseMs < 0 || floodPauseMs > 10_000) {
    throw new RangeError(`floodPauseMs must be an integer 0..10000, got ${floodPauseMs}`);
  }
  const why = batchUnavailable(host);
  if (kind === 'batch' && why) throw new Error(`--udp batch: ${why}`);
  if (kind === 'dgram' || why) return bindDgram(host, port, rcvbuf, onDatagram, onError);
  return new BatchSocket(loadAddon() as Addon, host, port, rcvbuf, onDatagram, floodPauseMs);
}

async function bindDgram(
  host: string,
  port: number,
  rcvbuf: number,
  onDatagram: OnDatagram,
  onError: (e: Error) => void,
): Promise<UdpSocket> {
  const s = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(port, host, () => {
        s.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    s.close();
    throw e;
  }
  try {
    s.setRecvBufferSize(rcvbuf);
  } catch {
    // Some systems cap the size (net.core.rmem_max); the default still works.
  }
  s.on('message', (msg, rinfo) =>
    onDatagram(
      new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength),
      rinfo.address,
      rinfo.port,
    ),
  );
  s.on('error', onError);
  let closed = false;
  // Read once: node:dgram's address() throws once the socket is closed.
  const bound = s.address().port;
  return {
    kind: 'dgram',
    recvBuffer: s.getRecvBufferSize(),
    port: () => bound,
    readPauses: () => 0,
    send: (bytes, p, address, sent) => {
      if (closed) {
        sent?.(); // as the batched socket: dropped, where node:dgram would throw
        return;
      }
      // No completion callback unless asked: it costs a JS call per datagram.
      if (sent) s.send(bytes, p, address, sent);
      else s.send(bytes, p, address);
    },
    close: () => {
      if (closed) return;
      closed = true;
      s.close();
    },
  };
}

interface Pending {
  bytes: Uint8Array;
  port: number;
  ip: number;
  sent: (() => void) | undefined;
}

/** The addon's failure as node:dgram reports it: `bind EADDRINUSE 127.0.0.1:27400`. */
function systemError(e: unknown, host: string, port: number): Error {
  const { syscall, errno } = e as { syscall?: string; errno?: number };
  if (typeof syscall !== 'string' || typeof errno !== 'number') return e as Error;
  const code = getSystemErrorName(errno);
  const where = syscall === 'bind' ? ` ${host}:${port}` : '';
  return Object.assign(new Error(`${syscall} ${code}${where}`), {
    code,
    errno,
    syscall,
    address: host,
    port,
  });
}

/** Addresses seen most recently, both ways (bounded: cleared when full). */
const ADDRESS_CACHE = 4096;

class BatchSocket implements UdpSocket {
  readonly kind = 'batch';
  readonly #n: Addon;
  readonly #handle: unknown;
  readonly #recv: Uint8Array;
  readonly #rmeta: Int32Array;
  readonly #send: Uint8Array;
  readonly #smeta: Int32Array;
  readonly #onDatagram: OnDatagram;
  /** Datagrams in the send area, and by slot the callbacks of those that asked for one. */
  #queued = 0;
  readonly #sent: ((() => void) | undefined)[] = [];
  #waiting = 0;
  /** Datagrams waiting for room in the send area (the kernel's buffer was full). */
  readonly #overflow: Pending[] = [];
  #blocked = false;
  #inBatch = false;
  #flushQueued = false;
  #closed = false;
  #pausesAtClose = 0;
  readonly #port: number;
  readonly recvBuffer: number;
  readonly #names = new Map<number, string>();
  /** Where received datagrams are copied to: the current block and its first free byte. */
  #kept = new Uint8Array(KEPT_BLOCK);
  #keptAt = 0;
  readonly #ips = new Map<string, number>();

  constructor(
    n: Addon,
    host: string,
    port: number,
    rcvbuf: number,
    onDatagram: OnDatagram,
    pauseMs: number,
  ) {
    this.#n = n;
    this.#onDatagram = onDatagram;
    const recv = new ArrayBuffer(n.BATCH * n.SLOT);
    const rmeta = new ArrayBuffer(n.BATCH * META * 4);
    const send = new ArrayBuffer(n.BATCH * n.SLOT);
    const smeta = new ArrayBuffer(n.BATCH * META * 4);
    this.#recv = new Uint8Array(recv);
    this.#rmeta = new Int32Array(rmeta);
    this.#send = new Uint8Array(send);
    this.#smeta = new Int32Array(smeta);
    try {
      this.#handle = n.open(
        host,
        port,
        rcvbuf,
        recv,
        rmeta,
        send,
        smeta,
        (count) => this.#onBatch(count),
        () => this.#onWritable(),
        this,
        pauseMs,
      );
    } catch (e) {
      throw systemError(e, host, port);
    }
    // Read once: after close the handle's memory is freed, and port() is still asked then
    // (Daemon.address() of a closed daemon).
    this.#port = n.port(this.#handle);
    this.recvBuffer = n.rcvbuf(this.#handle);
  }

  port(): number {
    return this.#port;
  }

  readPauses(): number {
    return this.#closed ? this.#pausesAtClose : this.#n.pauses(this.#handle);
  }

  /** Hands the batch's datagrams over; answers how many failed authentication. */
  #onBatch(count: number): number {
    const slot = this.#n.SLOT;
    const m = this.#rmeta;
    let bad = 0;
    this.#inBatch = true;
    try {
      for (let i = 0; i < count && !this.#closed; i++) {
        const len = m[i * META] as number;
        const off = i * slot;
        // The receiver may keep what it is given; the area is reused by the next batch. Out
        // of a block of this socket's own (cheaper than an ArrayBuffer, or a Buffer from
        // Node's pool, each), as a plain Uint8Array: its slice() copies, so a decoder's copy
        // does not hold the block (Buffer's slice is a view: it would).
        let at = this.#keptAt;
        if (at + len > this.#kept.length) {
          this.#kept = new Uint8Array(KEPT_BLOCK);
          at = 0;
        }
        const bytes = this.#kept.subarray(at, at + len);
        this.#keptAt = (at + len + 7) & ~7;
        if (len <= slot) bytes.set(this.#recv.subarray(off, off + len));
        else bytes.fill(0); // cut short by the slot: longer than any datagram, refused as such
        const ip = m[i * META + 1] as number;
        if (this.#onDatagram(bytes, this.#name(ip), m[i * META + 2] as number) === true) bad++;
      }
    } finally {
      this.#inBatch = false;
      this.#flush();
    }
    return bad;
  }

  #name(ip: number): string {
    let s = this.#names.get(ip);
    if (s === undefined) {
      s = `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
      if (this.#names.size >= ADDRESS_CACHE) this.#names.clear();
      this.#names.set(ip, s);
    }
    return s;
  }

  #ip(address: string): number {
    let ip = this.#ips.get(address);
    if (ip === undefined) {
      if (!isIPv4(address)) throw new TypeError(`address must be an IPv4 address, got ${address}`);
      ip = 0;
      for (const part of address.split('.')) ip = ip * 256 + Number(part);
      ip |= 0;
      if (this.#ips.size >= ADDRESS_CACHE) this.#ips.clear();
      this.#ips.set(address, ip);
    }
    return ip;
  }

  send(bytes: Uint8Array, port: number, address: string, sent?: () => void): void {
    if (this.#closed) {
      sent?.();
      return;
    }
    if (bytes.length > this.#n.SLOT) {
      throw new RangeError(`bytes must be at most ${this.#n.SLOT} long, got ${bytes.length}`);
    }
    const ip = this.#ip(address);
    if (this.#blocked || this.#queued === this.#n.BATCH) {
      if (this.#queued === this.#n.BATCH && !this.#blocked) this.#flush();
      if (this.#blocked || this.#queued === this.#n.BATCH) {
        this.#overflow.push({ bytes, port, ip, sent });
        return;
      }
    }
    this.#put(bytes, port, ip, sent);
    if (!this.#inBatch && !this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => {
        this.#flushQueued = false;
        this.#flush();
      });
    }
  }

  #put(bytes: Uint8Array, port: number, ip: number, sent: (() => void) | undefined): void {
    const i = this.#queued++;
    this.#send.set(bytes, i * this.#n.SLOT);
    const m = this.#smeta;
    m[i * META] = bytes.length;
    m[i * META + 1] = ip;
    m[i * META + 2] = port;
    this.#sent[i] = sent;
    if (sent) this.#waiting++;
  }

  #flush(): void {
    while (this.#queued > 0 && !this.#closed && !this.#blocked) {
      const n = this.#queued;
      const took = this.#n.send(this.#handle, n);
      let done: (() => void)[] | undefined;
      if (this.#waiting > 0) {
        done = [];
        const cbs = this.#sent;
        for (let i = 0; i < took; i++) {
          const f = cbs[i];
          if (f) done.push(f);
        }
        this.#waiting -= done.length;
        for (let i = took; i < n; i++) cbs[i - took] = cbs[i];
        for (let i = n - took; i < n; i++) cbs[i] = undefined;
      }
      if (took < n) {
        // The kernel is full: keep the rest, in order, until the socket says it has room.
        this.#blocked = true;
        const slot = this.#n.SLOT;
        this.#send.copyWithin(0, took * slot, n * slot);
        this.#smeta.copyWithin(0, took * META, n * META);
      }
      this.#queued = n - took;
      while (!this.#blocked && this.#overflow.length > 0 && this.#queued < this.#n.BATCH) {
        const o = this.#overflow.shift() as Pending;
        this.#put(o.bytes, o.port, o.ip, o.sent);
      }
      // Last: a callback may send, which must find the areas consistent.
      if (done) for (const f of done) f();
    }
  }

  /**
   * Tests only: the next `k` datagrams reach the kernel, then one send finds it full
   * (EAGAIN), as a full send buffer would.
   * @internal
   */
  fullAfter(k: number): void {
    if (!this.#closed) this.#n.fullAfter(this.#handle, k);
  }

  #onWritable(): void {
    this.#blocked = false;
    this.#flush();
  }

  close(): void {
    if (this.#closed) return;
    this.#flush();
    this.#pausesAtClose = this.#n.pauses(this.#handle);
    this.#closed = true;
    this.#n.close(this.#handle);
    // What never reached the kernel is dropped, as a closing dgram socket drops its queue.
    const left: (() => void)[] = [];
    for (let i = 0; i < this.#queued; i++) {
      const f = this.#sent[i];
      if (f) left.push(f);
    }
    for (const o of this.#overflow.splice(0)) if (o.sent) left.push(o.sent);
    this.#queued = 0;
    this.#waiting = 0;
    for (const f of left) f();
  }
}
