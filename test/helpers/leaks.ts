/**
 * What keeps this process alive: the ref'ed handles (sockets, child processes, timers) a test
 * file left behind. A file whose every server and client was closed must be able to exit; a
 * leaked handle otherwise shows up only as tap's per-file timeout, with nothing to say why.
 */

interface Handle {
  fd?: number;
  _handle?: { fd?: number };
  writableLength?: number;
  readable?: boolean;
  constructor?: { name?: string };
  hasRef?: () => boolean;
  remoteAddress?: string;
  remotePort?: number;
  localPort?: number;
  spawnargs?: string[];
  pid?: number;
  _onTimeout?: { name?: string; toString(): string };
  _idleTimeout?: number;
}

/**
 * One line per ref'ed handle of this process, saying what it is and where it points, and
 * one per ref'ed timer ("Timeout": node names no more of it).
 */
export function refHandles(): string[] {
  const list = (process as unknown as { _getActiveHandles(): Handle[] })._getActiveHandles();
  const out: string[] = [];
  for (const h of list) {
    if (typeof h.hasRef === 'function' && !h.hasRef()) continue;
    const kind = h.constructor?.name ?? 'handle';
    if (h.spawnargs) out.push(`${kind} pid ${h.pid}: ${h.spawnargs.join(' ').slice(0, 160)}`);
    else if (h.remotePort !== undefined || h.localPort !== undefined) {
      out.push(`${kind} :${h.localPort} → ${h.remoteAddress}:${h.remotePort}`);
    } else if (
      kind === 'Socket' ||
      kind === 'Pipe' ||
      kind === 'WriteStream' ||
      kind === 'ReadStream'
    ) {
      const std =
        h === (process.stdout as unknown)
          ? ' (stdout)'
          : h === (process.stderr as unknown)
            ? ' (stderr)'
            : '';
      out.push(
        `${kind} pipe fd ${h._handle?.fd ?? h.fd}${std}, ${h.readable ? 'readable' : 'not readable'}, ${h.writableLength ?? 0} B to write`,
      );
    } else if (h._onTimeout) {
      const src = h._onTimeout.toString().replace(/\s+/g, ' ').slice(0, 160);
      out.push(`${kind} every ${h._idleTimeout} ms: ${h._onTimeout.name || src}`);
    } else out.push(kind);
  }
  for (const r of process.getActiveResourcesInfo()) if (r === 'Timeout') out.push('Timeout');
  return out;
}

/**
 * Resolves to the ref'ed handles still open `guardMs` after the call that are not among
 * `baseline` (empty once everything closed). Checks after each turn of the event loop that
 * lets closing sockets finish, at most every 20 ms: a bounded wait on a state, not a sleep.
 */
export async function leftOpen(baseline: string[], guardMs = 5000): Promise<string[]> {
  const deadline = Date.now() + guardMs;
  for (;;) {
    const rest = [...refHandles()];
    for (const b of baseline) {
      const i = rest.indexOf(b);
      if (i >= 0) rest.splice(i, 1);
    }
    if (rest.length === 0 || Date.now() > deadline) return rest;
    await new Promise((r) => setTimeout(r, 20));
  }
}
