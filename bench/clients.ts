/**
 * Simulated clients for the benchmarks: many sessions opened through the daemon's real
 * HELLO path over UDP, each a `ClientAuth` that signs its own requests.
 */
import { ClientAuth, type ClientSession } from '../lib/auth/client.ts';
import { type AnyDatagram, ErrorCode, MsgType } from '../lib/wire/index.ts';
import { pool, type Requester } from './site.ts';

export interface BenchClient {
  auth: ClientAuth;
  session: ClientSession;
  server: string;
}

let nextRid = 1;
/** A request id unique within this process. */
export function rid(): number {
  nextRid = (nextRid + 1) >>> 0 || 1;
  return nextRid;
}

/**
 * Opens `n` sessions (users `u0`…) on the daemon behind `req`, `width` HELLOs in flight.
 * @throws {Error} when a HELLO is not answered with a HELLO_OK that verifies
 */
export async function openSessions(
  req: Requester,
  port: number,
  credKey: Uint8Array,
  n: number,
  width = 64,
): Promise<BenchClient[]> {
  const server = `127.0.0.1:${port}`;
  const out: BenchClient[] = new Array(n);
  await pool(
    Array.from({ length: n }, (_, i) => i),
    width,
    async (i) => {
      const auth = new ClientAuth({ credId: 'demo', credKey, now: Date.now });
      const r = rid();
      const h = auth.hello(
        server,
        { vendor: 'demo', program: 'bench', version: '1.0', user: `u${i}`, host: `h${i}` },
        r,
      );
      const reply = await req.request(h.bytes, r);
      const session = auth.acceptHelloOk(reply, r);
      if (!session) throw new Error(`HELLO ${i} was not answered with a valid HELLO_OK`);
      out[i] = { auth, session, server };
    },
  );
  return out;
}

/**
 * Sends one signed request of `type` for client `c` and returns the verified reply.
 * @throws {Error} when no verified reply comes
 */
export async function call<T extends MsgType>(
  req: Requester,
  c: BenchClient,
  type: T,
  body: Parameters<ClientAuth['request']>[2] & object,
): Promise<AnyDatagram> {
  const r = rid();
  for (let attempt = 0; ; attempt++) {
    const s = c.auth.request(c.server, type, body as never, r);
    const reply = await req.request(s.bytes, r);
    const d = c.auth.verifyReply(c.server, reply, s);
    if (!d) throw new Error(`reply to message type ${type} did not verify`);
    // A restarted server's replay floor (verifyReply moved our seq above it): the same
    // request again, with the same id, as the reference client does (protocol.md 10).
    if (d.type === MsgType.ERROR && d.body.code === ErrorCode.REPLAY && attempt === 0) continue;
    return d;
  }
}
