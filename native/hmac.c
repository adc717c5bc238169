/*
 * SHA-256 for lib/crypto/hmac.ts: keying a KeyedHmac, HKDF (a session key), and above all
 * the keyed HMAC-SHA256 over a datagram's trailing tag. The keyed state (inner and outer
 * midstates, as KeyedHmac keeps them in its Int32Array) is read where JavaScript keeps it,
 * the datagram is hashed where it lies, and only a yes/no (verify) or the 32 tag bytes
 * (sign) come back. In JavaScript a short datagram's tag costs ~1.1 µs
 * (two or three compressions); here ~0.1 µs with the CPU's SHA extensions, which is most of
 * what a bad-tag datagram costs the daemon above the kernel's share.
 *
 * Every step is data-independent (SHA-256 has no secret-dependent branch or index; the tag
 * comparison has no early exit), and the key-derived state and message blocks on the stack
 * are wiped before each call returns.
 */
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86 1
#endif

#include "addon.h"

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

/* Zeroes memory the compiler may not elide although the buffer is dead after it: the
 * empty asm claims to read it. */
static void wipe(void *p, size_t n) {
  memset(p, 0, n);
  __asm__ __volatile__("" : : "r"(p) : "memory");
}

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* FIPS 180-4 §6.2.2, one block at a time. */
static void compress_portable(uint32_t st[8], const uint8_t *data, size_t blocks) {
  uint32_t w[64];
  for (; blocks > 0; blocks--, data += 64) {
    for (int i = 0; i < 16; i++) w[i] = be32(data + 4 * i);
    for (int i = 16; i < 64; i++) {
      uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
      uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6],
             h = st[7];
    for (int i = 0; i < 64; i++) {
      uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
      uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
    st[5] += f;
    st[6] += g;
    st[7] += h;
  }
  wipe(w, sizeof w);
}

#ifdef HAVE_X86
/* The same with the SHA extensions (SHA256RNDS2 does two rounds, MSG1/MSG2 the schedule). */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_shani(uint32_t st[8],
                                                                        const uint8_t *data,
                                                                        size_t blocks) {
  const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&st[0]), 0xb1); /* CDAB */
  __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&st[4]), 0x1b);  /* EFGH */
  __m128i s0 = _mm_alignr_epi8(tmp, s1, 8);                                        /* ABEF */
  s1 = _mm_blend_epi16(s1, tmp, 0xf0);                                             /* CDGH */
  for (; blocks > 0; blocks--, data += 64) {
    const __m128i abef = s0, cdgh = s1;
    __m128i m[4];
    for (int g = 0; g < 16; g++) {
      __m128i w;
      if (g < 4) {
        w = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * g)), swap);
      } else {
        /* W[g] from W[g-4], W[g-3] (σ0), W[g-2]:W[g-1] (the t-7 words) and W[g-1] (σ1). */
        __m128i w4 = m[g & 3], w3 = m[(g + 1) & 3], w2 = m[(g + 2) & 3], w1 = m[(g + 3) & 3];
        w = _mm_sha256msg2_epu32(
            _mm_add_epi32(_mm_sha256msg1_epu32(w4, w3), _mm_alignr_epi8(w1, w2, 4)), w1);
      }
      m[g & 3] = w;
      __m128i msg = _mm_add_epi32(w, _mm_loadu_si128((const __m128i *)&K[4 * g]));
      s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
      s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(msg, 0x0e));
    }
    s0 = _mm_add_epi32(s0, abef);
    s1 = _mm_add_epi32(s1, cdgh);
    m[0] = m[1] = m[2] = m[3] = _mm_setzero_si128();
  }
  tmp = _mm_shuffle_epi32(s0, 0x1b);  /* FEBA */
  s1 = _mm_shuffle_epi32(s1, 0xb1);   /* DCHG */
  s0 = _mm_blend_epi16(tmp, s1, 0xf0); /* DCBA */
  s1 = _mm_alignr_epi8(s1, tmp, 8);   /* HGFE */
  _mm_storeu_si128((__m128i *)&st[0], s0);
  _mm_storeu_si128((__m128i *)&st[4], s1);
}

static int have_shani(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  if (!(c & bit_SSE4_1) || !(c & bit_SSSE3)) return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  return (b & (1u << 29)) != 0; /* CPUID.(EAX=7,ECX=0):EBX.SHA[bit 29] */
}
#endif

typedef void (*compress_fn)(uint32_t st[8], const uint8_t *data, size_t blocks);
static compress_fn compress = compress_portable;

static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* Hashes msg[0..len) into st and pads, `counted` bytes having gone in before. */
static void hash_tail(uint32_t st[8], const uint8_t *msg, size_t len, uint64_t counted) {
  uint8_t blk[128];
  size_t full = len / 64, rem = len % 64;
  compress(st, msg, full);
  memcpy(blk, msg + 64 * full, rem);
  size_t nb = rem < 56 ? 1 : 2;
  memset(blk + rem, 0, 64 * nb - rem);
  blk[rem] = 0x80;
  uint64_t bits = (counted + len) * 8;
  for (int i = 0; i < 8; i++) blk[64 * nb - 1 - i] = (uint8_t)(bits >> (8 * i));
  compress(st, blk, nb);
  wipe(blk, sizeof blk);
}

static void digest_out(const uint32_t st[8], uint8_t out[32]) {
  for (int i = 0; i < 8; i++) put_be32(out + 4 * i, st[i]);
}

/*
 * out = HMAC(msg[0..len)) from the keyed midstates at mid[0..16): inner over the message
 * (the key pad block already absorbed: 64 bytes counted), outer over the inner digest.
 */
static void hmac_keyed(const int32_t *mid, const uint8_t *msg, size_t len, uint8_t out[32]) {
  uint32_t st[8];
  uint8_t inner[32];
  for (int i = 0; i < 8; i++) st[i] = (uint32_t)mid[i];
  hash_tail(st, msg, len, 64);
  digest_out(st, inner);
  for (int i = 0; i < 8; i++) st[i] = (uint32_t)mid[8 + i];
  hash_tail(st, inner, 32, 64);
  digest_out(st, out);
  wipe(st, sizeof st);
  wipe(inner, sizeof inner);
}

/*
 * Keys the 32 words at mid as KeyedHmac lays them out: the inner midstate (0..7), the outer
 * (8..15), then the inner key pad's 64 bytes in memory order (16..31). RFC 2104: a key
 * longer than a block is its hash.
 */
static void hmac_key(int32_t *mid, const uint8_t *key, size_t klen) {
  uint8_t pad[64];
  uint32_t st[8];
  memset(pad, 0, sizeof pad);
  if (klen > 64) {
    memcpy(st, IV, sizeof st);
    hash_tail(st, key, klen, 0);
    digest_out(st, pad);
  } else {
    memcpy(pad, key, klen);
  }
  for (int i = 0; i < 64; i++) pad[i] ^= 0x36;
  memcpy(st, IV, sizeof st);
  compress(st, pad, 1);
  for (int i = 0; i < 8; i++) mid[i] = (int32_t)st[i];
  memcpy(mid + 16, pad, 64);
  for (int i = 0; i < 64; i++) pad[i] ^= 0x36 ^ 0x5c;
  memcpy(st, IV, sizeof st);
  compress(st, pad, 1);
  for (int i = 0; i < 8; i++) mid[8 + i] = (int32_t)st[i];
  wipe(pad, sizeof pad);
  wipe(st, sizeof st);
}

/* Longest HKDF info taken here; longer ones are the JavaScript's (none in floatlm is). */
#define HKDF_INFO_MAX 512

/* RFC 5869 HKDF-SHA256 into out[0..olen); 0 when info is longer than HKDF_INFO_MAX. */
static int hkdf(const uint8_t *ikm, size_t ilen, const uint8_t *salt, size_t slen,
                const uint8_t *info, size_t nlen, uint8_t *out, size_t olen) {
  if (nlen > HKDF_INFO_MAX) return 0;
  int32_t mid[32];
  uint8_t prk[32], t[32], buf[32 + HKDF_INFO_MAX + 1];
  /* An empty salt is HashLen zero bytes, which pad exactly as no bytes do. */
  hmac_key(mid, salt, slen);
  hmac_keyed(mid, ikm, ilen, prk);
  hmac_key(mid, prk, 32);
  size_t tlen = 0;
  for (size_t at = 0, i = 1; at < olen; at += 32, i++) {
    memcpy(buf, t, tlen);
    memcpy(buf + tlen, info, nlen);
    buf[tlen + nlen] = (uint8_t)i;
    hmac_keyed(mid, buf, tlen + nlen + 1, t);
    tlen = 32;
    memcpy(out + at, t, olen - at < 32 ? olen - at : 32);
  }
  wipe(mid, sizeof mid);
  wipe(prk, sizeof prk);
  wipe(t, sizeof t);
  wipe(buf, sizeof buf);
  return 1;
}

/* The call's first n arguments; 0 (a TypeError saying `usage` thrown) when it has fewer. */
static int call_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv,
                     const char *usage) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  return 1;
}

/* The bytes of a Uint8Array argument; 0 (a TypeError thrown) when it is not one. */
static int u8_arg(napi_env env, napi_value v, const char *name, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  void *d;
  if (napi_get_typedarray_info(env, v, &type, len, &d, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s must be a Uint8Array", name);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  *data = (uint8_t *)d;
  return 1;
}

/*
 * The `words` keyed-state words at word offset `at` of an Int32Array; 0 (a TypeError or
 * RangeError thrown) when `state` is not one or `at` is not a whole number leaving them. Bounds are checked here
 * although the JavaScript checks them first: nothing from it is trusted with memory.
 */
static int state_arg(napi_env env, napi_value state, napi_value at, size_t words,
                     int32_t **mid) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, state, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_int32_array) {
    napi_throw_type_error(env, NULL, "state must be an Int32Array");
    return 0;
  }
  /* As a double: napi_get_value_uint32 would wrap 2^32, NaN or 1.5 into some other slot. */
  double d;
  if (napi_get_value_double(env, at, &d) != napi_ok || !(d >= 0) || length < words ||
      d > (double)(length - words) || d != (double)(size_t)d) {
    char msg[48];
    snprintf(msg, sizeof msg, "at must leave %zu words in state", words);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  *mid = (int32_t *)data + (size_t)d;
  return 1;
}

/*
 * Arguments (state, at, bytes) of hmacVerify and hmacSign: the 16 midstate words at `at` and
 * the datagram, whose last 32 bytes are its tag.
 */
static int keyed_args(napi_env env, napi_callback_info info, const int32_t **mid,
                      uint8_t **bytes, size_t *len) {
  napi_value argv[3];
  int32_t *m;
  size_t blen;
  if (!call_args(env, info, 3, argv, "expected (state, at, bytes)") ||
      !state_arg(env, argv[0], argv[1], 16, &m) || !u8_arg(env, argv[2], "bytes", bytes, &blen)) {
    return 0;
  }
  if (blen < 32) {
    napi_throw_range_error(env, NULL, "bytes must be at least 32 long");
    return 0;
  }
  *mid = m;
  *len = blen - 32;
  return 1;
}

/* hmacVerify(state, at, bytes): whether the last 32 bytes are the HMAC of those before. */
static napi_value js_verify(napi_env env, napi_callback_info info) {
  const int32_t *mid;
  uint8_t *bytes;
  size_t len;
  if (!keyed_args(env, info, &mid, &bytes, &len)) return NULL;
  uint8_t want[32];
  hmac_keyed(mid, bytes, len, want);
  unsigned diff = 0;
  for (int i = 0; i < 32; i++) diff |= (unsigned)(want[i] ^ bytes[len + i]);
  wipe(want, sizeof want);
  napi_value v;
  napi_get_boolean(env, diff == 0, &v);
  return v;
}

/* hmacSign(state, at, bytes): writes the HMAC of all but the last 32 bytes into those 32. */
static napi_value js_sign(napi_env env, napi_callback_info info) {
  const int32_t *mid;
  uint8_t *bytes;
  size_t len;
  if (!keyed_args(env, info, &mid, &bytes, &len)) return NULL;
  hmac_keyed(mid, bytes, len, bytes + len);
  return NULL;
}

/* Whether the CPU has the SHA extensions, asked once (CPUID traps to a hypervisor: ~20 µs). */
static int shani = -1;

/* hmacKey(state, at, key): keys the 32 words at `at` of `state` (an Int32Array) with key. */
static napi_value js_key(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t *mid;
  uint8_t *key;
  size_t klen;
  if (!call_args(env, info, 3, argv, "expected (state, at, key)") ||
      !state_arg(env, argv[0], argv[1], 32, &mid) || !u8_arg(env, argv[2], "key", &key, &klen)) {
    return NULL;
  }
  hmac_key(mid, key, klen);
  return NULL;
}

/* hkdf(ikm, salt, info, out): HKDF-SHA256 filling out (≤ 8160 bytes); false: info too long. */
static napi_value js_hkdf(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!call_args(env, info, 4, argv, "expected (ikm, salt, info, out)")) return NULL;
  uint8_t *ikm, *salt, *inf, *out;
  size_t ilen, slen, nlen, olen;
  if (!u8_arg(env, argv[0], "ikm", &ikm, &ilen) || !u8_arg(env, argv[1], "salt", &salt, &slen) ||
      !u8_arg(env, argv[2], "info", &inf, &nlen) || !u8_arg(env, argv[3], "out", &out, &olen)) {
    return NULL;
  }
  if (olen < 1 || olen > 255 * 32) {
    napi_throw_range_error(env, NULL, "out must be 1 to 8160 bytes long");
    return NULL;
  }
  napi_value v;
  napi_get_boolean(env, hkdf(ikm, ilen, salt, slen, inf, nlen, out, olen), &v);
  return v;
}

/* The fastest compression this CPU has. */
static const char *best(void) {
#ifdef HAVE_X86
  if (shani < 0) shani = have_shani();
  if (shani) {
    compress = compress_shani;
    return "sha-ni";
  }
#endif
  compress = compress_portable;
  return "portable";
}

/*
 * sha256Impl(name?): "portable" selects the plain C compression, anything else the fastest
 * one; returns the one in use. For the tests, which hold both to the same vectors.
 */
static napi_value js_impl(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[16] = "";
  if (argc >= 1) napi_get_value_string_utf8(env, argv[0], name, sizeof name, NULL);
  const char *impl = "portable";
  if (strcmp(name, "portable") == 0) compress = compress_portable;
  else impl = best();
  napi_value v;
  napi_create_string_utf8(env, impl, NAPI_AUTO_LENGTH, &v);
  return v;
}

void hmac_init(napi_env env, napi_value exports) {
  best();
  napi_property_descriptor props[] = {
      {"hmacVerify", NULL, js_verify, NULL, NULL, NULL, napi_default, NULL},
      {"hmacSign", NULL, js_sign, NULL, NULL, NULL, napi_default, NULL},
      {"sha256Impl", NULL, js_impl, NULL, NULL, NULL, napi_default, NULL},
      {"hmacKey", NULL, js_key, NULL, NULL, NULL, napi_default, NULL},
      {"hkdf", NULL, js_hkdf, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
