/**
 * The operator's HTTP port (`floatlmd --http 127.0.0.1:27401`): `/metrics` (Prometheus),
 * `/healthz`, `/readyz`, the web status page with its JSON endpoints (`/api/status`,
 * `/api/history`), and the sampler that feeds the usage history. Read-only (GET and HEAD
 * only). Without a token it listens on loopback only and answers only requests whose Host is
 * a loopback name (no DNS rebinding); with `--http-token` it may listen anywhere and every
 * endpoint but the health checks wants the token (bearer header, or a cookie the page sets).
 * See docs/http.md.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { PoolStatus } from '../license/pool.ts';
import { HistoryStore, RANGES, sampleStatus } from './history.ts';
import { type Logger, silentLogger } from './log.ts';
import { type Metrics, notReady, type OperatorSource } from './metrics.ts';

export const DEFAULT_HTTP_PORT = 27401;

export interface HttpOptions {
  source: OperatorSource;
  metrics: Metrics;
  /** Address to listen on; must be loopback unless `token` is set. Default 127.0.0.1. */
  host?: string;
  /** Default 27401; 0 picks a free port. */
  port?: number;
  /** Bearer token every request but /healthz and /readyz must carry. */
  token?: string;
  /** The usage history file (`<stateDir>/history.db`); none: the page shows no charts. */
  historyFile?: string;
  /** Sample the pool into the history this often (ms). Default 10 000. */
  sampleMs?: number;
  /** How often the page polls (ms), told to the page. Default 2000. */
  pollMs?: number;
  now?: () => number;
  logger?: Logger;
}

export interface HttpServer {
  address(): { address: string; port: number };
  /** Takes one history sample now (the timer does it every `sampleMs`). */
  sample(): void;
  close(): Promise<void>;
}

/**
 * Parses `--http`: `host:port`, `[v6]:port`, `host` or `port`.
 * @throws {RangeError} with a readable message when the value is not an address
 */
export function parseListen(value: string): { host: string; port: number } {
  const v = value.trim();
  let host = '127.0.0.1';
  let port = DEFAULT_HTTP_PORT;
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(v) ?? /^([^:]*):(\d+)$/.exec(v);
  if (m) {
    host = m[1] || host;
    if (m[2] !== undefined) port = Number(m[2]);
  } else if (/^\d+$/.test(v)) port = Number(v);
  else if (v !== '') host = v;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`--http: port must be in [0, 65535] in '${value}'`);
  }
  if (host.includes(':') && isIP(host) !== 6) {
    throw new RangeError(`--http: '${value}' is not host:port`);
  }
  return { host, port };
}

/** A loopback address or name (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** A token the user chose; short ones are guessable over the network. */
const MIN_TOKEN = 16;

/**
 * Checks `--http` and `--http-token` together, before anything starts (a usage error).
 * @throws {RangeError} when the address is bad, the host is not loopback and there is no
 *   token, or the token is shorter than 16 characters
 */
export function checkHttpFlags(
  value: string,
  token: string | undefined,
): { host: string; port: number; token?: string } {
  const listen = parseListen(value);
  if (token !== undefined && token.length < MIN_TOKEN) {
    throw new RangeError(`--http-token must be at least ${MIN_TOKEN} characters`);
  }
  if (!isLoopback(listen.host) && token === undefined) {
    throw new RangeError(
      `--http ${listen.host}: the status port listens beyond loopback only with --http-token`,
    );
  }
  return token === undefined ? listen : { ...listen, token };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Files of the page and of uPlot, read once at start (they ship with the package). */
function loadAssets(): Map<string, { type: string; body: Buffer }> {
  const here = new URL('./web/', import.meta.url);
  // From dist/lib/server/ the page's files are still in lib/server/web/ (tsc copies no assets).
  const candidates = [
    fileURLToPath(here),
    fileURLToPath(new URL('../../../lib/server/web/', import.meta.url)),
  ];
  const dir = candidates.find((d) => existsSync(`${d}index.html`));
  if (!dir)
    throw new Error(`the status page files are missing (looked in ${candidates.join(', ')})`);
  const require = createRequire(import.meta.url);
  const uplot = (f: string) => require.resolve(`uplot/dist/${f}`);
  const files: [string, string, string][] = [
    ['/', `${dir}index.html`, 'text/html; charset=utf-8'],
    ['/app.js', `${dir}app.js`, 'text/javascript; charset=utf-8'],
    ['/app.css', `${dir}app.css`, 'text/css; charset=utf-8'],
    ['/vendor/uPlot.iife.min.js', uplot('uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    ['/vendor/uPlot.min.css', uplot('uPlot.min.css'), 'text/css; charset=utf-8'],
  ];
  return new Map(files.map(([route, file, type]) => [route, { type, body: readFileSync(file) }]));
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'cache-control': 'no-store',
};

/** The JSON the page draws (`/api/status`); ids as decimal strings. */
export function statusDocument(
  source: OperatorSource,
  metrics: Metrics,
  now: number,
  pollMs: number,
): Record<string, unknown> {
  const s: PoolStatus = source.poolStatus();
  const reservationsOf = (f: PoolStatus['features'][number]) =>
    s.reservations.filter(
      (r) => r.feature === f.name && r.version === f.version && r.vendor === f.vendor,
    );
  return {
    now,
    pollMs,
    version: source.version,
    state: source.state,
    ready: notReady(source) ?? 'ready',
    graceLeftMs: source.graceLeft(),
    sessions: source.sessionCount,
    store: source.storeState(),
    features: s.features.map((f) => {
      const rs = reservationsOf(f);
      return {
        name: f.name,
        version: f.version,
        vendor: f.vendor,
        licensed: f.count,
        inUse: f.inUse,
        reserved: rs.reduce((a, r) => a + r.count, 0),
        /** Reserved seats their user or host does not hold now: free, but not for everyone. */
        reservedIdle: rs.reduce((a, r) => a + Math.max(0, r.count - r.inUse), 0),
        free: Math.max(0, f.count - f.inUse),
        queued: f.queued,
        granted: f.issued,
        denied: f.denied,
        expires: f.expires,
        expired: f.expired,
        removed: f.removed,
      };
    }),
    holders: s.holders.map((h) => ({
      feature: h.feature,
      version: h.version,
      user: h.user,
      host: h.host,
      count: h.count,
      since: h.since,
      heldMs: Math.max(0, now - h.since),
      lease: h.leaseId.toString(16).padStart(16, '0'),
    })),
    queue: s.queue.map((q) => ({
      feature: q.feature,
      version: q.version,
      user: q.user,
      host: q.host,
      count: q.count,
      position: q.position,
      since: q.since,
      waitingMs: Math.max(0, now - q.since),
    })),
    denials: metrics.denials(),
  };
}

/**
 * Starts the HTTP server.
 * @throws {TypeError} when source or metrics is missing
 * @throws {RangeError} when the host is not loopback and no token is given, or the token is
 *   shorter than 16 characters
 * @throws {Error} when the port cannot be bound or the page's files are missing
 */
export async function startHttp(opts: HttpOptions): Promise<HttpServer> {
  if (!opts?.source) throw new TypeError('source must be an OperatorSource');
  if (!opts.metrics) throw new TypeError('metrics must be a Metrics');
  const host = opts.host ?? '127.0.0.1';
  const token = opts.token;
  checkHttpFlags(host.includes(':') ? `[${host}]:0` : `${host}:0`, token);
  const now = opts.now ?? Date.now;
  const log = opts.logger ?? silentLogger;
  const pollMs = opts.pollMs ?? 2000;
  const assets = loadAssets();
  const want = token === undefined ? undefined : digest(token);
  const history = opts.historyFile ? new HistoryStore(opts.historyFile) : undefined;
  if (opts.historyFile) chmodSync(opts.historyFile, 0o600);
  let deniedBefore = new Map<string, number>();
  let first = true;

  const sample = () => {
    if (!history) return;
    const { samples, denied } = sampleStatus(opts.source.poolStatus(), deniedBefore);
    // The first sample after a start has no previous count: its denials are unknown, not 0.
    if (first) for (const s of samples) s.denied = 0;
    first = false;
    deniedBefore = denied;
    history.record(now(), samples);
  };

  const authorized = (req: http.IncomingMessage): boolean => {
    if (!want) return true;
    const auth = req.headers.authorization;
    let given: string | undefined;
    if (auth?.startsWith('Bearer ')) given = auth.slice(7).trim();
    else {
      const m = /(?:^|;\s*)floatlm_token=([^;]*)/.exec(req.headers.cookie ?? '');
      if (m?.[1]) given = decodeURIComponent(m[1]);
    }
    return given !== undefined && timingSafeEqual(digest(given), want);
  };

  const send = (
    res: http.ServerResponse,
    status: number,
    type: string,
    body: string | Buffer,
    head: boolean,
    extra: Record<string, string> = {},
  ) => {
    res.writeHead(status, {
      ...SECURITY_HEADERS,
      'content-type': type,
      'content-length': Buffer.byteLength(body),
      ...extra,
    });
    res.end(head ? undefined : body);
  };
  const text = 'text/plain; charset=utf-8';
  const json = 'application/json; charset=utf-8';

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      send(res, 405, text, 'read-only: GET and HEAD only\n', false, { allow: 'GET, HEAD' });
      return;
    }
    if (!want && !isLoopback(hostOf(req.headers.host))) {
      // A page on another site reaching us through a rebound DNS name.
      send(res, 421, text, 'this port answers only requests to a loopback address\n', head);
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (path === '/healthz') {
      const ok = ['RUNNING', 'GRACE', 'DEGRADED'].includes(opts.source.state);
      send(res, ok ? 200 : 503, text, ok ? 'ok\n' : `${opts.source.state}\n`, head);
      return;
    }
    if (path === '/readyz') {
      const why = notReady(opts.source);
      send(res, why ? 503 : 200, text, why ? `not ready: ${why}\n` : 'ready\n', head);
      return;
    }
    if (path === '/' && want && url.searchParams.has('token')) {
      // The page's one-time login: the token moves into a cookie and out of the address bar.
      const given = url.searchParams.get('token') ?? '';
      if (!timingSafeEqual(digest(given), want)) {
        send(res, 401, text, 'wrong token\n', head);
        return;
      }
      send(res, 303, text, 'see /\n', head, {
        location: '/',
        'set-cookie': `floatlm_token=${encodeURIComponent(given)}; HttpOnly; SameSite=Strict; Path=/`,
      });
      return;
    }
    if (!authorized(req)) {
      send(res, 401, text, 'a bearer token is required (docs/http.md)\n', head, {
        'www-authenticate': 'Bearer realm="floatlm"',
      });
      return;
    }
    if (path === '/metrics') {
      send(res, 200, opts.metrics.contentType, await opts.metrics.text(), head);
      return;
    }
    if (path === '/api/status') {
      const doc = statusDocument(opts.source, opts.metrics, now(), pollMs);
      send(res, 200, json, JSON.stringify(doc), head);
      return;
    }
    if (path === '/api/history') {
      const range = url.searchParams.get('range') ?? 'hour';
      if (!(range in RANGES)) {
        send(res, 400, text, `range must be one of ${Object.keys(RANGES).join(', ')}\n`, head);
        return;
      }
      const doc = history
        ? history.series(range, now())
        : { range, bucketSeconds: 0, t: [], features: {} };
      send(res, 200, json, JSON.stringify(doc), head);
      return;
    }
    const asset = assets.get(path === '/index.html' ? '/' : path);
    if (asset) {
      send(res, 200, asset.type, asset.body, head);
      return;
    }
    send(res, 404, text, 'not found\n', head);
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      log.error(`http: ${req.method} ${req.url}: ${(e as Error).message}`);
      if (!res.headersSent) send(res, 500, text, 'internal error\n', false);
      else res.destroy();
    });
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 50;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => {
      history?.close();
      reject(e);
    });
    server.listen(opts.port ?? DEFAULT_HTTP_PORT, host, () => {
      server.removeAllListeners('error');
      server.on('error', (e) => log.error(`http: ${e.message}`));
      resolve();
    });
  });
  const timer = setInterval(() => {
    try {
      sample();
    } catch (e) {
      log.error(`history: ${(e as Error).message}`);
    }
  }, opts.sampleMs ?? 10_000);
  timer.unref();
  sample();
  const addr = server.address() as { address: string; port: number };
  log.info(
    `http status on http://${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}/`,
  );
  return {
    address: () => ({ address: addr.address, port: addr.port }),
    sample,
    close: async () => {
      clearInterval(timer);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      history?.close();
    },
  };
}

/** The host part of a Host header (`name:port`, `[v6]:port`). */
function hostOf(header: string | undefined): string {
  if (!header) return '';
  const m = /^\[([^\]]+)\]/.exec(header);
  if (m) return m[1]!;
  return header.replace(/:\d+$/, '');
}
