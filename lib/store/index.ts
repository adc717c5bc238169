/** Durable state: public surface of `lib/store/` (the embedded SQLite backend). */
export * from './errors.ts';
export * from './sqlite.ts';
