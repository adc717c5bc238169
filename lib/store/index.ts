/** Durable state: public surface of `lib/store/` (the embedded SQLite backend and the interface). */
export * from './errors.ts';
export * from './sqlite.ts';
export type { CommitOutcome, StateStore } from './state.ts';
