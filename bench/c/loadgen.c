/*
 * floatlm load generator: keeps W requests in flight against one UDP server on 127.0.0.1
 * and reports requests/s, latency percentiles and its own CPU use as one JSON line.
 *
 * It signs every datagram itself (HMAC-SHA256 keyed once per session: the inner and outer
 * states after the padded key block are kept and copied per datagram), so each request
 * carries a fresh seq and a distinct request id, as the daemon's replay window and reply
 * cache demand. Replies are matched by request id; their tags are not checked (the
 * generator measures the server, it does not defend against it).
 *
 *   loadgen MODE PORT WINDOW DURATION_MS WARMUP_MS MAX_REQUESTS SESSIONS_FILE FEATURE FIRST_SEQ
 *           [SERVER_PID]
 *
 * MODE: `hb` HEARTBEATs (mode 3); `pair` CHECKOUT then CHECKIN of the granted lease, one
 * pair per slot at a time (latency and rate are per pair). SESSIONS_FILE: one line per
 * session, `<session id, 16 hex> <session key, 64 hex>`. Slot i uses session i mod n, so
 * with WINDOW ≤ sessions a session never has two requests in flight in `pair` mode.
 * FIRST_SEQ: the first seq each session uses, and the base of request ids; a later run must
 * start at least 2·MAX_REQUESTS above an earlier one, or the daemon's replay window drops
 * everything (and its reply cache answers with the earlier run's replies).
 * An echo server simply returns each heartbeat: same request id, so the same code path
 * measures it. A request unanswered for 500 ms is counted lost and its slot reused.
 * SERVER_PID: the server's process; its CPU time (every thread, from the kernel's
 * per-process CPU clock, ns resolution) and its main thread's context switches are read at
 * the two instants that bound the measured requests, so the CPU per request divides the
 * CPU and the requests of exactly the same interval.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "floatlm.h"

#define MAX_WINDOW 256
#define MAX_SESSIONS 4096
#define LOST_NS 500000000LL

typedef struct {
  uint64_t id;
  flm_sha256 inner, outer; /* states after the ipad / opad block */
  uint32_t seq;
} session_t;

typedef struct {
  int busy;
  uint32_t rid;
  int stage; /* pair mode: 0 checkout sent, 1 checkin sent */
  int64_t started; /* ns, first datagram of the request (pair: of the checkout) */
  int64_t sent;    /* ns, last datagram */
} slot_t;

static session_t sessions[MAX_SESSIONS];
static int nsessions;
static slot_t slots[MAX_WINDOW];
static const char *feature = "bench";
static int sock;
static struct sockaddr_in dst;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000ULL + (uint64_t)(ts.tv_nsec / 1000000);
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of process `pid` (all threads), NAN when it cannot be read. */
static double proc_cpu_s(pid_t pid) {
  clockid_t id;
  struct timespec ts;
  if (pid <= 0 || clock_getcpuclockid(pid, &id) != 0 || clock_gettime(id, &ts) != 0) return NAN;
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Voluntary (blocked: waiting for datagrams) and involuntary (preempted) context switches of
 * the main thread of `pid`, from /proc; -1 when unknown. */
static void proc_switches(pid_t pid, long long *vol, long long *invol) {
  *vol = *invol = -1;
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = pid > 0 ? fopen(path, "r") : NULL;
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    sscanf(line, "voluntary_ctxt_switches: %lld", vol);
    sscanf(line, "nonvoluntary_ctxt_switches: %lld", invol);
  }
  fclose(f);
}

/* Busy and stolen seconds of cores 0 and 1 so far, from /proc/stat (busy: user, nice, system,
 * irq, softirq; stolen: time the hypervisor ran something else). Zero when unknown. */
typedef struct {
  double busy[2], steal[2];
} cores_t;

static cores_t cores_now(void) {
  cores_t c = {{0, 0}, {0, 0}};
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return c;
  double hz = (double)sysconf(_SC_CLK_TCK);
  char line[512];
  while (fgets(line, sizeof line, f)) {
    int cpu;
    unsigned long long us, ni, sy, id, io, irq, sirq, st;
    if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &us, &ni, &sy, &id,
               &io, &irq, &sirq, &st) == 9 &&
        cpu >= 0 && cpu < 2) {
      c.busy[cpu] = (us + ni + sy + irq + sirq) / hz;
      c.steal[cpu] = st / hz;
    }
  }
  fclose(f);
  return c;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int unhex(const char *s, uint8_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int a = hexval(s[2 * i]), b = hexval(s[2 * i + 1]);
    if (a < 0 || b < 0) return -1;
    out[i] = (uint8_t)(a << 4 | b);
  }
  return 0;
}

static void key_session(session_t *s, const uint8_t key[32]) {
  uint8_t pad[64];
  memset(pad, 0x36, 64);
  for (int i = 0; i < 32; i++) pad[i] ^= key[i];
  flm_sha256_init(&s->inner);
  flm_sha256_update(&s->inner, pad, 64);
  memset(pad, 0x5c, 64);
  for (int i = 0; i < 32; i++) pad[i] ^= key[i];
  flm_sha256_init(&s->outer);
  flm_sha256_update(&s->outer, pad, 64);
}

static void sign(const session_t *s, uint8_t *d, size_t len) {
  flm_sha256 h = s->inner;
  uint8_t inner[32];
  flm_sha256_update(&h, d, len - 32);
  flm_sha256_final(&h, inner);
  h = s->outer;
  flm_sha256_update(&h, inner, 32);
  flm_sha256_final(&h, d + len - 32);
}

static void be16(uint8_t *p, uint16_t v) {
  p[0] = v >> 8;
  p[1] = (uint8_t)v;
}
static void be32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static void be64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) << 32 | rd32(p + 4); }

/* Header (32 bytes) for a mode-3 request; returns the offset of the body. */
static size_t header(uint8_t *d, uint8_t type, size_t total, uint32_t rid, session_t *s) {
  be16(d, 0x464c);
  d[2] = 1;
  d[3] = type;
  d[4] = 0;
  d[5] = 3;
  be16(d + 6, (uint16_t)total);
  be32(d + 8, rid);
  be64(d + 12, s->id);
  be32(d + 20, ++s->seq);
  be64(d + 24, wall_ms());
  return 32;
}

static void send_bytes(uint8_t *d, size_t len) {
  while (sendto(sock, d, len, 0, (struct sockaddr *)&dst, sizeof dst) < 0) {
    if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR) {
      perror("sendto");
      exit(1);
    }
  }
}

static void send_heartbeat(uint32_t rid, session_t *s) {
  uint8_t d[64];
  header(d, 0x03, 64, rid, s);
  sign(s, d, 64);
  send_bytes(d, 64);
}

static void send_checkout(uint32_t rid, session_t *s) {
  uint8_t d[256];
  size_t fl = strlen(feature);
  size_t total = 32 + 1 + fl + 1 + 2 + 1 + 32;
  size_t o = header(d, 0x02, total, rid, s);
  d[o++] = (uint8_t)fl;
  memcpy(d + o, feature, fl);
  o += fl;
  d[o++] = 0; /* version "" : any */
  be16(d + o, 1);
  o += 2;
  d[o++] = 0; /* options: no wait */
  sign(s, d, total);
  send_bytes(d, total);
}

static void send_checkin(uint32_t rid, session_t *s, uint64_t lease) {
  uint8_t d[73];
  size_t o = header(d, 0x04, 73, rid, s);
  be64(d + o, lease);
  d[o + 8] = 0;
  sign(s, d, 73);
  send_bytes(d, 73);
}

static int cmp64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 10) {
    fprintf(stderr,
            "usage: loadgen hb|pair PORT WINDOW DURATION_MS WARMUP_MS MAX_REQUESTS SESSIONS_FILE "
            "FEATURE FIRST_SEQ\n");
    return 2;
  }
  int pair = strcmp(argv[1], "pair") == 0;
  int port = atoi(argv[2]);
  int window = atoi(argv[3]);
  int64_t duration = atoll(argv[4]) * 1000000LL;
  int64_t warmup = atoll(argv[5]) * 1000000LL;
  long long max_requests = atoll(argv[6]);
  feature = argv[8];
  uint32_t first_seq = (uint32_t)strtoul(argv[9], NULL, 10);
  pid_t server = argc > 10 ? (pid_t)atoi(argv[10]) : 0;
  if (window < 1 || window > MAX_WINDOW || max_requests < 1 || strlen(feature) > 64) {
    fprintf(stderr, "loadgen: bad WINDOW, MAX_REQUESTS or FEATURE\n");
    return 2;
  }
  FILE *f = fopen(argv[7], "r");
  if (!f) {
    perror(argv[7]);
    return 2;
  }
  char line[256];
  while (nsessions < MAX_SESSIONS && fgets(line, sizeof line, f)) {
    uint8_t id[8], key[32];
    if (strlen(line) < 16 + 1 + 64 || unhex(line, id, 8) || unhex(line + 17, key, 32)) continue;
    sessions[nsessions].id = rd64(id);
    sessions[nsessions].seq = first_seq;
    key_session(&sessions[nsessions], key);
    nsessions++;
  }
  fclose(f);
  if (nsessions == 0) {
    fprintf(stderr, "loadgen: no sessions\n");
    return 2;
  }

  sock = socket(AF_INET, SOCK_DGRAM, 0);
  int buf = 4 << 20;
  setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  struct timeval tv = {0, 20000};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  memset(&dst, 0, sizeof dst);
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  int64_t *lat = malloc(sizeof(int64_t) * (size_t)max_requests);
  if (!lat) return 1;
  long long nlat = 0, issued = 0, done = 0, lost = 0, errors = 0, unexpected = 0;
  /* Request ids (gen << 8 | slot) must not repeat those of an earlier run within the
   * daemon's reply-cache lifetime either: derive them from FIRST_SEQ too. */
  uint32_t gen = first_seq;
  int64_t t0 = now_ns();
  int64_t measure_from = t0 + warmup;
  int64_t end = t0 + warmup + duration;
  int64_t measured_start = 0;
  double cpu_start = 0, server_cpu_start = NAN;
  long long done_at_start = 0, vol_start = -1, invol_start = -1;
  cores_t cores_start = {{0, 0}, {0, 0}};

  for (;;) {
    int64_t t = now_ns();
    if (!measured_start && t >= measure_from) {
      measured_start = t;
      cpu_start = cpu_s();
      server_cpu_start = proc_cpu_s(server);
      proc_switches(server, &vol_start, &invol_start);
      cores_start = cores_now();
      done_at_start = done;
    }
    if (t >= end || (issued >= max_requests && done + lost >= issued)) break;
    /* Fill the window. */
    for (int i = 0; i < window && issued < max_requests; i++) {
      slot_t *sl = &slots[i];
      if (sl->busy) {
        if (t - sl->sent > LOST_NS) {
          sl->busy = 0;
          lost++;
        } else
          continue;
      }
      sl->busy = 1;
      sl->stage = 0;
      sl->rid = (++gen << 8) | (uint32_t)i;
      sl->started = sl->sent = now_ns();
      issued++;
      session_t *s = &sessions[i % nsessions];
      if (pair)
        send_checkout(sl->rid, s);
      else
        send_heartbeat(sl->rid, s);
    }
    uint8_t r[1500];
    ssize_t n = recv(sock, r, sizeof r, 0);
    if (n < 0) continue; /* timeout: check for lost slots */
    if (n < 32 + 32) {
      unexpected++;
      continue;
    }
    uint32_t rid = rd32(r + 8);
    slot_t *sl = &slots[rid & 0xff];
    if ((rid & 0xff) >= (uint32_t)window || !sl->busy || sl->rid != rid) {
      unexpected++; /* late reply of a request counted lost */
      continue;
    }
    int64_t t1 = now_ns();
    if (pair && sl->stage == 0) {
      if (r[3] != 0x82 || r[32] != 0) {
        if (errors++ < 3) fprintf(stderr, "loadgen: checkout answered type 0x%02x body %02x %02x %02x %02x\n", r[3], r[32], r[33], r[34], r[35]);
        sl->busy = 0;
        continue;
      }
      size_t fl = r[33];
      uint64_t lease = rd64(r + 34 + fl);
      sl->stage = 1;
      sl->rid = (++gen << 8) | (rid & 0xff);
      sl->sent = t1;
      send_checkin(sl->rid, &sessions[(rid & 0xff) % (uint32_t)nsessions], lease);
      continue;
    }
    uint8_t want = pair ? 0x84 : 0x83;
    sl->busy = 0;
    if (r[3] != want && r[3] != 0x03) { /* 0x03: an echo of the heartbeat */
      if (errors++ < 3) fprintf(stderr, "loadgen: answered type 0x%02x body %02x %02x %02x %02x\n", r[3], r[32], r[33], r[34], r[35]);
      continue;
    }
    done++;
    if (measured_start && sl->started >= measured_start && nlat < max_requests)
      lat[nlat++] = t1 - sl->started;
  }
  int64_t t_end = now_ns();
  double cpu = cpu_s() - cpu_start;
  double server_cpu = proc_cpu_s(server) - server_cpu_start;
  long long vol_end, invol_end;
  proc_switches(server, &vol_end, &invol_end);
  cores_t cores_end = cores_now();
  double secs = measured_start ? (t_end - measured_start) / 1e9 : 0;
  qsort(lat, (size_t)nlat, sizeof(int64_t), cmp64);
  double p50 = nlat ? lat[nlat / 2] / 1000.0 : 0;
  double p99 = nlat ? lat[(long long)((nlat - 1) * 0.99)] / 1000.0 : 0;
  printf(
      "{\"mode\":\"%s\",\"window\":%d,\"sessions\":%d,\"seconds\":%.3f,\"completed\":%lld,"
      "\"rate\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"lost\":%lld,\"errors\":%lld,"
      "\"unexpected\":%lld,\"generator_cpu_s\":%.3f,\"generator_cpu_pct\":%.1f,"
      "\"server_cpu_s\":%.6f,\"server_blocked\":%lld,\"server_preempted\":%lld,"
      "\"core_busy_s\":[%.2f,%.2f],\"core_steal_s\":[%.2f,%.2f]}\n",
      pair ? "pair" : "hb", window, nsessions, secs, done - done_at_start,
      secs > 0 ? (done - done_at_start) / secs : 0, p50, p99, lost, errors, unexpected, cpu,
      secs > 0 ? 100.0 * cpu / secs : 0, isnan(server_cpu) ? -1.0 : server_cpu,
      vol_start >= 0 && vol_end >= 0 ? vol_end - vol_start : -1,
      invol_start >= 0 && invol_end >= 0 ? invol_end - invol_start : -1,
      cores_end.busy[0] - cores_start.busy[0], cores_end.busy[1] - cores_start.busy[1],
      cores_end.steal[0] - cores_start.steal[0], cores_end.steal[1] - cores_start.steal[1]);
  free(lat);
  return 0;
}
