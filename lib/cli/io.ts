/**
 * What a CLI action needs from the outside world, injected so tests capture output and
 * exit codes without spawning a process: output streams, environment, cwd, signals.
 */

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** Exit codes of `floatlm` and `floatlmd` (README, "Exit codes"). */
export const ExitCode = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  NO_ANSWER: 3,
  DENIED: 4,
  AUTH: 5,
  BAD_FILE: 6,
  LOST: 7,
  INTERRUPTED: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** An error a command reports as one readable line, exiting with `exitCode`. */
export class CliError extends Error {
  readonly exitCode: number;
  readonly detail: string | undefined;

  constructor(message: string, exitCode: number = ExitCode.ERROR, detail?: string) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
    this.detail = detail;
  }
}

/** The real process's IO. */
export function processIO(): CliIO {
  return {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    env: process.env,
    cwd: process.cwd(),
  };
}
