/**
 * Signing and verifying datagrams: the tag is HMAC-SHA256 over every byte before it
 * (DEVELOPERS.md "Datagram"), under whichever key the auth mode names.
 */
import { KeyedHmac } from '../crypto/index.ts';
import { type AnyDatagram, encodeToBytes, HEADER_LENGTH, TAG_LENGTH } from '../wire/index.ts';

const ZERO_TAG = new Uint8Array(TAG_LENGTH);

function keyed(key: Uint8Array | KeyedHmac): KeyedHmac {
  if (key instanceof KeyedHmac) return key;
  if (key instanceof Uint8Array) return new KeyedHmac(key);
  throw new TypeError('key must be a Uint8Array or a KeyedHmac');
}

/**
 * Encodes `d` (its `tag` field is ignored) and writes the tag over the encoded bytes.
 * Pass a KeyedHmac on hot paths; a raw key is keyed per call.
 * @throws {RangeError|TypeError} as lib/wire encode, or when key is neither kind
 */
export function signDatagram(d: AnyDatagram, key: Uint8Array | KeyedHmac): Uint8Array {
  const h = keyed(key);
  // The encoder writes the tag field as given; any 32 bytes do, the HMAC overwrites them.
  const tagged = d.tag instanceof Uint8Array && d.tag.length === TAG_LENGTH;
  const bytes = encodeToBytes(tagged ? d : ({ ...d, tag: ZERO_TAG } as AnyDatagram));
  h.signTrailing(bytes);
  return bytes;
}

/**
 * True when the last 32 bytes are the HMAC of the bytes before them, compared in constant
 * time. Does not decode; the caller has already checked the framing.
 * @throws {TypeError} when key is neither a Uint8Array nor a KeyedHmac
 */
export function verifyTag(bytes: Uint8Array, key: Uint8Array | KeyedHmac): boolean {
  if (!(bytes instanceof Uint8Array) || bytes.length < HEADER_LENGTH + TAG_LENGTH) return false;
  return keyed(key).verifyTrailing(bytes);
}
