/*
 * Batched UDP I/O for floatlmd (IPv4): one recvmmsg(2) brings up to BATCH datagrams into a
 * receive area shared with JavaScript, and one call into JavaScript hands it the count; a
 * send area JavaScript fills goes out with one sendmmsg(2). node:dgram makes one JavaScript
 * call, one Buffer and one address object per datagram, which is most of what a heartbeat
 * costs the daemon. The socket is a plain non-blocking fd watched by a libuv poll handle on
 * Node's own loop, so nothing here runs outside the main thread. When a readable event
 * emptied the socket and most of what it brought failed authentication, the poll handle
 * rests for a moment (a libuv timer): a flood of forged datagrams costs a wake-up and a system call per batch, not per
 * datagram.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "addon.h"

#define BATCH 64
#define SLOT 1280
/* Rounds of recvmmsg per readable event: bounds how long one event holds the loop. */
#define ROUNDS 8
/* Meta words per datagram: length, IPv4 address (host order), port. */
#define META 3
/* A read was mostly forged when more than half of its datagrams failed authentication
 * (onBatch's answers). */
#define FLOODED(bad, n) ((bad) * 2 > (n))

typedef struct {
  int fd;
  uv_poll_t poll;
  /* While it runs, the socket is not read: a flood of forged datagrams queues in the kernel
   * and is then read a batch a system call, not woken for one by one. */
  uv_timer_t pause;
  int pause_ms;
  int paused;
  /* libuv handles still to close before the struct can go (poll and pause). */
  int open_handles;
  double pauses; /* a Prometheus counter: must not wrap (a uint32 would in ~50 days at 1 kHz) */
  napi_env env;
  napi_ref self;
  napi_ref on_batch;
  napi_ref on_writable;
  napi_async_context async;
  unsigned char *recv;
  int32_t *recv_meta;
  unsigned char *send;
  int32_t *send_meta;
  int want_writable;
  /* Test hook (fullAfter): datagrams the kernel takes before one send reports EAGAIN, as a
   * full send buffer does (loopback never fills one: its datagrams leave the socket's
   * account at once); -1: off. */
  int full_after;
  int closing;
  struct mmsghdr rmsgs[BATCH];
  struct iovec riov[BATCH];
  struct sockaddr_in raddr[BATCH];
  struct mmsghdr smsgs[BATCH];
  struct iovec siov[BATCH];
  struct sockaddr_in saddr[BATCH];
} sock_t;

#define CHECK(call)                                                                       \
  do {                                                                                    \
    if ((call) != napi_ok) {                                                              \
      napi_throw_error(env, "ERR_FLOATLM_UDP", #call " failed");                          \
      return NULL;                                                                        \
    }                                                                                     \
  } while (0)

/* Throws an Error whose `syscall` and `errno` (negative, as libuv's) JavaScript turns into
 * node:dgram's own message and code (lib/server/udp.ts). */
static napi_value throw_errno(napi_env env, const char *syscall, int err) {
  napi_value text, e, v;
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, NULL, text, &e);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, e, "syscall", v);
  napi_create_int32(env, -err, &v);
  napi_set_named_property(env, e, "errno", v);
  napi_throw(env, e);
  return NULL;
}

/* The socket handle of a call's first argument, and its other `argc - 1` arguments into argv
 * (argv[0] is the handle); NULL with a TypeError thrown when the handle is not one. */
static sock_t *handle_args(napi_env env, napi_callback_info info, size_t argc, napi_value *argv) {
  void *p = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok ||
      napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "handle must be a socket handle");
    return NULL;
  }
  return (sock_t *)p;
}

/* Calls fn_ref(arg) on self; its int32 answer, 0 when it gave none or threw. */
static int32_t call(sock_t *s, napi_ref fn_ref, int32_t arg) {
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, recv, argv, result;
  napi_get_reference_value(env, fn_ref, &fn);
  napi_get_reference_value(env, s->self, &recv);
  napi_create_int32(env, arg, &argv);
  int32_t answer = 0;
  /* make_callback, as node:dgram's MakeCallback: process.nextTick and promise jobs run after. */
  napi_status st = napi_make_callback(env, s->async, recv, fn, 1, &argv, &result);
  if (st == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  } else if (st == napi_ok && napi_get_value_int32(env, result, &answer) != napi_ok) {
    answer = 0;
  }
  napi_close_handle_scope(env, scope);
  return answer;
}

static void update_poll(sock_t *s);

static void on_pause_end(uv_timer_t *t) {
  sock_t *s = (sock_t *)t->data;
  s->paused = 0;
  update_poll(s);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_t *s = (sock_t *)h->data;
  if (s->closing) return;
  if (status < 0) return;
  if (events & UV_WRITABLE) {
    s->want_writable = 0;
    update_poll(s);
    call(s, s->on_writable, 0);
    if (s->closing) return;
  }
  if (!(events & UV_READABLE) || s->paused) return;
  /* Datagrams read in this event, how many of them failed authentication, and whether the
   * event emptied the socket (else it ended at ROUNDS with more waiting). */
  int32_t got = 0, bad = 0;
  int drained = 0;
  for (int round = 0; round < ROUNDS && !s->closing; round++) {
    for (int i = 0; i < BATCH; i++) {
      s->rmsgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
      s->rmsgs[i].msg_hdr.msg_flags = 0;
    }
    int n = recvmmsg(s->fd, s->rmsgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) { /* EAGAIN: drained; anything else: wait for the next event */
      drained = 1;
      break;
    }
    for (int i = 0; i < n; i++) {
      int32_t *m = s->recv_meta + i * META;
      int trunc = s->rmsgs[i].msg_hdr.msg_flags & MSG_TRUNC;
      m[0] = trunc ? SLOT + 1 : (int32_t)s->rmsgs[i].msg_len;
      m[1] = (int32_t)ntohl(s->raddr[i].sin_addr.s_addr);
      m[2] = ntohs(s->raddr[i].sin_port);
    }
    got += n;
    int32_t b = call(s, s->on_batch, n);
    bad += b < 0 ? 0 : b > n ? n : b;
    if (n < BATCH) {
      drained = 1;
      break;
    }
  }
  /* Resting helps only when the socket is empty: with more waiting, the next event comes at
   * once and reads full batches anyway, and a rest would only cap how fast a flood is read
   * (and let the receive buffer overflow, legitimate datagrams with it). */
  if (s->closing || s->pause_ms == 0 || !drained || !FLOODED(bad, got)) return;
  /* Most of what this event read was forged: read again only after the pause, so that a
   * flood is taken up to ROUNDS batches a wake-up instead of a wake-up a datagram. A
   * verified request queued behind it waits that long more; what arrives meanwhile waits in
   * the kernel's receive buffer. */
  s->paused = 1;
  s->pauses++;
  update_poll(s);
  /* From now: the loop's clock is from when epoll woke, before this read was handled, and a
   * read of hundreds of datagrams would otherwise eat the whole rest. */
  uv_update_time(s->pause.loop);
  uv_timer_start(&s->pause, on_pause_end, (uint64_t)s->pause_ms, 0);
}

static void update_poll(sock_t *s) {
  if (s->closing) return;
  int events = (s->paused ? 0 : UV_READABLE) | (s->want_writable ? UV_WRITABLE : 0);
  if (events) uv_poll_start(&s->poll, events, on_poll);
  else uv_poll_stop(&s->poll);
}

static void on_closed(uv_handle_t *h) {
  sock_t *s = (sock_t *)h->data;
  if (--s->open_handles == 0) free(s);
}

/* open(host: string, port: number, rcvbuf: number, recv: ArrayBuffer, recvMeta: ArrayBuffer,
 *      send: ArrayBuffer, sendMeta: ArrayBuffer, onBatch, onWritable, self, pauseMs) -> handle
 * onBatch(n) answers how many of the n datagrams failed authentication; when more than half
 * did and pauseMs > 0, the socket is not read for pauseMs. */
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 11;
  napi_value argv[11];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 11) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "open takes 11 arguments");
    return NULL;
  }
  char host[64];
  size_t hl;
  if (napi_get_value_string_utf8(env, argv[0], host, sizeof host, &hl) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "host must be a string");
    return NULL;
  }
  int32_t port, rcvbuf, pause_ms;
  CHECK(napi_get_value_int32(env, argv[1], &port));
  CHECK(napi_get_value_int32(env, argv[2], &rcvbuf));
  if (napi_get_value_int32(env, argv[10], &pause_ms) != napi_ok || pause_ms < 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "pauseMs must be an integer >= 0");
    return NULL;
  }
  void *bufs[4];
  size_t lens[4];
  const size_t need[4] = {BATCH * SLOT, BATCH * META * 4, BATCH * SLOT, BATCH * META * 4};
  for (int i = 0; i < 4; i++) {
    if (napi_get_arraybuffer_info(env, argv[3 + i], &bufs[i], &lens[i]) != napi_ok ||
        lens[i] < need[i]) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "a shared area is too small");
      return NULL;
    }
  }
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "host must be an IPv4 address");
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind", err);
  }
  sock_t *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    return throw_errno(env, "calloc", ENOMEM);
  }
  s->fd = fd;
  s->env = env;
  s->pause_ms = pause_ms;
  s->full_after = -1;
  s->recv = bufs[0];
  s->recv_meta = bufs[1];
  s->send = bufs[2];
  s->send_meta = bufs[3];
  for (int i = 0; i < BATCH; i++) {
    s->riov[i].iov_base = s->recv + i * SLOT;
    s->riov[i].iov_len = SLOT;
    s->rmsgs[i].msg_hdr.msg_iov = &s->riov[i];
    s->rmsgs[i].msg_hdr.msg_iovlen = 1;
    s->rmsgs[i].msg_hdr.msg_name = &s->raddr[i];
    s->siov[i].iov_base = s->send + i * SLOT;
    s->smsgs[i].msg_hdr.msg_iov = &s->siov[i];
    s->smsgs[i].msg_hdr.msg_iovlen = 1;
    s->smsgs[i].msg_hdr.msg_name = &s->saddr[i];
    s->smsgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    s->saddr[i].sin_family = AF_INET;
  }
  /* The areas are kept alive by references held on the JavaScript side (self). */
  napi_create_reference(env, argv[9], 1, &s->self);
  napi_create_reference(env, argv[7], 1, &s->on_batch);
  napi_create_reference(env, argv[8], 1, &s->on_writable);
  napi_value name;
  napi_create_string_utf8(env, "floatlm:udp", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &s->async);
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  uv_poll_init_socket(loop, &s->poll, fd);
  s->poll.data = s;
  /* Ref'd like the poll handle it stands in for while it runs: an open socket keeps the
   * loop alive, paused or not. */
  uv_timer_init(loop, &s->pause);
  s->pause.data = s;
  s->open_handles = 2;
  update_poll(s);
  napi_value handle;
  CHECK(napi_create_external(env, s, NULL, NULL, &handle));
  return handle;
}

/* port(handle) -> the bound port */
static napi_value js_port(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  sock_t *s = handle_args(env, info, 1, argv);
  if (!s) return NULL;
  struct sockaddr_in a;
  socklen_t l = sizeof a;
  if (getsockname(s->fd, (struct sockaddr *)&a, &l) < 0) return throw_errno(env, "getsockname", errno);
  napi_value v;
  napi_create_int32(env, ntohs(a.sin_port), &v);
  return v;
}

/* pauses(handle) -> how many times reading paused for a flood of forged datagrams */
static napi_value js_pauses(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  sock_t *s = handle_args(env, info, 1, argv);
  if (!s) return NULL;
  napi_value v;
  napi_create_double(env, s->pauses, &v);
  return v;
}

/* rcvbuf(handle) -> the receive buffer the kernel gave, as SO_RCVBUF reads it (Linux: twice
 * what was asked, capped at twice net.core.rmem_max) */
static napi_value js_rcvbuf(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  sock_t *s = handle_args(env, info, 1, argv);
  if (!s) return NULL;
  int v = 0;
  socklen_t l = sizeof v;
  if (getsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &v, &l) < 0) return throw_errno(env, "getsockopt", errno);
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

/* send(handle, n) -> how many of the n datagrams in the send area the kernel took; when
 * fewer, the socket is watched for room and onWritable is called once there is. */
static napi_value js_send(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  sock_t *s = handle_args(env, info, 2, argv);
  if (!s) return NULL;
  int32_t n;
  CHECK(napi_get_value_int32(env, argv[1], &n));
  if (n < 0 || n > BATCH) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "n must be 0..64");
    return NULL;
  }
  int sent = 0;
  if (!s->closing) {
    for (int i = 0; i < n; i++) {
      int32_t *m = s->send_meta + i * META;
      s->siov[i].iov_len = (size_t)(m[0] < 0 ? 0 : m[0] > SLOT ? SLOT : m[0]);
      s->saddr[i].sin_addr.s_addr = htonl((uint32_t)m[1]);
      s->saddr[i].sin_port = htons((uint16_t)m[2]);
    }
    while (sent < n) {
      int r;
      if (s->full_after == 0) {
        s->full_after = -1;
        r = -1;
        errno = EAGAIN;
      } else {
        unsigned want = (unsigned)(n - sent);
        if (s->full_after > 0 && (unsigned)s->full_after < want) want = (unsigned)s->full_after;
        r = sendmmsg(s->fd, s->smsgs + sent, want, MSG_DONTWAIT);
        if (r > 0 && s->full_after > 0) s->full_after -= r;
      }
      if (r > 0) {
        sent += r;
        continue;
      }
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
        s->want_writable = 1;
        update_poll(s);
        break;
      }
      /* Any other error (EPERM, unreachable, …) is this datagram's own: skip it, as a UDP
       * send error is reported for nothing else. */
      sent++;
    }
  }
  napi_value v;
  napi_create_int32(env, sent, &v);
  return v;
}

/* fullAfter(handle, k): the next k datagrams go, then one send reports EAGAIN (tests). */
static napi_value js_full_after(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  sock_t *s = handle_args(env, info, 2, argv);
  if (!s) return NULL;
  int32_t k;
  if (napi_get_value_int32(env, argv[1], &k) != napi_ok || k < 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "k must be an integer >= 0");
    return NULL;
  }
  s->full_after = k;
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  sock_t *s = handle_args(env, info, 1, argv);
  if (!s) return NULL;
  if (s->closing) return NULL;
  s->closing = 1;
  /* uv_poll_stop takes the fd out of epoll at once, so the port is free when close returns
   * (a daemon restarted on the same port binds it again at once); the handle goes later. */
  uv_poll_stop(&s->poll);
  uv_timer_stop(&s->pause);
  close(s->fd);
  s->fd = -1;
  napi_delete_reference(env, s->on_batch);
  napi_delete_reference(env, s->on_writable);
  napi_delete_reference(env, s->self);
  napi_async_destroy(env, s->async);
  uv_close((uv_handle_t *)&s->poll, on_closed);
  uv_close((uv_handle_t *)&s->pause, on_closed);
  return NULL;
}

void udp_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"port", NULL, js_port, NULL, NULL, NULL, napi_default, NULL},
      {"pauses", NULL, js_pauses, NULL, NULL, NULL, napi_default, NULL},
      {"rcvbuf", NULL, js_rcvbuf, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"fullAfter", NULL, js_full_after, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value v;
  napi_create_int32(env, BATCH, &v);
  napi_set_named_property(env, exports, "BATCH", v);
  napi_create_int32(env, SLOT, &v);
  napi_set_named_property(env, exports, "SLOT", v);
}
