/**
 * The license layer: license files (parse, sign, verify), versions, and seat pools.
 */
export * from './file.ts';
export * from './pool.ts';
export * from './version.ts';
