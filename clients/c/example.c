/*
 * example.c - a small floatlm client: reads commands on stdin, prints one result line each.
 *
 *   FLOATLM_KEY=<64 hex> example CRED_ID SERVER[,SERVER...]
 *
 * Commands:
 *   hello                          get a token (HELLO, mode 1)
 *   checkout FEATURE VERSION [N] [wait]
 *   heartbeat                      (restores the session and reclaims after a restart)
 *   poll MS                        wait MS ms, answering TEST_CONN
 *   wait-test-conn MS              wait up to MS ms for the next TEST_CONN, answering it
 *   sleep MS                       wait MS ms without reading the socket (a hung client)
 *   reclaim                        re-present every lease ticket
 *   checkin [LEASE_ID]             give back one lease (default: the first held)
 *   ping
 *   leases                         the leases this client holds
 *   quit                           check every lease in and exit
 *
 * FLOATLM_RETRY=initial,cap,total,upgrade (ms) overrides the retransmission schedule.
 *
 * Results: "ok <command> key=value..." or "err <command> <FLM_E name> [code=<wire code name>]".
 * The key comes from the environment so it does not show in `ps`.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "floatlm.h"

static flm_client client;

static void fail(const char *cmd, int rc) {
  if (rc == FLM_E_SERVER || (rc == FLM_E_NO_TOKEN && client.error_code != 0))
    printf("err %s %s code=%s %s\n", cmd, flm_strerror(rc), flm_code_name(client.error_code),
           client.error_message);
  else
    printf("err %s %s\n", cmd, flm_strerror(rc));
  client.error_code = 0;
}

static void print_reclaim(const char *cmd, const flm_reclaim_reply_body *r) {
  unsigned i;
  printf("ok %s n=%u", cmd, r->n_results);
  for (i = 0; i < r->n_results; i++)
    printf(" lease=%llu code=%s", (unsigned long long)r->results[i].lease_id,
           flm_code_name(r->results[i].code));
  printf(" held=%u\n", client.n_leases);
}

int main(int argc, char **argv) {
  static char line[1024];
  static char servers[1024];
  uint8_t key[32];
  const char *keyhex = getenv("FLOATLM_KEY");
  flm_config cfg;
  char *s;
  unsigned i;
  int rc;

  if (argc != 3 || !keyhex || strlen(keyhex) != 64) {
    fprintf(stderr, "usage: FLOATLM_KEY=<64 hex> %s CRED_ID SERVER[,SERVER...]\n", argv[0]);
    return 2;
  }
  for (i = 0; i < 32; i++) {
    unsigned v;
    if (sscanf(keyhex + 2 * i, "%2x", &v) != 1) return 2;
    key[i] = (uint8_t)v;
  }
  memset(&cfg, 0, sizeof cfg);
  cfg.cred_id = argv[1];
  cfg.cred_key = key;
  snprintf(servers, sizeof servers, "%s", argv[2]);
  for (s = strtok(servers, ","); s && cfg.n_servers < FLM_MAX_SERVERS; s = strtok(NULL, ","))
    cfg.servers[cfg.n_servers++] = s;
  if (getenv("FLOATLM_RETRY")) /* initial,cap,total,upgrade in ms (tests shorten them) */
    sscanf(getenv("FLOATLM_RETRY"), "%u,%u,%u,%u", &cfg.initial_ms, &cfg.max_interval_ms,
           &cfg.total_ms, &cfg.upgrade_ms);
  cfg.vendor = "demo";
  cfg.program = "example";
  cfg.version = "1.0";
  rc = flm_init(&client, &cfg);
  memset(key, 0, sizeof key);
  if (rc != FLM_OK) {
    fprintf(stderr, "example: init failed: %s\n", flm_strerror(rc));
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  while (fgets(line, sizeof line, stdin)) {
    char *argv2[8];
    int n = 0;
    for (s = strtok(line, " \t\r\n"); s && n < 8; s = strtok(NULL, " \t\r\n")) argv2[n++] = s;
    if (n == 0) continue;
    if (strcmp(argv2[0], "hello") == 0) {
      rc = flm_get_token(&client);
      if (rc) fail("hello", rc);
      else
        printf("ok hello session=%llu heartbeat_ms=%lu\n", (unsigned long long)client.session_id,
               (unsigned long)client.heartbeat_ms);
    } else if (strcmp(argv2[0], "checkout") == 0 && n >= 3) {
      flm_checkout_reply_body r;
      uint16_t count = (uint16_t)(n >= 4 ? atoi(argv2[3]) : 1);
      uint8_t opts = n >= 5 && strcmp(argv2[4], "wait") == 0 ? FLM_OPT_WAIT : 0;
      rc = flm_checkout(&client, argv2[1], argv2[2], count, opts, &r);
      if (rc) fail("checkout", rc);
      else
        printf("ok checkout status=%u lease=%llu count=%u reason=%s position=%u retry_ms=%lu\n",
               r.status, (unsigned long long)r.lease_id, r.count, flm_code_name(r.reason),
               r.position, (unsigned long)r.retry_after_ms);
    } else if (strcmp(argv2[0], "heartbeat") == 0) {
      flm_heartbeat_ack_body r;
      client.reclaimed = 0;
      rc = flm_heartbeat(&client, &r);
      if (rc) fail("heartbeat", rc);
      else {
        printf("ok heartbeat leases=%u queued=%u heartbeat_ms=%lu restored=%d\n", r.leases,
               r.queued, (unsigned long)r.heartbeat_ms, client.reclaimed);
        if (client.reclaimed) print_reclaim("auto-reclaim", &client.last_reclaim);
      }
    } else if (strcmp(argv2[0], "poll") == 0 && n >= 2) {
      rc = flm_poll(&client, atoi(argv2[1]));
      if (rc < 0) fail("poll", rc);
      else printf("ok poll test_conn=%d total=%u\n", rc, client.test_conns_answered);
    } else if (strcmp(argv2[0], "wait-test-conn") == 0 && n >= 2) {
      int left = atoi(argv2[1]), got = 0;
      while (left > 0 && got == 0) {
        rc = flm_poll(&client, left < 100 ? left : 100);
        if (rc < 0) break;
        got = rc;
        left -= 100;
      }
      if (got > 0) printf("ok wait-test-conn test_conn=%d total=%u\n", got, client.test_conns_answered);
      else printf("err wait-test-conn TIMEOUT\n");
    } else if (strcmp(argv2[0], "sleep") == 0 && n >= 2) {
      struct timespec ts;
      long ms = atol(argv2[1]);
      ts.tv_sec = ms / 1000;
      ts.tv_nsec = (ms % 1000) * 1000000L;
      nanosleep(&ts, NULL);
      printf("ok sleep\n");
    } else if (strcmp(argv2[0], "reclaim") == 0) {
      flm_reclaim_reply_body r;
      rc = flm_reclaim(&client, &r);
      if (rc) fail("reclaim", rc);
      else print_reclaim("reclaim", &r);
    } else if (strcmp(argv2[0], "checkin") == 0) {
      flm_checkin_ok_body r;
      unsigned long long id = n >= 2 ? strtoull(argv2[1], NULL, 10)
                              : client.n_leases ? client.leases[0].lease_id : 0;
      rc = flm_checkin(&client, (uint64_t)id, NULL, &r);
      if (rc) fail("checkin", rc);
      else
        printf("ok checkin lease=%llu released=%u held=%u\n", (unsigned long long)r.lease_id,
               r.released, client.n_leases);
    } else if (strcmp(argv2[0], "ping") == 0) {
      flm_pong_body r;
      rc = flm_ping(&client, &r);
      if (rc) fail("ping", rc);
      else
        printf("ok ping version=%s state=%u grace_left_ms=%lu\n", r.server_version.s, r.state,
               (unsigned long)r.grace_left_ms);
    } else if (strcmp(argv2[0], "leases") == 0) {
      printf("ok leases n=%u", client.n_leases);
      for (i = 0; i < client.n_leases; i++)
        printf(" %s:%llu:%u", client.leases[i].feature.s,
               (unsigned long long)client.leases[i].lease_id, client.leases[i].count);
      printf("\n");
    } else if (strcmp(argv2[0], "quit") == 0) {
      break;
    } else {
      printf("err %s UNKNOWN_COMMAND\n", argv2[0]);
    }
  }
  rc = flm_close(&client);
  printf("%s quit %s\n", rc ? "err" : "ok", flm_strerror(rc));
  return rc ? 1 : 0;
}
