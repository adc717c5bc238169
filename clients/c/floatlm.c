/*
 * floatlm.c - the floatlm C client: SHA-256/HMAC, the datagram codec and the client
 * session (protocol.md is the contract; see floatlm.h for the API).
 */
#define _POSIX_C_SOURCE 200809L

#include "floatlm.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h> /* getentropy: glibc >= 2.25, macOS >= 10.12, the BSDs */
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Stores through a volatile pointer are observable behaviour, so the compiler cannot drop
 * them as dead stores the way it may drop a memset of a buffer about to go out of scope. */
void flm_wipe(void *p, size_t n) {
  volatile uint8_t *v = (volatile uint8_t *)p;
  while (n--) *v++ = 0;
}

/* ==== SHA-256 (FIPS 180-4) ============================================================= */

static const uint32_t K256[64] = {
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

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
  uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
  int i;
  for (i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
  for (i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; k = h[7];
  for (i = 0; i < 64; i++) {
    t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
    t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  flm_wipe(w, sizeof w); /* the schedule of an HMAC key block gives back the key */
}

void flm_sha256_init(flm_sha256 *s) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, iv, sizeof iv);
  s->bytes = 0;
  s->fill = 0;
}

void flm_sha256_update(flm_sha256 *s, const void *data, size_t len) {
  const uint8_t *p = (const uint8_t *)data;
  s->bytes += len;
  while (len > 0) {
    if (s->fill == 0 && len >= 64) {
      sha256_block(s->h, p);
      p += 64;
      len -= 64;
    } else {
      size_t n = 64 - s->fill < len ? 64 - s->fill : len;
      memcpy(s->buf + s->fill, p, n);
      s->fill += n;
      p += n;
      len -= n;
      if (s->fill == 64) {
        sha256_block(s->h, s->buf);
        s->fill = 0;
      }
    }
  }
}

void flm_sha256_final(flm_sha256 *s, uint8_t out[32]) {
  uint64_t bits = s->bytes * 8;
  uint8_t pad = 0x80, zero = 0, len[8];
  int i;
  for (i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
  flm_sha256_update(s, &pad, 1);
  while (s->fill != 56) flm_sha256_update(s, &zero, 1);
  flm_sha256_update(s, len, 8);
  for (i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(s->h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
    out[4 * i + 3] = (uint8_t)s->h[i];
  }
}

/* HMAC over up to three pieces, so labels need no concatenation buffer. */
static void hmac3(const uint8_t *key, size_t key_len, const void *m1, size_t n1, const void *m2,
                  size_t n2, const void *m3, size_t n3, uint8_t out[32]) {
  uint8_t k[64], pad[64], inner[32];
  flm_sha256 s;
  size_t i;
  memset(k, 0, sizeof k);
  if (key_len > 64) {
    flm_sha256_init(&s);
    flm_sha256_update(&s, key, key_len);
    flm_sha256_final(&s, k);
  } else if (key_len > 0) {
    memcpy(k, key, key_len);
  }
  for (i = 0; i < 64; i++) pad[i] = (uint8_t)(k[i] ^ 0x36);
  flm_sha256_init(&s);
  flm_sha256_update(&s, pad, 64);
  if (n1) flm_sha256_update(&s, m1, n1);
  if (n2) flm_sha256_update(&s, m2, n2);
  if (n3) flm_sha256_update(&s, m3, n3);
  flm_sha256_final(&s, inner);
  for (i = 0; i < 64; i++) pad[i] = (uint8_t)(k[i] ^ 0x5c);
  flm_sha256_init(&s);
  flm_sha256_update(&s, pad, 64);
  flm_sha256_update(&s, inner, 32);
  flm_sha256_final(&s, out);
  /* the padded key, and the hash states after it (each as good as the key for forging) */
  flm_wipe(k, sizeof k);
  flm_wipe(pad, sizeof pad);
  flm_wipe(inner, sizeof inner);
  flm_wipe(&s, sizeof s);
}

void flm_hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t msg_len,
                     uint8_t out[32]) {
  hmac3(key, key_len, msg, msg_len, NULL, 0, NULL, 0, out);
}

int flm_ct_equal(const uint8_t *a, const uint8_t *b, size_t len) {
  uint8_t d = 0;
  size_t i;
  for (i = 0; i < len; i++) d |= (uint8_t)(a[i] ^ b[i]);
  return d == 0;
}

/* ==== strings ========================================================================== */

int flm_utf8_valid(const uint8_t *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint8_t c = s[i];
    size_t n, j;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xC2 && c <= 0xDF) n = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;      /* overlong */
      if (c == 0xED) hi = 0x9F;      /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;      /* overlong */
      if (c == 0xF4) hi = 0x8F;      /* above U+10FFFF */
    } else {
      return 0;
    }
    if (len - i - 1 < n) return 0;
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (j = 2; j <= n; j++)
      if (s[i + j] < 0x80 || s[i + j] > 0xBF) return 0;
    i += n + 1;
  }
  return 1;
}

int flm_str_set(char *dst, uint8_t *len, size_t cap, const char *src) {
  size_t n;
  if (!dst || !len || !src) return FLM_E_ARG;
  n = strlen(src);
  if (n > cap || n > 255) return FLM_E_BAD_LENGTH;
  if (!flm_utf8_valid((const uint8_t *)src, n)) return FLM_E_BAD_STRING;
  memcpy(dst, src, n);
  dst[n] = '\0';
  *len = (uint8_t)n;
  return FLM_OK;
}

/* ==== codec: one walker that reads or writes each field ================================ */

#define TRY(x)                  \
  do {                          \
    int rc_ = (x);              \
    if (rc_ != FLM_OK) return rc_; \
  } while (0)

#define MS_LIMIT (((uint64_t)1) << 53)

/* A cursor over [at, end): decoding reads rb, encoding writes wb (end = capacity). */
typedef struct {
  const uint8_t *rb;
  uint8_t *wb;
  size_t at, end;
  int enc;
} io;

static int x_room(io *x, size_t n) {
  if (x->end - x->at >= n) return FLM_OK;
  return x->enc ? FLM_E_TOO_LARGE : FLM_E_TRUNCATED;
}

static int x_uint(io *x, uint64_t *v, int bytes, uint64_t lo, uint64_t hi) {
  int i;
  TRY(x_room(x, (size_t)bytes));
  if (x->enc) {
    if (*v < lo || *v > hi) return FLM_E_OUT_OF_RANGE;
    for (i = 0; i < bytes; i++) x->wb[x->at + (size_t)i] = (uint8_t)(*v >> (8 * (bytes - 1 - i)));
  } else {
    *v = 0;
    for (i = 0; i < bytes; i++) *v = *v << 8 | x->rb[x->at + (size_t)i];
    if (*v < lo || *v > hi) return FLM_E_OUT_OF_RANGE;
  }
  x->at += (size_t)bytes;
  return FLM_OK;
}

static int x_u8(io *x, uint8_t *v, unsigned lo, unsigned hi) {
  uint64_t t = *v;
  TRY(x_uint(x, &t, 1, lo, hi));
  *v = (uint8_t)t;
  return FLM_OK;
}
static int x_u16(io *x, uint16_t *v, unsigned lo, unsigned hi) {
  uint64_t t = *v;
  TRY(x_uint(x, &t, 2, lo, hi));
  *v = (uint16_t)t;
  return FLM_OK;
}
static int x_u32(io *x, uint32_t *v) {
  uint64_t t = *v;
  TRY(x_uint(x, &t, 4, 0, 0xFFFFFFFFu));
  *v = (uint32_t)t;
  return FLM_OK;
}
static int x_u64(io *x, uint64_t *v) { return x_uint(x, v, 8, 0, UINT64_MAX); }
static int x_ms(io *x, uint64_t *v) { return x_uint(x, v, 8, 0, MS_LIMIT - 1); }

static int x_fixed(io *x, uint8_t *b, size_t n) {
  TRY(x_room(x, n));
  if (x->enc) memcpy(x->wb + x->at, b, n);
  else memcpy(b, x->rb + x->at, n);
  x->at += n;
  return FLM_OK;
}

/* Length-prefixed bytes: the length is checked against cap before anything is copied. */
static int x_var(io *x, uint8_t *b, uint16_t *len, int prefix, size_t cap) {
  uint64_t n = *len;
  if (x->enc && n > cap) return FLM_E_BAD_LENGTH;
  TRY(x_uint(x, &n, prefix, 0, prefix == 1 ? 0xFF : 0xFFFF));
  if (n > cap) return FLM_E_BAD_LENGTH;
  *len = (uint16_t)n;
  return x_fixed(x, b, (size_t)n);
}

static int x_str(io *x, char *s, uint8_t *len, size_t cap) {
  uint16_t n = *len;
  if (x->enc && n <= cap && !flm_utf8_valid((const uint8_t *)s, n)) return FLM_E_BAD_STRING;
  TRY(x_var(x, (uint8_t *)s, &n, 1, cap));
  if (!x->enc) {
    if (!flm_utf8_valid((const uint8_t *)s, n)) return FLM_E_BAD_STRING;
    s[n] = '\0';
  }
  *len = (uint8_t)n;
  return FLM_OK;
}
#define X_NAME(x, f) x_str((x), (f).s, &(f).len, FLM_CAP_NAME)
#define X_VER(x, f) x_str((x), (f).s, &(f).len, FLM_CAP_VERSION)
#define X_MSG(x, f) x_str((x), (f).s, &(f).len, FLM_CAP_MESSAGE)

static int x_count(io *x, uint8_t *n, unsigned cap) {
  if (x->enc && *n > cap) return FLM_E_BAD_LENGTH;
  TRY(x_u8(x, n, 0, 0xFF));
  return *n > cap ? FLM_E_BAD_LENGTH : FLM_OK;
}

static int x_record(io *x, flm_record *r) {
  uint16_t u16;
  /* An unknown kind fails only after its byte was read (protocol.md order). */
  TRY(x_u8(x, &r->kind, 0, 0xFF));
  if (r->kind < FLM_REC_FEATURE || r->kind > FLM_REC_SERVER) return FLM_E_OUT_OF_RANGE;
  if (r->kind == FLM_REC_SERVER) {
    TRY(X_NAME(x, r->name));
    TRY(x_u8(x, &r->state, FLM_SITE_GONE, FLM_SITE_NO_ETCD));
    TRY(x_ms(x, &r->since));
    return x_u8(x, &r->self, 0, 1);
  }
  if (r->kind == FLM_REC_FEATURE) {
    TRY(X_NAME(x, r->feature));
    TRY(X_VER(x, r->version));
    TRY(X_NAME(x, r->vendor));
    TRY(x_ms(x, &r->expires));
    TRY(x_u32(x, &r->count));
    TRY(x_u32(x, &r->in_use));
    TRY(x_u32(x, &r->queued));
    TRY(x_u32(x, &r->issued));
    return x_u32(x, &r->denied);
  }
  if (r->kind == FLM_REC_RESERVATION) {
    TRY(X_NAME(x, r->feature));
    TRY(x_u8(x, &r->res_type, FLM_RES_USER, FLM_RES_HOST));
    TRY(X_NAME(x, r->name));
    if (x->enc && (r->count > 0xFFFF || r->in_use > 0xFFFF)) return FLM_E_OUT_OF_RANGE;
    u16 = (uint16_t)r->count;
    TRY(x_u16(x, &u16, 0, 0xFFFF));
    r->count = u16;
    u16 = (uint16_t)r->in_use;
    TRY(x_u16(x, &u16, 0, 0xFFFF));
    r->in_use = u16;
    return FLM_OK;
  }
  TRY(X_NAME(x, r->feature));
  TRY(X_NAME(x, r->user));
  TRY(X_NAME(x, r->host));
  TRY(x_ms(x, &r->since));
  if (r->kind == FLM_REC_HOLDER) {
    if (x->enc && r->count > 0xFFFF) return FLM_E_OUT_OF_RANGE;
    u16 = (uint16_t)r->count;
    TRY(x_u16(x, &u16, 0, 0xFFFF));
    r->count = u16;
    TRY(x_u64(x, &r->lease_id));
    TRY(X_NAME(x, r->program));
    return X_VER(x, r->version);
  }
  return x_u16(x, &r->position, 0, 0xFFFF);
}

static int x_body(io *x, flm_datagram *d) {
  unsigned i;
  switch (d->type) {
  case FLM_HELLO: {
    flm_hello_body *b = &d->body.hello;
    TRY(X_NAME(x, b->vendor));
    TRY(X_NAME(x, b->program));
    TRY(X_VER(x, b->version));
    TRY(X_NAME(x, b->user));
    TRY(X_NAME(x, b->host));
    return x_var(x, b->padding, &b->padding_len, 2, FLM_CAP_PADDING);
  }
  case FLM_HELLO_OK: {
    flm_hello_ok_body *b = &d->body.hello_ok;
    TRY(x_var(x, b->token, &b->token_len, 2, FLM_CAP_TOKEN));
    TRY(x_fixed(x, b->wrapped_key, 32));
    TRY(x_ms(x, &b->token_expires));
    return x_u32(x, &b->heartbeat_ms);
  }
  case FLM_CHECKOUT: {
    flm_checkout_body *b = &d->body.checkout;
    TRY(X_NAME(x, b->feature));
    TRY(X_VER(x, b->version));
    TRY(x_u16(x, &b->count, 1, 1000));
    return x_u8(x, &b->options, 0, 1);
  }
  case FLM_CHECKOUT_REPLY: {
    flm_checkout_reply_body *b = &d->body.checkout_reply;
    TRY(x_u8(x, &b->status, 0, FLM_DENIED));
    TRY(X_NAME(x, b->feature));
    TRY(x_u64(x, &b->lease_id));
    TRY(x_u16(x, &b->count, 0, 0xFFFF));
    TRY(x_var(x, b->ticket.b, &b->ticket.len, 2, FLM_CAP_TICKET));
    TRY(x_u32(x, &b->heartbeat_ms));
    TRY(x_u16(x, &b->position, 0, 0xFFFF));
    TRY(x_u16(x, &b->queue_length, 0, 0xFFFF));
    TRY(x_u16(x, &b->reason, 0, 0xFFFF));
    return x_u32(x, &b->retry_after_ms);
  }
  case FLM_HEARTBEAT:
    return FLM_OK;
  case FLM_HEARTBEAT_ACK: {
    flm_heartbeat_ack_body *b = &d->body.heartbeat_ack;
    TRY(x_u16(x, &b->leases, 0, 0xFFFF));
    TRY(x_u16(x, &b->queued, 0, 0xFFFF));
    return x_u32(x, &b->heartbeat_ms);
  }
  case FLM_CHECKIN:
    TRY(x_u64(x, &d->body.checkin.lease_id));
    return X_NAME(x, d->body.checkin.feature);
  case FLM_CHECKIN_OK:
    TRY(x_u64(x, &d->body.checkin_ok.lease_id));
    return x_u16(x, &d->body.checkin_ok.released, 0, 0xFFFF);
  case FLM_TEST_CONN:
    return x_fixed(x, d->body.test_conn.nonce, 8);
  case FLM_TEST_CONN_ACK:
    TRY(x_fixed(x, d->body.test_conn_ack.nonce, 8));
    return x_u16(x, &d->body.test_conn_ack.leases, 0, 0xFFFF);
  case FLM_STATUS:
    TRY(x_u16(x, &d->body.status.page, 0, 0xFFFF));
    return X_NAME(x, d->body.status.feature);
  case FLM_STATUS_REPLY: {
    flm_status_reply_body *b = &d->body.status_reply;
    TRY(x_u16(x, &b->page, 0, 0xFFFF));
    TRY(x_u16(x, &b->pages, 1, 0xFFFF));
    TRY(x_u32(x, &b->snapshot));
    TRY(x_count(x, &b->n_records, FLM_CAP_RECORDS));
    for (i = 0; i < b->n_records; i++) TRY(x_record(x, &b->records[i]));
    return FLM_OK;
  }
  case FLM_ADMIN: {
    flm_admin_body *b = &d->body.admin;
    TRY(x_u8(x, &b->op, FLM_OP_REMOVE, FLM_OP_SHUTDOWN));
    TRY(X_NAME(x, b->feature));
    TRY(X_NAME(x, b->user));
    TRY(X_NAME(x, b->host));
    return x_u64(x, &b->lease_id);
  }
  case FLM_ADMIN_REPLY:
    TRY(x_u8(x, &d->body.admin_reply.op, FLM_OP_REMOVE, FLM_OP_SHUTDOWN));
    TRY(x_u32(x, &d->body.admin_reply.affected));
    return X_MSG(x, d->body.admin_reply.message);
  case FLM_PING:
    return x_var(x, d->body.ping.payload, &d->body.ping.payload_len, 2, FLM_CAP_PING);
  case FLM_PONG: {
    flm_pong_body *b = &d->body.pong;
    TRY(X_VER(x, b->server_version));
    TRY(x_ms(x, &b->uptime_ms));
    TRY(x_u8(x, &b->state, 0, FLM_STATE_DEGRADED));
    return x_u32(x, &b->grace_left_ms);
  }
  case FLM_RECLAIM: {
    flm_reclaim_body *b = &d->body.reclaim;
    TRY(x_count(x, &b->n_tickets, FLM_CAP_TICKETS));
    for (i = 0; i < b->n_tickets; i++)
      TRY(x_var(x, b->tickets[i].b, &b->tickets[i].len, 2, FLM_CAP_TICKET));
    return FLM_OK;
  }
  case FLM_RECLAIM_REPLY: {
    flm_reclaim_reply_body *b = &d->body.reclaim_reply;
    TRY(x_count(x, &b->n_results, FLM_CAP_TICKETS));
    for (i = 0; i < b->n_results; i++) {
      TRY(x_u64(x, &b->results[i].lease_id));
      TRY(x_u16(x, &b->results[i].code, 0, 0xFFFF));
    }
    return FLM_OK;
  }
  case FLM_ERROR:
    TRY(x_u16(x, &d->body.error.code, 0, 0xFFFF));
    TRY(x_u32(x, &d->body.error.retry_after_ms));
    return X_MSG(x, d->body.error.message);
  default:
    return FLM_E_UNKNOWN_TYPE;
  }
}

/* The auth block: only on client requests (flags 0). */
static int x_auth(io *x, flm_datagram *d) {
  if (d->flags != 0) return FLM_OK;
  switch (d->auth) {
  case FLM_AUTH_CREDENTIAL:
    TRY(X_NAME(x, d->cred_id));
    return x_fixed(x, d->nonce, FLM_NONCE_LEN);
  case FLM_AUTH_TOKEN:
    return x_var(x, d->token, &d->token_len, 2, FLM_CAP_TOKEN);
  case FLM_AUTH_ADMIN:
    return X_NAME(x, d->key_id);
  default:
    return FLM_OK;
  }
}

static int known_type(unsigned t) {
  return (t >= FLM_HELLO && t <= FLM_RECLAIM) || (t >= FLM_HELLO_OK && t <= FLM_RECLAIM_REPLY) ||
         t == FLM_ERROR;
}

static uint64_t be(const uint8_t *p, int n) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

int flm_decode(const uint8_t *buf, size_t len, flm_datagram *out) {
  size_t length;
  io x;
  uint64_t v;
  if (!out || (!buf && len)) return FLM_E_ARG;
  /* Same checks in the same order as the reference codec. */
  if (len < 2) return FLM_E_TRUNCATED;
  if (be(buf, 2) != FLM_MAGIC) return FLM_E_BAD_MAGIC;
  if (len < 3) return FLM_E_TRUNCATED;
  if (buf[2] != FLM_VERSION) return FLM_E_BAD_VERSION;
  if (len < 4) return FLM_E_TRUNCATED;
  if (!known_type(buf[3])) return FLM_E_UNKNOWN_TYPE;
  if (len < 5) return FLM_E_TRUNCATED;
  if (buf[4] & ~(FLM_F_REPLY | FLM_F_FROM_SERVER)) return FLM_E_BAD_FLAGS;
  if (len < 6) return FLM_E_TRUNCATED;
  if (buf[5] < FLM_AUTH_CREDENTIAL || buf[5] > FLM_AUTH_ADMIN) return FLM_E_BAD_AUTH_MODE;
  if (len < 8) return FLM_E_TRUNCATED;
  length = (size_t)be(buf + 6, 2);
  if (length > FLM_MAX_DATAGRAM) return FLM_E_TOO_LARGE;
  if (length < FLM_MIN_DATAGRAM) return FLM_E_BAD_LENGTH;
  if (len < length) return FLM_E_TRUNCATED;
  out->type = buf[3];
  out->flags = buf[4];
  out->auth = buf[5];
  out->request_id = (uint32_t)be(buf + 8, 4);
  out->session_id = be(buf + 12, 8);
  out->seq = (uint32_t)be(buf + 20, 4);
  v = be(buf + 24, 8);
  if (v >= MS_LIMIT) return FLM_E_OUT_OF_RANGE;
  out->timestamp = v;
  x.rb = buf;
  x.wb = NULL;
  x.at = FLM_HEADER_LEN;
  x.end = length - FLM_TAG_LEN;
  x.enc = 0;
  TRY(x_auth(&x, out));
  TRY(x_body(&x, out));
  if (x.at != x.end) return FLM_E_TRAILING_BYTES;
  memcpy(out->tag, buf + length - FLM_TAG_LEN, FLM_TAG_LEN);
  if (len != length) return FLM_E_TRAILING_BYTES;
  return FLM_OK;
}

int flm_encode(const flm_datagram *d, uint8_t *buf, size_t cap, size_t *out_len) {
  uint8_t tmp[FLM_MAX_DATAGRAM];
  io x;
  size_t n;
  int i;
  if (!d || !buf || !out_len) return FLM_E_ARG;
  if (!known_type(d->type)) return FLM_E_UNKNOWN_TYPE;
  if (d->flags & ~(FLM_F_REPLY | FLM_F_FROM_SERVER)) return FLM_E_BAD_FLAGS;
  if (d->auth < FLM_AUTH_CREDENTIAL || d->auth > FLM_AUTH_ADMIN) return FLM_E_BAD_AUTH_MODE;
  if (d->timestamp >= MS_LIMIT) return FLM_E_OUT_OF_RANGE;
  tmp[0] = (uint8_t)(FLM_MAGIC >> 8);
  tmp[1] = (uint8_t)(FLM_MAGIC & 0xFF);
  tmp[2] = FLM_VERSION;
  tmp[3] = d->type;
  tmp[4] = d->flags;
  tmp[5] = d->auth;
  for (i = 0; i < 4; i++) tmp[8 + i] = (uint8_t)(d->request_id >> (24 - 8 * i));
  for (i = 0; i < 8; i++) tmp[12 + i] = (uint8_t)(d->session_id >> (56 - 8 * i));
  for (i = 0; i < 4; i++) tmp[20 + i] = (uint8_t)(d->seq >> (24 - 8 * i));
  for (i = 0; i < 8; i++) tmp[24 + i] = (uint8_t)(d->timestamp >> (56 - 8 * i));
  x.rb = NULL;
  x.wb = tmp;
  x.at = FLM_HEADER_LEN;
  x.end = FLM_MAX_DATAGRAM - FLM_TAG_LEN;
  x.enc = 1;
  /* The walker only reads *d when encoding; the cast lets one walker serve both ways. */
  TRY(x_auth(&x, (flm_datagram *)d));
  TRY(x_body(&x, (flm_datagram *)d));
  n = x.at + FLM_TAG_LEN;
  memset(tmp + x.at, 0, FLM_TAG_LEN);
  tmp[6] = (uint8_t)(n >> 8);
  tmp[7] = (uint8_t)n;
  if (n > cap) return FLM_E_ARG;
  memcpy(buf, tmp, n);
  *out_len = n;
  return FLM_OK;
}

int flm_sign(uint8_t *buf, size_t len, const uint8_t key[32]) {
  if (!buf || !key || len < FLM_MIN_DATAGRAM) return FLM_E_ARG;
  flm_hmac_sha256(key, 32, buf, len - FLM_TAG_LEN, buf + len - FLM_TAG_LEN);
  return FLM_OK;
}

int flm_verify(const uint8_t *buf, size_t len, const uint8_t key[32]) {
  uint8_t tag[32];
  if (!buf || !key || len < FLM_MIN_DATAGRAM) return FLM_E_ARG;
  flm_hmac_sha256(key, 32, buf, len - FLM_TAG_LEN, tag);
  return flm_ct_equal(tag, buf + len - FLM_TAG_LEN, 32) ? FLM_OK : FLM_E_BAD_TAG;
}

void flm_unwrap_key(const uint8_t cred_key[32], const uint8_t nonce[16], uint64_t session_id,
                    const uint8_t wrapped[32], uint8_t session_key[32]) {
  static const char label[] = "floatlm wrap v1";
  uint8_t id[8], mask[32];
  int i;
  for (i = 0; i < 8; i++) id[i] = (uint8_t)(session_id >> (56 - 8 * i));
  hmac3(cred_key, 32, label, sizeof label - 1, nonce, 16, id, 8, mask);
  for (i = 0; i < 32; i++) session_key[i] = (uint8_t)(wrapped[i] ^ mask[i]);
  flm_wipe(mask, sizeof mask); /* mask XOR the wrapped key (public) is the session key */
}

const char *flm_strerror(int rc) {
  switch (rc) {
  case FLM_OK: return "OK";
  case FLM_E_TRUNCATED: return "TRUNCATED";
  case FLM_E_BAD_MAGIC: return "BAD_MAGIC";
  case FLM_E_BAD_VERSION: return "BAD_VERSION";
  case FLM_E_UNKNOWN_TYPE: return "UNKNOWN_TYPE";
  case FLM_E_BAD_FLAGS: return "BAD_FLAGS";
  case FLM_E_BAD_AUTH_MODE: return "BAD_AUTH_MODE";
  case FLM_E_BAD_LENGTH: return "BAD_LENGTH";
  case FLM_E_TRAILING_BYTES: return "TRAILING_BYTES";
  case FLM_E_OUT_OF_RANGE: return "OUT_OF_RANGE";
  case FLM_E_BAD_STRING: return "BAD_STRING";
  case FLM_E_TOO_LARGE: return "TOO_LARGE";
  case FLM_E_BAD_TAG: return "BAD_TAG";
  case FLM_E_ARG: return "ARG";
  case FLM_E_SOCKET: return "SOCKET";
  case FLM_E_TIMEOUT: return "TIMEOUT";
  case FLM_E_SERVER: return "SERVER";
  case FLM_E_NO_TOKEN: return "NO_TOKEN";
  case FLM_E_STATE: return "STATE";
  default: return "UNKNOWN";
  }
}

const char *flm_code_name(unsigned c) {
  switch (c) {
  case 0: return "OK";
  case 1: return "BAD_REQUEST";
  case 2: return "UNSUPPORTED";
  case 16: return "TOKEN_BAD_SIGNATURE";
  case 17: return "TOKEN_UNKNOWN_KEY";
  case 18: return "TOKEN_EXPIRED";
  case 19: return "TOKEN_FUTURE";
  case 20: return "TOKEN_REVOKED";
  case 21: return "TOKEN_WRONG_HOST";
  case 22: return "TOKEN_MALFORMED";
  case 32: return "CLOCK_SKEW";
  case 33: return "REPLAY";
  case 34: return "UNKNOWN_SESSION";
  case 35: return "NEED_PADDING";
  case 36: return "WRONG_MODE";
  case 48: return "NO_SUCH_FEATURE";
  case 49: return "NO_SUCH_VERSION";
  case 50: return "FEATURE_EXPIRED";
  case 51: return "NO_SEATS";
  case 52: return "USER_MAX";
  case 53: return "HOST_MAX";
  case 54: return "QUEUE_FULL";
  case 55: return "NOT_HOLDER";
  case 56: return "IN_GRACE";
  case 57: return "ALREADY_RECLAIMED";
  case 58: return "SESSION_LIMIT";
  case 59: return "TICKET_BAD";
  case 60: return "REMOVED";
  case 64: return "RATE_LIMITED";
  case 65: return "BUSY";
  case 66: return "SHUTTING_DOWN";
  case 67: return "NOT_PERMITTED";
  case 68: return "INTERNAL";
  default: return "UNKNOWN"; /* a literal: safe from any thread, never overwritten */
  }
}

/* ==== client =========================================================================== */

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Our clock corrected by the offset learned from verified replies (protocol.md 10). */
static uint64_t stamp(const flm_client *c) {
  int64_t t = wall_ms() + c->clock_offset;
  return t < 0 ? 0 : (uint64_t)t;
}

/* The kernel's CSPRNG without a file descriptor: works in a chroot or after the
 * application has run out of descriptors, and cannot be starved by a replaced /dev node. */
static int random_bytes(void *p, size_t n) {
  uint8_t *b = (uint8_t *)p;
  while (n > 0) {
    size_t k = n < 256 ? n : 256; /* getentropy's limit per call */
    if (getentropy(b, k) != 0) return FLM_E_SOCKET;
    b += k;
    n -= k;
  }
  return FLM_OK;
}

static uint32_t rng_next(flm_client *c) { /* xorshift64*, for jitter only */
  c->rng ^= c->rng >> 12;
  c->rng ^= c->rng << 25;
  c->rng ^= c->rng >> 27;
  return (uint32_t)((c->rng * 2685821657736338717ull) >> 32);
}

static int copy_cstr(char *dst, size_t cap, const char *src) {
  uint8_t n;
  return flm_str_set(dst, &n, cap, src ? src : "");
}

static int resolve(flm_client *c, unsigned i, const char *spec, int family) {
  char host[256];
  const char *port = "27400", *colon;
  struct addrinfo hints, *res = NULL;
  size_t hl;
  if (spec[0] == '[') {
    const char *end = strchr(spec, ']');
    if (!end) return FLM_E_ARG;
    hl = (size_t)(end - spec - 1);
    if (hl >= sizeof host) return FLM_E_ARG;
    memcpy(host, spec + 1, hl);
    host[hl] = '\0';
    if (end[1] == ':') port = end + 2;
    else if (end[1] != '\0') return FLM_E_ARG;
  } else {
    colon = strrchr(spec, ':');
    if (colon && strchr(spec, ':') == colon) {
      hl = (size_t)(colon - spec);
      port = colon + 1;
    } else {
      hl = strlen(spec);
    }
    if (hl >= sizeof host) return FLM_E_ARG;
    memcpy(host, spec, hl);
    host[hl] = '\0';
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  if (getaddrinfo(host, port, &hints, &res) != 0 || !res) return FLM_E_SOCKET;
  if (res->ai_addrlen > sizeof c->addrs[i]) {
    freeaddrinfo(res);
    return FLM_E_SOCKET;
  }
  memcpy(&c->addrs[i], res->ai_addr, res->ai_addrlen);
  c->addr_lens[i] = (socklen_t)res->ai_addrlen;
  freeaddrinfo(res);
  return FLM_OK;
}

/* The user a seat is counted against: a made-up name would let every such client share
 * one per-user cap, so with none to be found flm_init refuses (FLM_E_ARG). */
static const char *login_name(void) {
  const char *u = getenv("USER");
  struct passwd *pw;
  if (u && *u) return u;
  u = getenv("LOGNAME");
  if (u && *u) return u;
  pw = getpwuid(getuid());
  return pw ? pw->pw_name : NULL;
}

int flm_init(flm_client *c, const flm_config *cfg) {
  unsigned i;
  const char *user;
  char hostbuf[256];
  if (!c || !cfg || !cfg->cred_id || !cfg->cred_key || cfg->n_servers < 1 ||
      cfg->n_servers > FLM_MAX_SERVERS)
    return FLM_E_ARG;
  memset(c, 0, sizeof *c);
  c->fd = -1;
  if (copy_cstr(c->cred_id, FLM_CAP_NAME, cfg->cred_id) ||
      copy_cstr(c->vendor, FLM_CAP_NAME, cfg->vendor) ||
      copy_cstr(c->program, FLM_CAP_NAME, cfg->program) ||
      copy_cstr(c->version, FLM_CAP_VERSION, cfg->version))
    return FLM_E_ARG;
  user = cfg->user ? cfg->user : login_name();
  if (!user || !*user || copy_cstr(c->user, FLM_CAP_NAME, user)) return FLM_E_ARG;
  if (cfg->host) {
    if (copy_cstr(c->host, FLM_CAP_NAME, cfg->host)) return FLM_E_ARG;
  } else {
    if (gethostname(hostbuf, sizeof hostbuf) != 0) strcpy(hostbuf, "localhost");
    hostbuf[sizeof hostbuf - 1] = '\0';
    hostbuf[FLM_CAP_NAME] = '\0'; /* host names are ASCII: cutting keeps them valid */
    if (copy_cstr(c->host, FLM_CAP_NAME, hostbuf)) return FLM_E_ARG;
  }
  memcpy(c->cred_key, cfg->cred_key, 32);
  c->initial_ms = cfg->initial_ms ? cfg->initial_ms : 500;
  c->max_interval_ms = cfg->max_interval_ms ? cfg->max_interval_ms : 8000;
  c->total_ms = cfg->total_ms ? cfg->total_ms : 30000;
  c->upgrade_ms = cfg->upgrade_ms ? cfg->upgrade_ms : c->total_ms / 2;
  c->no_jitter = cfg->no_jitter;
  c->n_servers = cfg->n_servers;
  for (i = 0; i < cfg->n_servers; i++) {
    int family = i == 0 ? AF_UNSPEC : c->addrs[0].ss_family;
    if (!cfg->servers[i]) return FLM_E_ARG;
    TRY(resolve(c, i, cfg->servers[i], family));
  }
  TRY(random_bytes(&c->rng, sizeof c->rng));
  c->rng |= 1;
  c->next_request_id = rng_next(c);
  c->fd = socket(c->addrs[0].ss_family, SOCK_DGRAM, 0);
  if (c->fd < 0) return FLM_E_SOCKET;
  /* non-blocking: the receive loops drain the socket after poll() */
  if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) != 0) return FLM_E_SOCKET;
  return FLM_OK;
}

void flm_free(flm_client *c) {
  if (!c) return;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  flm_wipe(c->session_key, sizeof c->session_key);
  flm_wipe(c->cred_key, sizeof c->cred_key);
  c->have_token = 0;
}

int flm_fd(const flm_client *c) { return c ? c->fd : -1; }

int flm_authenticate(flm_client *c, flm_datagram *d, int mode, uint8_t *buf, size_t cap,
                     size_t *len) {
  const uint8_t *key;
  if (!c || !d || !buf || !len) return FLM_E_ARG;
  d->flags = 0;
  d->auth = (uint8_t)mode;
  if (mode == FLM_AUTH_CREDENTIAL) {
    TRY(FLM_SET(d->cred_id, c->cred_id));
    TRY(random_bytes(d->nonce, FLM_NONCE_LEN));
    d->session_id = 0;
    key = c->cred_key;
  } else if (mode == FLM_AUTH_TOKEN || mode == FLM_AUTH_SESSION) {
    if (!c->have_token) return FLM_E_NO_TOKEN;
    if (mode == FLM_AUTH_TOKEN) {
      d->token_len = c->token_len;
      memcpy(d->token, c->token, c->token_len);
    }
    d->session_id = c->session_id;
    key = c->session_key;
  } else {
    return FLM_E_ARG;
  }
  TRY(flm_encode(d, buf, cap, len));
  return flm_sign(buf, *len, key);
}

/* Replay window over the server's seq in TEST_CONN (1024 wide, protocol.md 10). Returns 1
 * for a new seq (and records it), 0 for a repeat or one below the window. */
static int srv_window(flm_client *c, uint32_t seq) {
  uint32_t diff;
  unsigned i;
  if (c->srv_any && seq <= c->srv_top) {
    diff = c->srv_top - seq;
    if (diff >= 1024) return 0;
    if (c->srv_bits[diff / 64] >> (diff % 64) & 1) return 0;
    c->srv_bits[diff / 64] |= (uint64_t)1 << (diff % 64);
    return 1;
  }
  diff = c->srv_any ? seq - c->srv_top : 1024;
  if (diff >= 1024) {
    memset(c->srv_bits, 0, sizeof c->srv_bits);
  } else {
    /* shift the whole bitmap up by diff bits (bit i = seq top - i) */
    unsigned words = diff / 64, bits = diff % 64;
    for (i = 16; i-- > 0;) {
      uint64_t v = i >= words ? c->srv_bits[i - words] << bits : 0;
      if (bits && i >= words + 1) v |= c->srv_bits[i - words - 1] >> (64 - bits);
      c->srv_bits[i] = v;
    }
  }
  c->srv_bits[0] |= 1;
  c->srv_top = seq;
  c->srv_any = 1;
  return 1;
}

/* Answers a TEST_CONN (already decoded into *d from raw[0..len)) with TEST_CONN_ACK. */
static int answer_test_conn(flm_client *c, const uint8_t *raw, size_t len, flm_datagram *d,
                            const struct sockaddr *from, socklen_t fromlen) {
  uint8_t nonce[8];
  size_t n;
  if (!c->have_token || d->auth != FLM_AUTH_SESSION || d->session_id != c->session_id) return 0;
  if (flm_verify(raw, len, c->session_key) != FLM_OK) return 0;
  if (!srv_window(c, d->seq)) {
    /* a byte-identical repeat gets the same answer again; anything else is ignored */
    if (c->last_ack_len && len == c->last_tc_len && memcmp(raw, c->last_tc, len) == 0)
      sendto(c->fd, c->last_ack, c->last_ack_len, 0, from, fromlen);
    return 0;
  }
  memcpy(nonce, d->body.test_conn.nonce, 8);
  d->type = FLM_TEST_CONN_ACK;
  d->flags = FLM_F_REPLY;
  d->auth = FLM_AUTH_SESSION;
  d->timestamp = stamp(c); /* request id, session id and seq stay as received */
  memcpy(d->body.test_conn_ack.nonce, nonce, 8);
  d->body.test_conn_ack.leases = (uint16_t)c->n_leases;
  if (flm_encode(d, c->last_ack, sizeof c->last_ack, &n) != FLM_OK) return 0;
  flm_sign(c->last_ack, n, c->session_key);
  c->last_ack_len = n;
  memcpy(c->last_tc, raw, len);
  c->last_tc_len = len;
  sendto(c->fd, c->last_ack, n, 0, from, fromlen);
  c->test_conns_answered++;
  return 1;
}

/* Receives one datagram into buf; 0 when nothing is waiting, -1 on error. */
static ssize_t recv_one(flm_client *c, uint8_t *buf, size_t cap, struct sockaddr_storage *from,
                        socklen_t *fromlen) {
  ssize_t n;
  *fromlen = sizeof *from;
  n = recvfrom(c->fd, buf, cap, 0, (struct sockaddr *)from, fromlen);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
  return n;
}

/* Handles a datagram that is not the awaited reply: TEST_CONN is answered, all else dropped. */
static int handle_unsolicited(flm_client *c, const uint8_t *raw, size_t n, flm_datagram *d,
                              struct sockaddr_storage *from, socklen_t fromlen) {
  if (d->type == FLM_TEST_CONN && d->flags == FLM_F_FROM_SERVER)
    return answer_test_conn(c, raw, n, d, (struct sockaddr *)from, fromlen);
  return 0;
}

static int is_token_error(unsigned code) { return code >= 16 && code <= 22; }

static void forget_session(flm_client *c) {
  c->have_token = 0;
  c->restoring = 0;
  c->n_leases = 0;
}

/* Builds the form of request *q to send next: mode 1 (fresh nonce), 2 or 3. Modes 2 and 3
 * take the next seq and a fresh timestamp; the request id stays (protocol.md 11). */
static int build(flm_client *c, flm_datagram *q, int mode, uint8_t *buf, size_t *n) {
  q->timestamp = stamp(c);
  if (mode == FLM_AUTH_CREDENTIAL) {
    q->seq = 0;
  } else {
    if (c->seq == 0xFFFFFFFFu) { /* the window would wrap: HELLO again (protocol.md 10) */
      forget_session(c);
      return FLM_E_NO_TOKEN;
    }
    q->seq = ++c->seq;
  }
  return flm_authenticate(c, q, mode, buf, FLM_MAX_DATAGRAM, n);
}

/*
 * One request/reply exchange with retransmission (protocol.md 11). The request *q has its
 * type and body set. Mode 1 (credential) when cred is set; otherwise mode 3 (mode 2 while
 * restoring), and a mode-3 request unanswered for upgrade_ms, or answered UNKNOWN_SESSION, is
 * sent again in mode 2 (same request id, next seq). On timeout the next server gets the
 * mode-2 form (a fresh HELLO for mode 1). A mode-2 request answered NEED_PADDING restored the
 * session unprocessed: it goes again in mode 3 as a new request. ERROR REPLAY (a restarted
 * server's replay floor in its seq) moves our seq above the floor and sends the same request
 * again. *r receives the verified
 * reply; *restored is set when a mode-2 form was answered (the server restored the session).
 * sk holds a HELLO_OK's unwrapped session key (the caller wipes it). limit_ms, when not 0,
 * caps the whole exchange, every form and server included.
 */
static int exchange(flm_client *c, flm_datagram *q, uint8_t want, int cred, flm_datagram *r,
                    int *restored, uint8_t sk[32], int64_t limit_ms) {
  uint8_t out[FLM_MAX_DATAGRAM];
  uint8_t in[FLM_MAX_DATAGRAM + 1];
  size_t out_n = 0;
  uint32_t seqs[4] = {0, 0, 0, 0};
  unsigned n_seqs = 0, tried = 0, rebuilds = 0;
  int mode, rc;
  int64_t t0, next, now, interval, budget, stop;

  stop = limit_ms > 0 ? mono_ms() + limit_ms : INT64_MAX;
  if (restored) *restored = 0;
  if (!cred && !c->have_token) return FLM_E_NO_TOKEN;
  q->request_id = c->next_request_id++;
  mode = cred ? FLM_AUTH_CREDENTIAL : c->restoring ? FLM_AUTH_TOKEN : FLM_AUTH_SESSION;
  TRY(build(c, q, mode, out, &out_n));
  seqs[n_seqs++] = q->seq;
  budget = mode == FLM_AUTH_SESSION ? c->upgrade_ms : c->total_ms;

restart:
  t0 = mono_ms();
  next = t0;
  interval = c->initial_ms;
  for (;;) {
    struct pollfd p;
    int64_t wake;
    now = mono_ms();
    if (now >= stop) return FLM_E_TIMEOUT;
    if (now - t0 >= budget) {
      if (mode == FLM_AUTH_SESSION) {
        /* the server may have lost the session: present the token, same server, for the
         * rest of the budget */
        mode = FLM_AUTH_TOKEN;
        budget = c->total_ms > c->upgrade_ms ? c->total_ms - c->upgrade_ms : c->initial_ms;
      } else {
        budget = c->total_ms;
        /* failover: the next server in the list */
        if (++tried >= c->n_servers) return FLM_E_TIMEOUT;
        c->cur = (c->cur + 1) % c->n_servers;
        if (cred) q->request_id = c->next_request_id++; /* a new first contact */
        else c->restoring = 1;
      }
      rc = build(c, q, mode, out, &out_n);
      if (rc != FLM_OK) return rc == FLM_E_TOO_LARGE || rc == FLM_E_ARG ? FLM_E_TIMEOUT : rc;
      if (n_seqs < 4) seqs[n_seqs++] = q->seq;
      goto restart;
    }
    if (now >= next) {
      int64_t j = interval;
      sendto(c->fd, out, out_n, 0, (struct sockaddr *)&c->addrs[c->cur], c->addr_lens[c->cur]);
      if (!c->no_jitter) j = interval * (75 + (int64_t)(rng_next(c) % 51)) / 100;
      next = now + j;
      interval = interval * 2 > (int64_t)c->max_interval_ms ? (int64_t)c->max_interval_ms
                                                            : interval * 2;
    }
    wake = next < t0 + budget ? next : t0 + budget;
    if (wake > stop) wake = stop;
    p.fd = c->fd;
    p.events = POLLIN;
    p.revents = 0;
    rc = poll(&p, 1, wake > now ? (int)(wake - now) : 0);
    if (rc < 0 && errno != EINTR) return FLM_E_SOCKET;
    if (rc <= 0) continue;
    for (;;) {
      struct sockaddr_storage from;
      socklen_t fromlen;
      ssize_t got = recv_one(c, in, sizeof in, &from, &fromlen);
      const uint8_t *key;
      unsigned i, seq_ok = 0;
      if (got <= 0) break;
      if (flm_decode(in, (size_t)got, r) != FLM_OK) continue;
      if (r->flags != (FLM_F_REPLY | FLM_F_FROM_SERVER)) {
        handle_unsolicited(c, in, (size_t)got, r, &from, fromlen);
        continue;
      }
      /* match by request id and type (a cached reply may carry an earlier form's seq) */
      if (r->request_id != q->request_id || (r->type != want && r->type != FLM_ERROR)) continue;
      if (cred) {
        if (r->type == FLM_HELLO_OK) {
          flm_unwrap_key(c->cred_key, q->nonce, r->session_id, r->body.hello_ok.wrapped_key, sk);
          key = sk;
        } else {
          if (r->session_id != 0) continue;
          key = c->cred_key;
        }
      } else {
        for (i = 0; i < n_seqs; i++) seq_ok |= r->seq == seqs[i];
        /* an ERROR REPLAY carries the server's replay floor as its seq, not one of ours */
        if (r->session_id != c->session_id || (!seq_ok && r->type != FLM_ERROR)) continue;
        key = c->session_key;
      }
      if (flm_verify(in, (size_t)got, key) != FLM_OK) continue;
      c->clock_offset = (int64_t)r->timestamp - wall_ms();
      if (r->type == FLM_HELLO_OK) memcpy(c->session_key, sk, 32);
      if (!cred && mode == FLM_AUTH_TOKEN &&
          !(r->type == FLM_ERROR && is_token_error(r->body.error.code))) {
        c->restoring = 0; /* the token verified: the server knows the session again */
        if (restored) *restored = 1;
      }
      if (r->type != FLM_ERROR) return FLM_OK;
      c->error_code = r->body.error.code;
      c->error_retry_ms = r->body.error.retry_after_ms;
      memcpy(c->error_message, r->body.error.message.s, (size_t)r->body.error.message.len + 1);
      if (cred || ++rebuilds > 3) return FLM_E_SERVER; /* no ping-pong between the forms */
      if (r->body.error.code == FLM_CODE_UNKNOWN_SESSION && mode == FLM_AUTH_SESSION) {
        /* the server lost us: same request, token attached, right away */
        mode = FLM_AUTH_TOKEN;
        budget = c->total_ms;
      } else if (r->body.error.code == FLM_CODE_NEED_PADDING && mode == FLM_AUTH_TOKEN) {
        /* restored but not processed (reply would not fit): a new request in mode 3 */
        mode = FLM_AUTH_SESSION;
        q->request_id = c->next_request_id++;
        n_seqs = 0;
        budget = c->upgrade_ms;
      } else if (r->body.error.code == FLM_CODE_REPLAY) {
        /* a restarted server's replay floor: continue above it, same request id, so a copy
         * it processed before the restart gets that outcome (protocol.md 10) */
        if (r->seq > c->seq) c->seq = r->seq;
        budget = mode == FLM_AUTH_SESSION ? c->upgrade_ms : c->total_ms;
      } else if (is_token_error(r->body.error.code)) {
        forget_session(c);
        return FLM_E_NO_TOKEN;
      } else {
        return FLM_E_SERVER;
      }
      TRY(build(c, q, mode, out, &out_n));
      if (n_seqs < 4) seqs[n_seqs++] = q->seq;
      goto restart;
    }
  }
}

static int transact_for(flm_client *c, flm_datagram *q, uint8_t want, int cred,
                        flm_datagram *r, int *restored, int64_t limit_ms) {
  uint8_t sk[32];
  int rc = exchange(c, q, want, cred, r, restored, sk, limit_ms);
  flm_wipe(sk, sizeof sk);
  return rc;
}

static int transact(flm_client *c, flm_datagram *q, uint8_t want, int cred, flm_datagram *r,
                    int *restored) {
  return transact_for(c, q, want, cred, r, restored, 0);
}

int flm_get_token(flm_client *c) {
  flm_datagram q, r;
  size_t n;
  int rc;
  if (!c || c->fd < 0) return FLM_E_ARG;
  memset(&q, 0, sizeof q);
  q.type = FLM_HELLO;
  q.auth = FLM_AUTH_CREDENTIAL;
  TRY(FLM_SET(q.body.hello.vendor, c->vendor));
  TRY(FLM_SET(q.body.hello.program, c->program));
  TRY(FLM_SET(q.body.hello.version, c->version));
  TRY(FLM_SET(q.body.hello.user, c->user));
  TRY(FLM_SET(q.body.hello.host, c->host));
  TRY(FLM_SET(q.cred_id, c->cred_id));
  /* pad so the whole HELLO is at least 600 bytes (anti-amplification, protocol.md 12) */
  {
    uint8_t tmp[FLM_MAX_DATAGRAM];
    TRY(flm_encode(&q, tmp, sizeof tmp, &n));
    q.body.hello.padding_len = (uint16_t)(n < FLM_MIN_HELLO ? FLM_MIN_HELLO - n : 0);
  }
  rc = transact(c, &q, FLM_HELLO_OK, 1, &r, NULL);
  if (rc != FLM_OK) return rc;
  if (r.body.hello_ok.token_len == 0) return FLM_E_OUT_OF_RANGE;
  c->token_len = r.body.hello_ok.token_len;
  memcpy(c->token, r.body.hello_ok.token, c->token_len);
  c->session_id = r.session_id;
  c->token_expires = r.body.hello_ok.token_expires;
  c->heartbeat_ms = r.body.hello_ok.heartbeat_ms;
  c->seq = 0;
  c->have_token = 1;
  c->restoring = 0;
  c->n_leases = 0; /* leases belong to the old session's token */
  c->srv_any = 0;
  c->last_ack_len = c->last_tc_len = 0;
  memset(c->srv_bits, 0, sizeof c->srv_bits);
  return FLM_OK;
}

static int session_request(flm_client *c, flm_datagram *q, uint8_t type, uint8_t want,
                           flm_datagram *r, int *restored) {
  q->type = type;
  q->flags = 0;
  return transact(c, q, want, 0, r, restored);
}

/* After a reply to the mode-2 form (the server restored the session from the token), or a
 * HEARTBEAT_ACK counting fewer leases than we hold: give the server our leases back before
 * its restart grace ends (protocol.md 15, RESTORING). */
static void after_restore(flm_client *c, int restored) {
  if (restored && c->n_leases > 0) {
    c->reclaimed = 1;
    flm_reclaim(c, NULL);
  }
}

int flm_checkout(flm_client *c, const char *feature, const char *version, uint16_t count,
                 uint8_t options, flm_checkout_reply_body *out) {
  flm_datagram q, r;
  int rc, restored = 0;
  if (!c || !feature || !version) return FLM_E_ARG;
  if (c->n_leases >= FLM_MAX_LEASES) return FLM_E_STATE;
  memset(&q, 0, sizeof q);
  if (FLM_SET(q.body.checkout.feature, feature) || FLM_SET(q.body.checkout.version, version))
    return FLM_E_ARG;
  if (count < 1 || count > 1000 || options > 1) return FLM_E_ARG;
  q.body.checkout.count = count;
  q.body.checkout.options = options;
  rc = session_request(c, &q, FLM_CHECKOUT, FLM_CHECKOUT_REPLY, &r, &restored);
  if (rc != FLM_OK) return rc;
  after_restore(c, restored); /* the older leases first; the new one needs no reclaim */
  if (r.body.checkout_reply.status == FLM_GRANTED) {
    flm_lease *l;
    if (c->n_leases >= FLM_MAX_LEASES) return FLM_E_STATE;
    l = &c->leases[c->n_leases++];
    l->lease_id = r.body.checkout_reply.lease_id;
    l->feature = r.body.checkout_reply.feature;
    l->count = r.body.checkout_reply.count;
    l->ticket = r.body.checkout_reply.ticket;
  }
  if (r.body.checkout_reply.heartbeat_ms) c->heartbeat_ms = r.body.checkout_reply.heartbeat_ms;
  if (out) *out = r.body.checkout_reply;
  return FLM_OK;
}

int flm_heartbeat(flm_client *c, flm_heartbeat_ack_body *out) {
  flm_datagram q, r;
  int rc, restored = 0;
  if (!c) return FLM_E_ARG;
  memset(&q, 0, sizeof q);
  rc = session_request(c, &q, FLM_HEARTBEAT, FLM_HEARTBEAT_ACK, &r, &restored);
  if (rc != FLM_OK) return rc;
  if (r.body.heartbeat_ack.heartbeat_ms) c->heartbeat_ms = r.body.heartbeat_ack.heartbeat_ms;
  if (out) *out = r.body.heartbeat_ack;
  /* Fewer leases than we hold: the server restarted from its durable state (it knows the
   * session, not yet our leases) or lost them; re-present the tickets. */
  after_restore(c, restored || r.body.heartbeat_ack.leases < c->n_leases);
  return FLM_OK;
}

static void drop_lease(flm_client *c, unsigned i) {
  c->leases[i] = c->leases[c->n_leases - 1];
  c->n_leases--;
}

int flm_checkin(flm_client *c, uint64_t lease_id, const char *feature, flm_checkin_ok_body *out) {
  flm_datagram q, r;
  int rc, restored = 0;
  unsigned i, found = FLM_MAX_LEASES;
  if (!c) return FLM_E_ARG;
  memset(&q, 0, sizeof q);
  if (lease_id != 0) {
    for (i = 0; i < c->n_leases; i++)
      if (c->leases[i].lease_id == lease_id) found = i;
    if (found == FLM_MAX_LEASES) return FLM_E_STATE;
  } else if (!feature || FLM_SET(q.body.checkin.feature, feature)) {
    return FLM_E_ARG;
  }
  q.body.checkin.lease_id = lease_id;
  rc = session_request(c, &q, FLM_CHECKIN, FLM_CHECKIN_OK, &r, &restored);
  if (rc == FLM_E_SERVER && c->error_code == FLM_CODE_NOT_HOLDER && found != FLM_MAX_LEASES)
    drop_lease(c, found); /* the server no longer has it: nothing to give back */
  if (rc != FLM_OK) return rc;
  if (found != FLM_MAX_LEASES) drop_lease(c, found);
  if (out) *out = r.body.checkin_ok;
  after_restore(c, restored);
  return FLM_OK;
}

int flm_reclaim(flm_client *c, flm_reclaim_reply_body *out) {
  flm_datagram q, r;
  uint8_t keep[FLM_MAX_LEASES];
  unsigned start = 0, i, k;
  int rc, restored = 0;
  if (!c) return FLM_E_ARG;
  if (!c->have_token) return FLM_E_NO_TOKEN;
  memset(keep, 1, sizeof keep);
  memset(&c->last_reclaim, 0, sizeof c->last_reclaim);
  while (start < c->n_leases) {
    /* as many tickets as fit (at most 8), sized for the mode-2 form so it can always be
     * re-presented with the token */
    size_t size = FLM_HEADER_LEN + 2 + c->token_len + 1 + FLM_TAG_LEN;
    unsigned cnt = 0;
    memset(&q, 0, sizeof q);
    while (start + cnt < c->n_leases && cnt < FLM_CAP_TICKETS &&
           size + 2 + c->leases[start + cnt].ticket.len <= FLM_MAX_DATAGRAM) {
      size += 2 + c->leases[start + cnt].ticket.len;
      q.body.reclaim.tickets[cnt] = c->leases[start + cnt].ticket;
      cnt++;
    }
    if (cnt == 0) return FLM_E_TOO_LARGE;
    q.body.reclaim.n_tickets = (uint8_t)cnt;
    rc = session_request(c, &q, FLM_RECLAIM, FLM_RECLAIM_REPLY, &r, &restored);
    if (rc != FLM_OK) return rc;
    for (i = 0; i < cnt; i++) {
      unsigned code = i < r.body.reclaim_reply.n_results ? r.body.reclaim_reply.results[i].code
                                                         : FLM_CODE_TICKET_BAD;
      if (code != FLM_CODE_OK && code != FLM_CODE_ALREADY_RECLAIMED) keep[start + i] = 0;
      if (i < r.body.reclaim_reply.n_results && c->last_reclaim.n_results < FLM_CAP_TICKETS)
        c->last_reclaim.results[c->last_reclaim.n_results++] = r.body.reclaim_reply.results[i];
    }
    start += cnt;
  }
  for (i = 0, k = 0; i < c->n_leases; i++)
    if (keep[i]) c->leases[k++] = c->leases[i];
  c->n_leases = k;
  if (out) *out = c->last_reclaim;
  return FLM_OK;
}

int flm_ping(flm_client *c, flm_pong_body *out) {
  flm_datagram q, r;
  int rc;
  if (!c) return FLM_E_ARG;
  memset(&q, 0, sizeof q);
  q.type = FLM_PING;
  q.body.ping.payload_len = 64; /* PONG is at most 110 bytes: keep the PING larger */
  rc = transact(c, &q, FLM_PONG, !c->have_token, &r, NULL);
  if (rc == FLM_OK && out) *out = r.body.pong;
  return rc;
}

int flm_poll(flm_client *c, int timeout_ms) {
  flm_datagram d;
  uint8_t in[FLM_MAX_DATAGRAM + 1];
  int64_t end;
  int answered = 0;
  if (!c || c->fd < 0) return FLM_E_ARG;
  end = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  for (;;) {
    struct pollfd p;
    int64_t now = mono_ms();
    int rc;
    p.fd = c->fd;
    p.events = POLLIN;
    p.revents = 0;
    rc = poll(&p, 1, end > now ? (int)(end - now) : 0);
    if (rc < 0 && errno != EINTR) return FLM_E_SOCKET;
    if (rc > 0) {
      for (;;) {
        struct sockaddr_storage from;
        socklen_t fromlen;
        ssize_t got = recv_one(c, in, sizeof in, &from, &fromlen);
        if (got <= 0) break;
        if (flm_decode(in, (size_t)got, &d) != FLM_OK) continue;
        answered += handle_unsolicited(c, in, (size_t)got, &d, &from, fromlen);
      }
    }
    if (mono_ms() >= end) return answered;
  }
}

int flm_close(flm_client *c) {
  int first = FLM_OK;
  if (!c) return FLM_E_ARG;
  while (c->have_token && c->n_leases > 0) {
    int rc = flm_checkin(c, c->leases[c->n_leases - 1].lease_id, NULL, NULL);
    if (rc != FLM_OK) {
      if (first == FLM_OK) first = rc;
      if (c->n_leases > 0 && rc != FLM_E_NO_TOKEN) c->n_leases--;
    }
  }
  if (c->have_token) {
    /* End the session (protocol.md 5.8): its queue entries and any seat assigned from a
     * queue but not picked up go at once, and it stops counting against the session caps.
     * Best effort, 1 s: without an answer the server reaps it later anyway. */
    flm_datagram q, r;
    memset(&q, 0, sizeof q);
    q.type = FLM_CHECKIN;
    transact_for(c, &q, FLM_CHECKIN_OK, 0, &r, NULL, 1000);
  }
  flm_free(c);
  return first;
}
