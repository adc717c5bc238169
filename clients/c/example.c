/*
 * example.c - a small floatlm client: reads commands on stdin, prints one result line each.
 *
 *   FLOATLM_KEY=<64 hex> example [--vendor V] [--user U] [--host H] CRED_ID SERVER[,SERVER...]
 *
 * --vendor defaults to CRED_ID up to its first '/' (as the TypeScript client does), --user to
 * $USER (then $LOGNAME, then the passwd entry), --host to gethostname(). The vendor must be
 * the license's VENDOR: features of other vendors are not found.
 *
 * Commands:
 *   hello                          get a token (HELLO, mode 1)
 *   checkout FEATURE VERSION [N] [wait]
 *                                  with wait: when no seat is free, wait in the queue,
 *                                  polling once a second (a "queued" line each time the
 *                                  position changes) until granted or denied
 *   heartbeat                      (restores the session and reclaims after a restart)
 *   poll MS                        wait MS ms, answering TEST_CONN
 *   wait-test-conn MS              wait up to MS ms for the next TEST_CONN, answering it
 *   sleep MS                       wait MS ms without reading the socket (a hung client)
 *   reclaim                        re-present every lease ticket
 *   checkin [LEASE_ID]             give back one lease (hex; default: the first held)
 *   ping
 *   leases                         the leases this client holds
 *   quit                           check every lease in, end the session and exit
 *
 * FLOATLM_RETRY=initial,cap,total,upgrade (ms) overrides the retransmission schedule.
 *
 * Results: "ok <command> key=value...", "queued checkout ..." while waiting, "denied checkout
 * feature=F reason=<code name> retry_ms=N" for a refusal, or "err <command> <FLM_E name>
 * [code=<wire code name>]". Lease and session ids are 16 hex digits, as `floatlm status`
 * and the report log show them.
 *
 * SIGINT, SIGTERM or SIGHUP (also while waiting in a queue), end of input and quit all leave
 * the same way: the queue being waited in is left (and its CHECKIN_OK awaited), then every
 * lease is checked in and the session ended. A client that just exits would stay queued
 * until the server reaps it, and would be assigned a seat it never picks up meanwhile.
 *
 * Exit status: 0 when every command succeeded; otherwise the first failure decides: 3 a
 * checkout was denied, 1 any other failure; 128 + the signal number when interrupted; 2 for
 * bad arguments. The key comes from the environment so it does not show in `ps`.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "floatlm.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_DENIED = 3 };

static flm_client client;
static int status;                    /* exit status: the first failure's */
static char queued_in[FLM_CAP_NAME + 1]; /* the feature whose queue we wait in, or "" */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

static void failed(int code) {
  if (status == 0) status = code;
}

/* A wire code's name; a code this build does not know as CODE_<n>, like the CLI. */
static const char *code_name(unsigned c, char buf[16]) {
  const char *n = flm_code_name(c);
  if (strcmp(n, "UNKNOWN") != 0) return n;
  snprintf(buf, 16, "CODE_%u", c);
  return buf;
}

static void fail(const char *cmd, int rc) {
  char b[16];
  if (rc == FLM_E_SERVER || (rc == FLM_E_NO_TOKEN && client.error_code != 0))
    printf("err %s %s code=%s %s\n", cmd, flm_strerror(rc), code_name(client.error_code, b),
           client.error_message);
  else
    printf("err %s %s\n", cmd, flm_strerror(rc));
  client.error_code = 0;
  failed(EXIT_FAILED);
}

static void print_reclaim(const char *cmd, const flm_reclaim_reply_body *r) {
  unsigned i;
  char b[16];
  printf("ok %s n=%u", cmd, r->n_results);
  for (i = 0; i < r->n_results; i++)
    printf(" lease=%016llx code=%s", (unsigned long long)r->results[i].lease_id,
           code_name(r->results[i].code, b));
  printf(" held=%u\n", client.n_leases);
}

/* Leaves the queue of `feature`; the server answers CHECKIN_OK whether or not we were in it. */
static void leave(const char *feature) {
  flm_checkin_ok_body r;
  int rc = flm_checkin(&client, 0, feature, &r);
  if (rc) fail("leave", rc);
  else printf("ok leave feature=%s\n", feature);
  queued_in[0] = '\0';
}

/* Sleeps up to ms, answering TEST_CONN; returns early on a signal. */
static void idle(int ms) {
  while (ms > 0 && !stop_signal) {
    int slice = ms < 100 ? ms : 100;
    if (flm_poll(&client, slice) < 0) return;
    ms -= slice;
  }
}

static void checkout(const char *feature, const char *version, uint16_t count, int wait) {
  flm_checkout_reply_body r;
  unsigned last_position = 0;
  char b[16];
  int rc = flm_checkout(&client, feature, version, count, wait ? FLM_OPT_WAIT : 0, &r);
  while (rc == FLM_OK && r.status == FLM_QUEUED) {
    snprintf(queued_in, sizeof queued_in, "%s", feature);
    if (r.position != last_position)
      printf("queued checkout feature=%s position=%u length=%u\n", feature, r.position,
             r.queue_length);
    last_position = r.position;
    idle(1000); /* protocol.md 14: a queued client polls about once a second */
    if (stop_signal) return; /* the way out leaves the queue */
    rc = flm_checkout(&client, feature, version, count, FLM_OPT_WAIT, &r);
  }
  if (rc) {
    fail("checkout", rc);
    /* no longer waiting: do not leave a place behind that the server would fill */
    if (queued_in[0]) leave(queued_in);
  } else if (r.status == FLM_GRANTED) {
    queued_in[0] = '\0';
    printf("ok checkout feature=%s lease=%016llx count=%u\n", r.feature.s,
           (unsigned long long)r.lease_id, r.count);
  } else {
    queued_in[0] = '\0';
    printf("denied checkout feature=%s reason=%s retry_ms=%lu\n", feature,
           code_name(r.reason, b), (unsigned long)r.retry_after_ms);
    failed(EXIT_DENIED);
  }
}

static int usage(const char *prog) {
  fprintf(stderr,
          "usage: FLOATLM_KEY=<64 hex> %s [--vendor V] [--user U] [--host H] CRED_ID "
          "SERVER[,SERVER...]\n",
          prog);
  return EXIT_USAGE;
}

int main(int argc, char **argv) {
  static char line[1024];
  static char servers[1024];
  static char vendor[FLM_CAP_NAME + 1];
  uint8_t key[32];
  const char *keyhex = getenv("FLOATLM_KEY");
  const char *user = NULL, *host = NULL, *vendor_arg = NULL;
  const char *pos[2];
  struct sigaction sa;
  flm_config cfg;
  char *s;
  unsigned i, n_pos = 0;
  int a, rc;

  for (a = 1; a < argc; a++) {
    if (strcmp(argv[a], "--vendor") == 0 && a + 1 < argc) vendor_arg = argv[++a];
    else if (strcmp(argv[a], "--user") == 0 && a + 1 < argc) user = argv[++a];
    else if (strcmp(argv[a], "--host") == 0 && a + 1 < argc) host = argv[++a];
    else if (argv[a][0] == '-' || n_pos == 2) return usage(argv[0]);
    else pos[n_pos++] = argv[a];
  }
  if (n_pos != 2) return usage(argv[0]);
  if (!keyhex || strlen(keyhex) != 64) {
    fprintf(stderr, "example: FLOATLM_KEY must be the credential key, 64 hex digits\n");
    return EXIT_USAGE;
  }
  for (i = 0; i < 32; i++) {
    unsigned v;
    if (sscanf(keyhex + 2 * i, "%2x", &v) != 1) {
      fprintf(stderr, "example: FLOATLM_KEY must be the credential key, 64 hex digits\n");
      return EXIT_USAGE;
    }
    key[i] = (uint8_t)v;
  }
  snprintf(vendor, sizeof vendor, "%s", vendor_arg ? vendor_arg : pos[0]);
  if (!vendor_arg && strchr(vendor, '/')) *strchr(vendor, '/') = '\0';
  memset(&cfg, 0, sizeof cfg);
  cfg.cred_id = pos[0];
  cfg.cred_key = key;
  snprintf(servers, sizeof servers, "%s", pos[1]);
  for (s = strtok(servers, ","); s && cfg.n_servers < FLM_MAX_SERVERS; s = strtok(NULL, ","))
    cfg.servers[cfg.n_servers++] = s;
  if (getenv("FLOATLM_RETRY")) /* initial,cap,total,upgrade in ms (tests shorten them) */
    sscanf(getenv("FLOATLM_RETRY"), "%u,%u,%u,%u", &cfg.initial_ms, &cfg.max_interval_ms,
           &cfg.total_ms, &cfg.upgrade_ms);
  cfg.vendor = vendor;
  cfg.program = "example";
  cfg.version = "1.0";
  cfg.user = user; /* NULL: the library's default, $USER, $LOGNAME, then the passwd entry */
  cfg.host = host; /* NULL: gethostname() */
  rc = flm_init(&client, &cfg);
  flm_wipe(key, sizeof key); /* flm_init keeps its own copy */
  if (rc != FLM_OK) {
    fprintf(stderr, "example: init failed: %s%s\n", flm_strerror(rc),
            rc == FLM_E_ARG ? " (no user name found, or a name over 64 bytes: use --user, "
                              "--host, --vendor)"
                            : "");
    return EXIT_FAILED;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* no SA_RESTART: a signal also ends a read of stdin that is waiting for the next line;
   * SA_RESETHAND: a second Ctrl-C kills at once, should the way out below take too long */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);

  while (!stop_signal && fgets(line, sizeof line, stdin)) {
    char *args[8];
    int n = 0;
    for (s = strtok(line, " \t\r\n"); s && n < 8; s = strtok(NULL, " \t\r\n")) args[n++] = s;
    if (n == 0) continue;
    if (strcmp(args[0], "hello") == 0) {
      rc = flm_get_token(&client);
      if (rc) fail("hello", rc);
      else
        printf("ok hello session=%016llx vendor=%s user=%s host=%s heartbeat_ms=%lu\n",
               (unsigned long long)client.session_id, client.vendor, client.user, client.host,
               (unsigned long)client.heartbeat_ms);
    } else if (strcmp(args[0], "checkout") == 0 && n >= 3) {
      uint16_t count = (uint16_t)(n >= 4 ? atoi(args[3]) : 1);
      checkout(args[1], args[2], count, n >= 5 && strcmp(args[4], "wait") == 0);
    } else if (strcmp(args[0], "heartbeat") == 0) {
      flm_heartbeat_ack_body r;
      client.reclaimed = 0;
      rc = flm_heartbeat(&client, &r);
      if (rc) fail("heartbeat", rc);
      else {
        printf("ok heartbeat leases=%u queued=%u heartbeat_ms=%lu restored=%d\n", r.leases,
               r.queued, (unsigned long)r.heartbeat_ms, client.reclaimed);
        if (client.reclaimed) print_reclaim("auto-reclaim", &client.last_reclaim);
      }
    } else if (strcmp(args[0], "poll") == 0 && n >= 2) {
      rc = flm_poll(&client, atoi(args[1]));
      if (rc < 0) fail("poll", rc);
      else printf("ok poll test_conn=%d total=%u\n", rc, client.test_conns_answered);
    } else if (strcmp(args[0], "wait-test-conn") == 0 && n >= 2) {
      int left = atoi(args[1]), got = 0;
      while (left > 0 && got == 0) {
        rc = flm_poll(&client, left < 100 ? left : 100);
        if (rc < 0) break;
        got = rc;
        left -= 100;
      }
      if (got > 0) printf("ok wait-test-conn test_conn=%d total=%u\n", got, client.test_conns_answered);
      else {
        printf("err wait-test-conn TIMEOUT\n");
        failed(EXIT_FAILED);
      }
    } else if (strcmp(args[0], "sleep") == 0 && n >= 2) {
      struct timespec ts;
      long ms = atol(args[1]);
      ts.tv_sec = ms / 1000;
      ts.tv_nsec = (ms % 1000) * 1000000L;
      nanosleep(&ts, NULL);
      printf("ok sleep\n");
    } else if (strcmp(args[0], "reclaim") == 0) {
      flm_reclaim_reply_body r;
      rc = flm_reclaim(&client, &r);
      if (rc) fail("reclaim", rc);
      else print_reclaim("reclaim", &r);
    } else if (strcmp(args[0], "checkin") == 0) {
      flm_checkin_ok_body r;
      unsigned long long id = n >= 2 ? strtoull(args[1], NULL, 16)
                              : client.n_leases ? client.leases[0].lease_id : 0;
      if (id == 0) {
        printf("err checkin STATE no lease held\n");
        failed(EXIT_FAILED);
        continue;
      }
      rc = flm_checkin(&client, (uint64_t)id, NULL, &r);
      if (rc) fail("checkin", rc);
      else
        printf("ok checkin lease=%016llx released=%u held=%u\n", (unsigned long long)r.lease_id,
               r.released, client.n_leases);
    } else if (strcmp(args[0], "ping") == 0) {
      flm_pong_body r;
      rc = flm_ping(&client, &r);
      if (rc) fail("ping", rc);
      else
        printf("ok ping version=%s state=%u grace_left_ms=%lu\n", r.server_version.s, r.state,
               (unsigned long)r.grace_left_ms);
    } else if (strcmp(args[0], "leases") == 0) {
      printf("ok leases n=%u", client.n_leases);
      for (i = 0; i < client.n_leases; i++)
        printf(" %s:%016llx:%u", client.leases[i].feature.s,
               (unsigned long long)client.leases[i].lease_id, client.leases[i].count);
      printf("\n");
    } else if (strcmp(args[0], "quit") == 0) {
      break;
    } else {
      printf("err %s UNKNOWN_COMMAND\n", args[0]);
      failed(EXIT_FAILED);
    }
  }
  /* Every way out leaves the same way. Interrupted, the user wants out now: a server that is
   * gone gets about 2 s per request, not the full 30 s (it reaps the session anyway). */
  if (stop_signal && client.total_ms > 2000) {
    client.total_ms = 2000;
    client.upgrade_ms = 1000;
  }
  if (queued_in[0]) leave(queued_in);
  rc = flm_close(&client);
  printf("%s quit %s\n", rc ? "err" : "ok", flm_strerror(rc));
  if (rc) failed(EXIT_FAILED);
  if (stop_signal) return 128 + stop_signal;
  return status;
}
