/** The crypto layer's public surface: primitives, the server keyring, key files. */
export * from './errors.ts';
export * from './files.ts';
export * from './hmac.ts';
export * from './keyring.ts';
