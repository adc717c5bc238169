/**
 * What a CLI action needs from the outside world, injected so tests capture output and
 * exit codes without spawning a process: output streams, environment, cwd, whether the
 * streams are terminals, and a question asked on the terminal.
 */
import { createInterface } from 'node:readline';
import { InvalidArgumentError } from 'commander';

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Which streams are terminals (absent: none, as in a pipe or a test). */
  tty?: { stdin: boolean; stdout: boolean; stderr: boolean };
  /** Asks `question` on the terminal and resolves with the line typed (only when stdin is one). */
  ask?: (question: string) => Promise<string>;
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
    tty: {
      stdin: !!process.stdin.isTTY,
      stdout: !!process.stdout.isTTY,
      stderr: !!process.stderr.isTTY,
    },
    ask: (question) =>
      new Promise((resolve) => {
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        let answered = false;
        rl.question(question, (line) => {
          answered = true;
          rl.close();
          resolve(line);
        });
        // Ctrl-D or Ctrl-C is a no.
        rl.on('SIGINT', () => rl.close());
        rl.on('close', () => {
          if (!answered) resolve('');
        });
      }),
  };
}

/**
 * A commander argument parser for an integer option in [min, max].
 * @throws {InvalidArgumentError} (from the parser) naming the option when the value is not one
 */
export function intOption(name: string, min: number, max: number): (v: string) => number {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
    }
    return n;
  };
}
