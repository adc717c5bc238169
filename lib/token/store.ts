/**
 * The token store (the notes' store_token, find_token, invalidate_token, flush_tokens and
 * the list of bad tokens): a valid list and a revoked list, both keyed by token id.
 * The revoked list is what makes a released token unusable anywhere this server is asked;
 * an id stays on it until the token would have expired anyway. Durability is lib/store's
 * job: it feeds `addRevoked` at start and persists what `invalidateToken` adds.
 *
 * Memory: the revoked list is a Map<bigint, number> (≈ 100 bytes per entry in V8, so about
 * 100 MB per million revoked ids); the valid list holds decoded tokens.
 */
import type { KeyedHmac } from '../crypto/index.ts';
import type { HelloOk } from '../wire/index.ts';
import { type Token, wrapSessionKey } from './token.ts';

/** Default number of entries `flushTokens` examines per call. */
export const FLUSH_BUDGET = 10_000;

export class TokenStore {
  private readonly valid = new Map<bigint, Token>();
  /** token id → expiry (s). */
  private readonly revoked = new Map<bigint, number>();
  private readonly retainMs: number;
  private phase: 'revoked' | 'valid' = 'revoked';
  private iter: Iterator<[bigint, number] | [bigint, Token]> | undefined;

  /**
   * @param opts.retainMs extra time a revoked id is kept after its token's expiry, for
   *   servers whose clocks lag (default 0)
   * @throws {RangeError} when retainMs is negative
   */
  constructor(opts: { retainMs?: number } = {}) {
    const retainMs = opts.retainMs ?? 0;
    if (!Number.isFinite(retainMs) || retainMs < 0)
      throw new RangeError('opts.retainMs must be ≥ 0');
    this.retainMs = retainMs;
  }

  /** Number of tokens on the valid list. */
  get validCount(): number {
    return this.valid.size;
  }

  /** Number of ids on the revoked list. */
  get revokedCount(): number {
    return this.revoked.size;
  }

  /**
   * The notes' store_token: adds (or replaces) a token on the valid list. A revoked id is
   * not stored again.
   * @returns false when the token id is revoked
   */
  storeToken(token: Token): boolean {
    if (this.revoked.has(token.tokenId)) return false;
    this.valid.set(token.tokenId, token);
    return true;
  }

  /** The notes' find_token: the token on the valid list with this id. */
  findToken(tokenId: bigint): Token | undefined {
    return this.valid.get(tokenId);
  }

  /**
   * The notes' invalidate_token: adds the id to the revoked list with the token's expiry
   * and removes it from the valid list. Given only an id, the expiry comes from the valid
   * list or from `expires`.
   * @returns true when the id was not revoked before
   * @throws {RangeError} when only an id is given, it is not on the valid list, and no
   *   `expires` (s) is given
   */
  invalidateToken(token: Token | bigint, expires?: number): boolean {
    const id = typeof token === 'bigint' ? token : token.tokenId;
    const exp =
      typeof token === 'bigint' ? (expires ?? this.valid.get(id)?.expires) : token.expires;
    if (exp === undefined || !Number.isInteger(exp) || exp < 0) {
      throw new RangeError('expires must be given (s) for a token id not on the valid list');
    }
    this.valid.delete(id);
    const had = this.revoked.has(id);
    this.revoked.set(id, Math.max(exp, this.revoked.get(id) ?? 0));
    return !had;
  }

  /**
   * Puts an id on the revoked list as it was persisted (restart); does not touch the
   * valid list.
   * @throws {RangeError} when expires is not a non-negative integer (s)
   */
  addRevoked(tokenId: bigint, expires: number): void {
    if (!Number.isInteger(expires) || expires < 0)
      throw new RangeError('expires must be an integer ≥ 0 (s)');
    this.revoked.set(tokenId, Math.max(expires, this.revoked.get(tokenId) ?? 0));
    this.valid.delete(tokenId);
  }

  /** True when the id is on the revoked list (check this before trusting the valid list). */
  isRevoked(tokenId: bigint): boolean {
    return this.revoked.has(tokenId);
  }

  /** The revoked list as [tokenId, expires (s)] pairs. */
  revokedEntries(): IterableIterator<[bigint, number]> {
    return this.revoked.entries();
  }

  /** The tokens on the valid list. */
  validTokens(): IterableIterator<Token> {
    return this.valid.values();
  }

  /**
   * The notes' flush_tokens, incremental: examines at most `budget` entries, dropping
   * revoked ids whose token expired (now ≥ expires·1000 + retainMs) and valid tokens that
   * expired (now ≥ expires·1000). Call again while it returns true; a pass resumes where the
   * last call stopped (Map iteration tolerates the deletions and insertions between calls).
   * @returns true while the current pass has entries left
   * @throws {RangeError} when budget is not a positive integer
   */
  flushTokens(now: number, budget: number = FLUSH_BUDGET): boolean {
    if (!Number.isInteger(budget) || budget < 1)
      throw new RangeError('budget must be a positive integer');
    let left = budget;
    while (left > 0) {
      if (!this.iter) {
        this.iter = this.phase === 'revoked' ? this.revoked.entries() : this.valid.entries();
      }
      const step = this.iter.next();
      if (step.done) {
        this.iter = undefined;
        if (this.phase === 'revoked') {
          this.phase = 'valid';
          continue;
        }
        this.phase = 'revoked';
        return false;
      }
      left--;
      const [id, v] = step.value;
      if (this.phase === 'revoked') {
        if (now >= (v as number) * 1000 + this.retainMs) this.revoked.delete(id);
      } else if (now >= (v as Token).expires * 1000) {
        this.valid.delete(id);
      }
    }
    return true;
  }
}

/**
 * The notes' return_token: the HELLO_OK body that carries a new token to the client, with
 * the session key wrapped under the credential key and the client's nonce.
 * @throws {RangeError} when sessionKey is not 32 bytes, nonce not 16, or heartbeatMs not a u32
 */
export function returnToken(
  token: Token,
  sessionKey: Uint8Array,
  credentialKey: Uint8Array | KeyedHmac,
  nonce: Uint8Array,
  heartbeatMs: number,
): HelloOk {
  if (!Number.isInteger(heartbeatMs) || heartbeatMs < 0 || heartbeatMs > 0xffffffff) {
    throw new RangeError('heartbeatMs must be a u32');
  }
  return {
    token: token.bytes,
    wrappedKey: wrapSessionKey(sessionKey, credentialKey, nonce, token.tokenId),
    tokenExpires: token.expires * 1000,
    heartbeatMs,
  };
}
