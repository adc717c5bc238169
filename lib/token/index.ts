/** The token layer's public surface: token format and checks, tickets, the store, client side. */
export * from './addr.ts';
export * from './client.ts';
export * from './store.ts';
export * from './ticket.ts';
export * from './token.ts';
