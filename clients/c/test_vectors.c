/*
 * test_vectors.c - known-answer harness for the C codec and crypto, driven by
 * test/c/vectors.test.ts (which compares every line it prints with the reference).
 *
 *   test_vectors hmac KEYHEX DATAHEX        HMAC-SHA256, hex
 *   test_vectors sha256 DATAHEX             SHA-256, hex
 *   test_vectors unwrap CREDKEY NONCE HELLO_OK_HEX
 *                                           session key unwrapped from HELLO_OK, and
 *                                           whether HELLO_OK verifies under it
 *   test_vectors vectors < lines "KEYHEX DATAHEX"
 *                                           per line: one JSON object with the decode
 *                                           result, every decoded field, the tag check under
 *                                           KEY, and the datagram re-encoded and re-signed
 *   test_vectors check < lines "KEYHEX DATAHEX"
 *                                           pass/fail per vector (make test-vectors)
 *   test_vectors decode < lines "HEX"       per line: the decode result name
 *   test_vectors codes                      "NUMBER NAME" for every wire code (0..65535)
 *                                           flm_code_name knows (test/c/codes.test.ts)
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "floatlm.h"

static int unhex(const char *s, uint8_t *out, size_t cap, size_t *n) {
  size_t len = strlen(s), i;
  if (len % 2 || len / 2 > cap) return -1;
  for (i = 0; i < len / 2; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
    out[i] = (uint8_t)v;
  }
  *n = len / 2;
  return 0;
}

static void hex(const uint8_t *b, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) printf("%02x", b[i]);
}

static void jstr(const char *s, size_t n) {
  size_t i;
  putchar('"');
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}
#define JS(f) jstr((f).s, (f).len)

static void jhex(const uint8_t *b, size_t n) {
  putchar('"');
  hex(b, n);
  putchar('"');
}

static void body_json(const flm_datagram *d) {
  unsigned i;
  switch (d->type) {
  case FLM_HELLO: {
    const flm_hello_body *b = &d->body.hello;
    printf("{\"vendor\":"); JS(b->vendor);
    printf(",\"program\":"); JS(b->program);
    printf(",\"version\":"); JS(b->version);
    printf(",\"user\":"); JS(b->user);
    printf(",\"host\":"); JS(b->host);
    printf(",\"padding\":"); jhex(b->padding, b->padding_len);
    printf("}");
    break;
  }
  case FLM_HELLO_OK: {
    const flm_hello_ok_body *b = &d->body.hello_ok;
    printf("{\"token\":"); jhex(b->token, b->token_len);
    printf(",\"wrappedKey\":"); jhex(b->wrapped_key, 32);
    printf(",\"tokenExpires\":%llu,\"heartbeatMs\":%lu}", (unsigned long long)b->token_expires,
           (unsigned long)b->heartbeat_ms);
    break;
  }
  case FLM_CHECKOUT: {
    const flm_checkout_body *b = &d->body.checkout;
    printf("{\"feature\":"); JS(b->feature);
    printf(",\"version\":"); JS(b->version);
    printf(",\"count\":%u,\"options\":%u}", b->count, b->options);
    break;
  }
  case FLM_CHECKOUT_REPLY: {
    const flm_checkout_reply_body *b = &d->body.checkout_reply;
    printf("{\"status\":%u,\"feature\":", b->status); JS(b->feature);
    printf(",\"leaseId\":\"%llu\",\"count\":%u,\"ticket\":", (unsigned long long)b->lease_id,
           b->count);
    jhex(b->ticket.b, b->ticket.len);
    printf(",\"heartbeatMs\":%lu,\"position\":%u,\"queueLength\":%u,\"reason\":%u,"
           "\"retryAfterMs\":%lu}",
           (unsigned long)b->heartbeat_ms, b->position, b->queue_length, b->reason,
           (unsigned long)b->retry_after_ms);
    break;
  }
  case FLM_HEARTBEAT:
    printf("{}");
    break;
  case FLM_HEARTBEAT_ACK:
    printf("{\"leases\":%u,\"queued\":%u,\"heartbeatMs\":%lu}", d->body.heartbeat_ack.leases,
           d->body.heartbeat_ack.queued, (unsigned long)d->body.heartbeat_ack.heartbeat_ms);
    break;
  case FLM_CHECKIN:
    printf("{\"leaseId\":\"%llu\",\"feature\":", (unsigned long long)d->body.checkin.lease_id);
    JS(d->body.checkin.feature);
    printf("}");
    break;
  case FLM_CHECKIN_OK:
    printf("{\"leaseId\":\"%llu\",\"released\":%u}",
           (unsigned long long)d->body.checkin_ok.lease_id, d->body.checkin_ok.released);
    break;
  case FLM_TEST_CONN:
    printf("{\"nonce\":"); jhex(d->body.test_conn.nonce, 8);
    printf("}");
    break;
  case FLM_TEST_CONN_ACK:
    printf("{\"nonce\":"); jhex(d->body.test_conn_ack.nonce, 8);
    printf(",\"leases\":%u}", d->body.test_conn_ack.leases);
    break;
  case FLM_STATUS:
    printf("{\"page\":%u,\"feature\":", d->body.status.page);
    JS(d->body.status.feature);
    printf("}");
    break;
  case FLM_STATUS_REPLY: {
    const flm_status_reply_body *b = &d->body.status_reply;
    printf("{\"page\":%u,\"pages\":%u,\"snapshot\":%lu,\"records\":[", b->page, b->pages,
           (unsigned long)b->snapshot);
    for (i = 0; i < b->n_records; i++) {
      const flm_record *r = &b->records[i];
      if (i) putchar(',');
      printf("{\"kind\":%u", r->kind);
      if (r->kind == FLM_REC_FEATURE) {
        printf(",\"name\":"); JS(r->feature);
        printf(",\"version\":"); JS(r->version);
        printf(",\"vendor\":"); JS(r->vendor);
        printf(",\"expires\":%llu,\"count\":%lu,\"inUse\":%lu,\"queued\":%lu,\"issued\":%lu,"
               "\"denied\":%lu}",
               (unsigned long long)r->expires, (unsigned long)r->count,
               (unsigned long)r->in_use, (unsigned long)r->queued, (unsigned long)r->issued,
               (unsigned long)r->denied);
      } else if (r->kind == FLM_REC_SERVER) {
        printf(",\"name\":"); JS(r->name);
        printf(",\"state\":%u,\"since\":%llu,\"self\":%u}", r->state,
               (unsigned long long)r->since, r->self);
      } else if (r->kind == FLM_REC_RESERVATION) {
        printf(",\"feature\":"); JS(r->feature);
        printf(",\"type\":%u,\"name\":", r->res_type); JS(r->name);
        printf(",\"count\":%lu,\"inUse\":%lu}", (unsigned long)r->count,
               (unsigned long)r->in_use);
      } else {
        printf(",\"feature\":"); JS(r->feature);
        printf(",\"user\":"); JS(r->user);
        printf(",\"host\":"); JS(r->host);
        printf(",\"since\":%llu", (unsigned long long)r->since);
        if (r->kind == FLM_REC_HOLDER) {
          printf(",\"count\":%lu,\"leaseId\":\"%llu\"", (unsigned long)r->count,
                 (unsigned long long)r->lease_id);
          printf(",\"program\":"); JS(r->program);
          printf(",\"version\":"); JS(r->version);
          putchar('}');
        } else
          printf(",\"position\":%u}", r->position);
      }
    }
    printf("]}");
    break;
  }
  case FLM_ADMIN: {
    const flm_admin_body *b = &d->body.admin;
    printf("{\"op\":%u,\"feature\":", b->op); JS(b->feature);
    printf(",\"user\":"); JS(b->user);
    printf(",\"host\":"); JS(b->host);
    printf(",\"leaseId\":\"%llu\"}", (unsigned long long)b->lease_id);
    break;
  }
  case FLM_ADMIN_REPLY:
    printf("{\"op\":%u,\"affected\":%lu,\"message\":", d->body.admin_reply.op,
           (unsigned long)d->body.admin_reply.affected);
    JS(d->body.admin_reply.message);
    printf("}");
    break;
  case FLM_PING:
    printf("{\"payload\":"); jhex(d->body.ping.payload, d->body.ping.payload_len);
    printf("}");
    break;
  case FLM_PONG:
    printf("{\"serverVersion\":"); JS(d->body.pong.server_version);
    printf(",\"uptimeMs\":%llu,\"state\":%u,\"graceLeftMs\":%lu}",
           (unsigned long long)d->body.pong.uptime_ms, d->body.pong.state,
           (unsigned long)d->body.pong.grace_left_ms);
    break;
  case FLM_RECLAIM:
    printf("{\"tickets\":[");
    for (i = 0; i < d->body.reclaim.n_tickets; i++) {
      if (i) putchar(',');
      printf("{\"ticket\":");
      jhex(d->body.reclaim.tickets[i].b, d->body.reclaim.tickets[i].len);
      printf("}");
    }
    printf("]}");
    break;
  case FLM_RECLAIM_REPLY:
    printf("{\"results\":[");
    for (i = 0; i < d->body.reclaim_reply.n_results; i++) {
      if (i) putchar(',');
      printf("{\"leaseId\":\"%llu\",\"code\":%u}",
             (unsigned long long)d->body.reclaim_reply.results[i].lease_id,
             d->body.reclaim_reply.results[i].code);
    }
    printf("]}");
    break;
  case FLM_ERROR:
    printf("{\"code\":%u,\"retryAfterMs\":%lu,\"message\":", d->body.error.code,
           (unsigned long)d->body.error.retry_after_ms);
    JS(d->body.error.message);
    printf("}");
    break;
  default:
    printf("null");
  }
}

static void auth_json(const flm_datagram *d) {
  if (d->flags != 0 || d->auth == FLM_AUTH_SESSION) {
    printf("{}");
  } else if (d->auth == FLM_AUTH_CREDENTIAL) {
    printf("{\"credId\":"); JS(d->cred_id);
    printf(",\"nonce\":"); jhex(d->nonce, FLM_NONCE_LEN);
    printf("}");
  } else if (d->auth == FLM_AUTH_TOKEN) {
    printf("{\"token\":"); jhex(d->token, d->token_len);
    printf("}");
  } else {
    printf("{\"keyId\":"); JS(d->key_id);
    printf("}");
  }
}

static flm_datagram d;
static char line[8192];

static int run_vectors(void) {
  uint8_t key[64], buf[FLM_MAX_DATAGRAM + 16], again[FLM_MAX_DATAGRAM];
  while (fgets(line, sizeof line, stdin)) {
    char *sp = strchr(line, ' '), *nl;
    size_t kn, n, m;
    int rc;
    if (!sp) continue;
    *sp = '\0';
    if ((nl = strchr(sp + 1, '\n'))) *nl = '\0';
    if (unhex(line, key, sizeof key, &kn) || kn != 32 ||
        unhex(sp + 1, buf, sizeof buf, &n)) {
      printf("{\"rc\":\"BAD_INPUT\"}\n");
      continue;
    }
    rc = flm_decode(buf, n, &d);
    printf("{\"rc\":\"%s\"", flm_strerror(rc));
    if (rc == FLM_OK) {
      printf(",\"verify\":\"%s\"", flm_strerror(flm_verify(buf, n, key)));
      printf(",\"type\":%u,\"flags\":%u,\"auth\":%u,\"requestId\":%lu,\"sessionId\":\"%llu\","
             "\"seq\":%lu,\"timestamp\":%llu,\"authBlock\":",
             d.type, d.flags, d.auth, (unsigned long)d.request_id,
             (unsigned long long)d.session_id, (unsigned long)d.seq,
             (unsigned long long)d.timestamp);
      auth_json(&d);
      printf(",\"body\":");
      body_json(&d);
      rc = flm_encode(&d, again, sizeof again, &m);
      if (rc == FLM_OK) rc = flm_sign(again, m, key);
      printf(",\"encode\":\"%s\",\"reencoded\":\"", flm_strerror(rc));
      if (rc == FLM_OK) hex(again, m);
      printf("\"");
    }
    printf("}\n");
  }
  return 0;
}

/* Lines "KEYHEX DATAHEX": decode, verify, re-encode, re-sign, compare. Exit 1 on a miss. */
static int run_check(void) {
  uint8_t key[64], buf[FLM_MAX_DATAGRAM + 16], again[FLM_MAX_DATAGRAM];
  unsigned total = 0, passed = 0;
  while (fgets(line, sizeof line, stdin)) {
    char *sp = strchr(line, ' '), *nl;
    size_t kn, n, m;
    if (!sp) continue;
    *sp = '\0';
    if ((nl = strchr(sp + 1, '\n'))) *nl = '\0';
    total++;
    if (unhex(line, key, sizeof key, &kn) || kn != 32 || unhex(sp + 1, buf, sizeof buf, &n) ||
        flm_decode(buf, n, &d) != FLM_OK || flm_verify(buf, n, key) != FLM_OK ||
        flm_encode(&d, again, sizeof again, &m) != FLM_OK || flm_sign(again, m, key) != FLM_OK ||
        m != n || memcmp(again, buf, n) != 0) {
      printf("FAIL vector %u\n", total);
      continue;
    }
    passed++;
  }
  printf("%u/%u vectors decode, verify and re-encode byte for byte\n", passed, total);
  return passed == total && total > 0 ? 0 : 1;
}

static int run_decode(void) {
  uint8_t buf[4096];
  while (fgets(line, sizeof line, stdin)) {
    size_t n;
    char *nl = strchr(line, '\n');
    if (nl) *nl = '\0';
    if (unhex(line, buf, sizeof buf, &n)) {
      printf("BAD_INPUT\n");
      continue;
    }
    printf("%s\n", flm_strerror(flm_decode(buf, n, &d)));
  }
  return 0;
}

int main(int argc, char **argv) {
  static uint8_t a[8192], b[8192];
  uint8_t out[32];
  size_t an, bn;
  if (argc >= 2 && strcmp(argv[1], "vectors") == 0) return run_vectors();
  if (argc >= 2 && strcmp(argv[1], "decode") == 0) return run_decode();
  if (argc >= 2 && strcmp(argv[1], "check") == 0) return run_check();
  if (argc == 2 && strcmp(argv[1], "codes") == 0) {
    unsigned c;
    for (c = 0; c <= 0xFFFF; c++)
      if (strcmp(flm_code_name(c), "UNKNOWN") != 0) printf("%u %s\n", c, flm_code_name(c));
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "hmac") == 0) {
    if (unhex(argv[2], a, sizeof a, &an) || unhex(argv[3], b, sizeof b, &bn)) return 2;
    flm_hmac_sha256(a, an, b, bn, out);
    hex(out, 32);
    putchar('\n');
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "sha256") == 0) {
    flm_sha256 s;
    if (unhex(argv[2], a, sizeof a, &an)) return 2;
    flm_sha256_init(&s);
    flm_sha256_update(&s, a, an);
    flm_sha256_final(&s, out);
    hex(out, 32);
    putchar('\n');
    return 0;
  }
  if (argc == 5 && strcmp(argv[1], "unwrap") == 0) {
    uint8_t cred[32], nonce[16], sk[32];
    size_t n;
    int rc;
    if (unhex(argv[2], cred, 32, &n) || n != 32 || unhex(argv[3], nonce, 16, &n) || n != 16 ||
        unhex(argv[4], a, sizeof a, &an))
      return 2;
    rc = flm_decode(a, an, &d);
    if (rc != FLM_OK || d.type != FLM_HELLO_OK) {
      printf("decode %s\n", flm_strerror(rc));
      return 1;
    }
    flm_unwrap_key(cred, nonce, d.session_id, d.body.hello_ok.wrapped_key, sk);
    hex(sk, 32);
    printf(" %s\n", flm_strerror(flm_verify(a, an, sk)));
    return 0;
  }
  fprintf(stderr, "usage: test_vectors hmac|sha256|unwrap|vectors|decode ...\n");
  return 2;
}
