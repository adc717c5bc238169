#!/usr/bin/env node
/** `floatlmd`: the license daemon (lib/cli/floatlmd.ts does the work). */
import { runDaemonCli } from '../lib/cli/floatlmd.ts';
import { processIO } from '../lib/cli/io.ts';

runDaemonCli(process.argv.slice(2), processIO()).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`floatlmd: ${(e as Error)?.message ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
