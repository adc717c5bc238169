/**
 * Shared by the license pool tests: feature lines built in code (no signing), a pool on a
 * settable clock with sequential lease ids, and short checkout/assert helpers.
 */
import type t from 'tap';
import type { FeatureLine, FeatureOptions, Reservation } from '../../lib/license/file.ts';
import type { PoolPolicy } from '../../lib/license/options.ts';
import {
  type CheckoutResult,
  type CredentialCap,
  type Lease,
  LicensePool,
} from '../../lib/license/pool.ts';

export const T0 = Date.parse('2030-01-01T00:00:00Z');

export function line(
  name: string,
  version: string,
  count: number,
  options: Partial<FeatureOptions> = {},
  extra: {
    vendor?: string;
    expires?: number | null;
    keyword?: 'FEATURE' | 'INCREMENT';
    reservations?: Reservation[];
  } = {},
): FeatureLine {
  return {
    keyword: extra.keyword ?? 'FEATURE',
    name,
    vendor: extra.vendor ?? 'acme',
    version,
    expiry: 'permanent',
    expires: extra.expires ?? null,
    expired: false,
    count,
    options: {
      dupGroup: 'UHD',
      maxPerUser: null,
      maxPerHost: null,
      queue: true,
      queueMax: null,
      heartbeat: null,
      ...options,
    },
    reservations: extra.reservations ?? [],
    rawOptions: {},
    canonical: '',
    signature: new Uint8Array(64),
    file: 'test.lic',
    line: 1,
  };
}

export interface CoOptions {
  user?: string;
  host?: string;
  addr?: string;
  credentialCap?: CredentialCap;
  version?: string;
  count?: number;
  wait?: boolean;
}

export function setup(features: FeatureLine[], policy?: PoolPolicy) {
  const clock = { now: T0 };
  let next = 0n;
  const pool = new LicensePool(features, {
    now: () => clock.now,
    newLeaseId: () => ++next,
    ...(policy ? { policy } : {}),
  });
  const co = (session: number, feature: string, o: CoOptions = {}): CheckoutResult =>
    pool.checkout({
      sessionId: BigInt(session),
      user: o.user ?? `u${session}`,
      host: o.host ?? `h${session}`,
      ...(o.addr !== undefined ? { addr: o.addr } : {}),
      ...(o.credentialCap ? { credentialCap: o.credentialCap } : {}),
      feature,
      version: o.version ?? '',
      count: o.count ?? 1,
      wait: o.wait ?? false,
    });
  return { pool, clock, co };
}

export type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

export function granted(t: Tap, r: CheckoutResult, msg?: string): Lease {
  if (r.status !== 'granted') t.fail(`${msg ?? 'expected a grant'}: ${JSON.stringify(r)}`);
  else t.pass(msg ?? 'granted');
  return (r as { lease: Lease }).lease;
}

export const code = (r: CheckoutResult) => (r.status === 'denied' ? r.code : r.status);

export const inUse = (pool: LicensePool, name: string, version?: string) =>
  pool
    .status()
    .features.find((f) => f.name === name && (version === undefined || f.version === version))!
    .inUse;

export const resUser = (name: string, count: number): Reservation => ({
  type: 'user',
  name,
  count,
});
export const resHost = (name: string, count: number): Reservation => ({
  type: 'host',
  name,
  count,
});
