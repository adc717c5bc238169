/** The auth layer's public surface: signing, replay defences, server and client authentication. */
export * from './client.ts';
export * from './replay.ts';
export * from './server.ts';
export * from './sign.ts';
