/** The datagram codec: public surface of `lib/wire/`. Pure functions over bytes. */
export * from './codes.ts';
export * from './constants.ts';
export * from './cursor.ts';
export * from './datagram.ts';
export * from './errors.ts';
export * from './header.ts';
export * from './messages.ts';
export type { Codec } from './schema.ts';
