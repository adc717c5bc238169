/**
 * The license layer: license files (parse, sign, verify), versions, options files, and
 * seat pools.
 */
export * from './address.ts';
export * from './file.ts';
export * from './options.ts';
export * from './pool.ts';
export * from './version.ts';
