#!/usr/bin/env node
/** `floatlm`: the operator's and developer's CLI (lib/cli/floatlm.ts does the work). */
import { runCli } from '../lib/cli/floatlm.ts';
import { processIO } from '../lib/cli/io.ts';

runCli(process.argv.slice(2), processIO()).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`floatlm: ${(e as Error)?.message ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
