/*
 * fuzz.c - feeds random and mutated datagrams to flm_decode (built with ASan/UBSan by
 * `make fuzz`). Seeds: hex datagrams, one per line, on stdin (the known-answer vectors).
 *
 *   fuzz [ITERATIONS [SEED]] < seeds.hex
 *
 * Every decoded datagram is re-encoded and must give back the same bytes (tag aside), so the
 * encoder is exercised on hostile values too. Exits non-zero on a mismatch; the sanitizers
 * abort on any memory error or undefined behaviour.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "floatlm.h"

#define MAX_SEEDS 256

static uint8_t seeds[MAX_SEEDS][FLM_MAX_DATAGRAM];
static size_t seed_len[MAX_SEEDS];
static flm_datagram d;
static uint64_t rs;

static uint32_t rnd(void) {
  rs ^= rs >> 12;
  rs ^= rs << 25;
  rs ^= rs >> 27;
  return (uint32_t)((rs * 2685821657736338717ull) >> 32);
}

static const uint8_t interesting[] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x07, 0x08, 0x20,
                                      0x40, 0x7f, 0x80, 0x81, 0xbf, 0xc0, 0xc2, 0xe0, 0xed,
                                      0xef, 0xf0, 0xf4, 0xf5, 0xfe, 0xff};

/* Keeps the header's length field equal to the size, so mutations reach the body. */
static void fix_length(uint8_t *b, size_t n) {
  if (n >= 8) {
    b[6] = (uint8_t)(n >> 8);
    b[7] = (uint8_t)n;
  }
}

static size_t mutate(uint8_t *b, size_t n, size_t cap) {
  unsigned k, rounds = 1 + rnd() % 8;
  for (k = 0; k < rounds; k++) {
    size_t at = n ? rnd() % n : 0;
    switch (rnd() % 9) {
    case 0: if (n) b[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
    case 1: if (n) b[at] = (uint8_t)rnd(); break;
    case 2: if (n) b[at] = interesting[rnd() % sizeof interesting]; break;
    case 3: if (n) n = rnd() % n; break;                       /* truncate */
    case 4: {                                                   /* insert bytes */
      size_t add = 1 + rnd() % 16;
      if (n + add > cap) break;
      memmove(b + at + add, b + at, n - at);
      n += add;
      while (add--) b[at + add] = (uint8_t)rnd();
      break;
    }
    case 5: {                                                   /* delete bytes */
      size_t del = 1 + rnd() % 16;
      if (at + del > n) del = n - at;
      memmove(b + at, b + at + del, n - at - del);
      n -= del;
      break;
    }
    case 6: if (n >= 2 && at + 1 < n) { b[at] = 0xff; b[at + 1] = 0xff; } break; /* big prefix */
    case 7: if (n > 32) b[32 + rnd() % (n - 32)] = (uint8_t)(rnd() % 4); break;  /* small counts */
    default: break;
    }
  }
  if (rnd() % 4) fix_length(b, n);
  return n;
}

int main(int argc, char **argv) {
  static char line[8192];
  static uint8_t buf[FLM_MAX_DATAGRAM + 64], again[FLM_MAX_DATAGRAM];
  unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
  unsigned long i, ok = 0, counts[32] = {0};
  size_t nseeds = 0;
  rs = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x9e3779b97f4a7c15ull;
  if (!rs) rs = 1;
  while (nseeds < MAX_SEEDS && fgets(line, sizeof line, stdin)) {
    size_t len = strcspn(line, "\r\n"), j;
    if (len % 2 || len / 2 > FLM_MAX_DATAGRAM || len == 0) continue;
    for (j = 0; j < len / 2; j++) {
      unsigned v;
      if (sscanf(line + 2 * j, "%2x", &v) != 1) break;
      seeds[nseeds][j] = (uint8_t)v;
    }
    seed_len[nseeds++] = len / 2;
  }
  for (i = 0; i < iters; i++) {
    size_t n;
    int rc;
    unsigned mode = rnd() % 8;
    if (nseeds == 0 || mode == 0) {
      /* random bytes, sometimes with a plausible header */
      n = rnd() % (FLM_MAX_DATAGRAM + 40);
      for (size_t j = 0; j < n; j++) buf[j] = (uint8_t)rnd();
      if (mode == 0 && n >= 6 && rnd() % 2) {
        buf[0] = 0x46; buf[1] = 0x4c; buf[2] = 1;
        buf[3] = (uint8_t)(rnd() % 2 ? rnd() % 10 : 0x80 + rnd() % 16);
        buf[4] = (uint8_t)(rnd() % 4); buf[5] = (uint8_t)(1 + rnd() % 4);
        fix_length(buf, n);
      }
    } else {
      size_t s = rnd() % nseeds;
      memcpy(buf, seeds[s], seed_len[s]);
      n = mutate(buf, seed_len[s], sizeof buf);
    }
    /* decode from an exactly sized heap copy so ASan catches any read past the end */
    {
      uint8_t *exact = (uint8_t *)malloc(n ? n : 1);
      if (!exact) return 3;
      memcpy(exact, buf, n);
      rc = flm_decode(exact, n, &d);
      if (rc == FLM_OK) {
        size_t m;
        ok++;
        if (flm_encode(&d, again, sizeof again, &m) != FLM_OK || m != n ||
            memcmp(again, exact, n - FLM_TAG_LEN) != 0) {
          fprintf(stderr, "re-encode mismatch at iteration %lu\n", i);
          free(exact);
          return 1;
        }
      }
      free(exact);
    }
    counts[-rc < 32 && rc <= 0 ? -rc : 31]++;
  }
  printf("iterations %lu decoded %lu", iters, ok);
  for (i = 1; i < 32; i++)
    if (counts[i]) printf(" %s %lu", flm_strerror(-(int)i), counts[i]);
  printf("\n");
  return 0;
}
