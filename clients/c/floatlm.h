/*
 * floatlm.h - C99 client for the floatlm wire protocol (protocol.md, version 1).
 *
 * Three layers, usable separately:
 *   1. crypto: SHA-256 and HMAC-SHA256 (self-contained, RFC 4231 checked);
 *   2. codec:  flm_encode / flm_decode of every message, bounds-checked: a malformed or
 *              hostile datagram yields a negative FLM_E_* code, never undefined behaviour;
 *              flm_sign / flm_verify for the 32-byte tag;
 *   3. client: flm_client, a session over one UDP socket: flm_get_token (HELLO),
 *              flm_checkout, flm_heartbeat, flm_checkin, flm_reclaim, flm_poll (answers
 *              TEST_CONN), with retransmission, mode-2 restore and failover.
 *
 * Nothing here allocates memory. A flm_client is not thread-safe; use one per thread.
 */
#ifndef FLOATLM_H
#define FLOATLM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire constants (protocol.md sections 2-6) ---------------------------------------- */

#define FLM_MAGIC 0x464Cu
#define FLM_VERSION 1u
#define FLM_HEADER_LEN 32u
#define FLM_TAG_LEN 32u
#define FLM_MIN_DATAGRAM 64u
#define FLM_MAX_DATAGRAM 1200u
#define FLM_NONCE_LEN 16u
#define FLM_KEY_LEN 32u
#define FLM_MIN_HELLO 600u
#define FLM_DEFAULT_PORT 27400u

#define FLM_CAP_NAME 64u
#define FLM_CAP_VERSION 32u
#define FLM_CAP_MESSAGE 200u
#define FLM_CAP_TOKEN 512u
#define FLM_CAP_TICKET 256u
#define FLM_CAP_TICKETS 8u
#define FLM_CAP_PADDING 1100u
#define FLM_CAP_PING 1024u
#define FLM_CAP_RECORDS 64u

/* message types */
enum {
  FLM_HELLO = 0x01,
  FLM_CHECKOUT = 0x02,
  FLM_HEARTBEAT = 0x03,
  FLM_CHECKIN = 0x04,
  FLM_TEST_CONN = 0x05,
  FLM_STATUS = 0x06,
  FLM_ADMIN = 0x07,
  FLM_PING = 0x08,
  FLM_RECLAIM = 0x09,
  FLM_HELLO_OK = 0x81,
  FLM_CHECKOUT_REPLY = 0x82,
  FLM_HEARTBEAT_ACK = 0x83,
  FLM_CHECKIN_OK = 0x84,
  FLM_TEST_CONN_ACK = 0x85,
  FLM_STATUS_REPLY = 0x86,
  FLM_ADMIN_REPLY = 0x87,
  FLM_PONG = 0x88,
  FLM_RECLAIM_REPLY = 0x89,
  FLM_ERROR = 0x8F
};

/* header flags */
enum { FLM_F_REPLY = 0x01, FLM_F_FROM_SERVER = 0x02 };

/* auth modes */
enum { FLM_AUTH_CREDENTIAL = 1, FLM_AUTH_TOKEN = 2, FLM_AUTH_SESSION = 3, FLM_AUTH_ADMIN = 4 };

/* CHECKOUT options, CHECKOUT_REPLY status, ADMIN ops, PONG states, STATUS record kinds */
enum { FLM_OPT_WAIT = 0x01 };
enum { FLM_GRANTED = 0, FLM_QUEUED = 1, FLM_DENIED = 2 };
enum { FLM_OP_REMOVE = 1, FLM_OP_REREAD = 2, FLM_OP_SHUTDOWN = 3 };
enum { FLM_STATE_RUNNING = 0, FLM_STATE_GRACE = 1, FLM_STATE_CLOSING = 2, FLM_STATE_DEGRADED = 3 };
enum {
  FLM_REC_FEATURE = 1, FLM_REC_HOLDER = 2, FLM_REC_QUEUED = 3, FLM_REC_RESERVATION = 4,
  FLM_REC_SERVER = 5
};
enum { FLM_SITE_GONE = 0, FLM_SITE_UP = 1, FLM_SITE_NO_ETCD = 2 }; /* SERVER record state */
enum { FLM_RES_USER = 1, FLM_RES_HOST = 2 }; /* RESERVATION record type */

/* wire error codes carried in ERROR, CHECKOUT_REPLY.reason, RECLAIM_REPLY code (u16) */
enum {
  FLM_CODE_OK = 0,
  FLM_CODE_BAD_REQUEST = 1,
  FLM_CODE_UNSUPPORTED = 2,
  FLM_CODE_TOKEN_BAD_SIGNATURE = 16,
  FLM_CODE_TOKEN_UNKNOWN_KEY = 17,
  FLM_CODE_TOKEN_EXPIRED = 18,
  FLM_CODE_TOKEN_FUTURE = 19,
  FLM_CODE_TOKEN_REVOKED = 20,
  FLM_CODE_TOKEN_WRONG_HOST = 21,
  FLM_CODE_TOKEN_MALFORMED = 22,
  FLM_CODE_CLOCK_SKEW = 32,
  FLM_CODE_REPLAY = 33,
  FLM_CODE_UNKNOWN_SESSION = 34,
  FLM_CODE_NEED_PADDING = 35,
  FLM_CODE_WRONG_MODE = 36,
  FLM_CODE_NO_SUCH_FEATURE = 48,
  FLM_CODE_NO_SUCH_VERSION = 49,
  FLM_CODE_FEATURE_EXPIRED = 50,
  FLM_CODE_NO_SEATS = 51,
  FLM_CODE_USER_MAX = 52,
  FLM_CODE_HOST_MAX = 53,
  FLM_CODE_QUEUE_FULL = 54,
  FLM_CODE_NOT_HOLDER = 55,
  FLM_CODE_IN_GRACE = 56,
  FLM_CODE_ALREADY_RECLAIMED = 57,
  FLM_CODE_SESSION_LIMIT = 58,
  FLM_CODE_TICKET_BAD = 59,
  FLM_CODE_REMOVED = 60,
  FLM_CODE_RATE_LIMITED = 64,
  FLM_CODE_BUSY = 65,
  FLM_CODE_SHUTTING_DOWN = 66,
  FLM_CODE_NOT_PERMITTED = 67,
  FLM_CODE_INTERNAL = 68
};

/* ---- return codes of this library ---------------------------------------------------------
 * 0 is success. -1..-11 are the decode errors of protocol.md ("Decode errors"), in the same
 * meaning; the rest are local conditions. flm_strerror() names each. */
enum {
  FLM_OK = 0,
  FLM_E_TRUNCATED = -1,
  FLM_E_BAD_MAGIC = -2,
  FLM_E_BAD_VERSION = -3,
  FLM_E_UNKNOWN_TYPE = -4,
  FLM_E_BAD_FLAGS = -5,
  FLM_E_BAD_AUTH_MODE = -6,
  FLM_E_BAD_LENGTH = -7,
  FLM_E_TRAILING_BYTES = -8,
  FLM_E_OUT_OF_RANGE = -9,
  FLM_E_BAD_STRING = -10,
  FLM_E_TOO_LARGE = -11,
  FLM_E_BAD_TAG = -20,     /* tag does not verify under the key */
  FLM_E_ARG = -21,         /* API misuse: NULL pointer, value out of range, too small buffer */
  FLM_E_SOCKET = -22,      /* socket, address resolution or getentropy failure (errno set) */
  FLM_E_TIMEOUT = -23,     /* no verified answer from any server within the retry budget */
  FLM_E_SERVER = -24,      /* the server answered ERROR: see flm_client.error_code */
  FLM_E_NO_TOKEN = -25,    /* no session: call flm_get_token; also after a TOKEN_* error */
  FLM_E_STATE = -26        /* e.g. lease table full, lease not held by this client */
};

/* ---- crypto --------------------------------------------------------------------------- */

typedef struct flm_sha256 {
  uint32_t h[8];
  uint64_t bytes;
  uint8_t buf[64];
  size_t fill;
} flm_sha256;

void flm_sha256_init(flm_sha256 *s);
void flm_sha256_update(flm_sha256 *s, const void *data, size_t len);
void flm_sha256_final(flm_sha256 *s, uint8_t out[32]);
/* HMAC-SHA256 (RFC 2104) of msg under key (any length). */
void flm_hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t msg_len,
                     uint8_t out[32]);
/* Constant-time comparison: 1 when equal. */
int flm_ct_equal(const uint8_t *a, const uint8_t *b, size_t len);
/* Zeroes n bytes in a way the compiler may not optimise away (for key material: the
 * library wipes its own copies and temporaries; wipe yours with this once flm_init has
 * copied the credential key). */
void flm_wipe(void *p, size_t n);

/* ---- decoded values ------------------------------------------------------------------- */

/* Strings: byte length on the wire, plus a NUL-terminated copy (a NUL inside is allowed by
 * the protocol; use len, not strlen, when it matters). */
typedef struct { uint8_t len; char s[FLM_CAP_NAME + 1]; } flm_name;
typedef struct { uint8_t len; char s[FLM_CAP_VERSION + 1]; } flm_ver;
typedef struct { uint8_t len; char s[FLM_CAP_MESSAGE + 1]; } flm_msg;

/* Sets a string field from a C string; FLM_E_BAD_LENGTH if longer than the field's cap,
 * FLM_E_BAD_STRING if not UTF-8. Use as FLM_SET(d.body.checkout.feature, "solver"). */
int flm_str_set(char *dst, uint8_t *len, size_t cap, const char *src);
#define FLM_SET(field, cstr) flm_str_set((field).s, &(field).len, sizeof((field).s) - 1, (cstr))

typedef struct { uint16_t len; uint8_t b[FLM_CAP_TICKET]; } flm_ticket;

typedef struct {
  flm_name vendor, program; flm_ver version; flm_name user, host;
  uint16_t padding_len; uint8_t padding[FLM_CAP_PADDING];
} flm_hello_body;
typedef struct {
  uint16_t token_len; uint8_t token[FLM_CAP_TOKEN];
  uint8_t wrapped_key[32]; uint64_t token_expires; uint32_t heartbeat_ms;
} flm_hello_ok_body;
typedef struct { flm_name feature; flm_ver version; uint16_t count; uint8_t options; } flm_checkout_body;
typedef struct {
  uint8_t status; flm_name feature; uint64_t lease_id; uint16_t count; flm_ticket ticket;
  uint32_t heartbeat_ms; uint16_t position, queue_length, reason; uint32_t retry_after_ms;
} flm_checkout_reply_body;
typedef struct { uint16_t leases, queued; uint32_t heartbeat_ms; } flm_heartbeat_ack_body;
typedef struct { uint64_t lease_id; flm_name feature; } flm_checkin_body;
typedef struct { uint64_t lease_id; uint16_t released; } flm_checkin_ok_body;
typedef struct { uint8_t nonce[8]; } flm_test_conn_body;
typedef struct { uint8_t nonce[8]; uint16_t leases; } flm_test_conn_ack_body;
typedef struct { uint16_t page; flm_name feature; } flm_status_body;
typedef struct {
  uint8_t kind; /* FLM_REC_* */
  /* FEATURE: name(feature) version vendor expires count in_use queued issued denied
   * HOLDER:  feature user host since count lease_id program version (the holder's HELLO
   *          program and version; "" when not sent)
   * QUEUED:  feature user host since position
   * RESERVATION: feature res_type name count in_use (count, in_use are u16 on the wire)
   * SERVER:  name state since self (a site's server: FLM_SITE_*; self 1 = it answered) */
  flm_name feature; flm_ver version; flm_name vendor, user, host, name, program;
  uint64_t expires, since, lease_id;
  uint32_t count, in_use, queued, issued, denied;
  uint16_t position;
  uint8_t res_type; /* FLM_RES_* */
  uint8_t state, self; /* SERVER */
} flm_record;
typedef struct {
  uint16_t page, pages; uint32_t snapshot; uint8_t n_records; flm_record records[FLM_CAP_RECORDS];
} flm_status_reply_body;
typedef struct { uint8_t op; flm_name feature, user, host; uint64_t lease_id; } flm_admin_body;
typedef struct { uint8_t op; uint32_t affected; flm_msg message; } flm_admin_reply_body;
typedef struct { uint16_t payload_len; uint8_t payload[FLM_CAP_PING]; } flm_ping_body;
typedef struct { flm_ver server_version; uint64_t uptime_ms; uint8_t state; uint32_t grace_left_ms; } flm_pong_body;
typedef struct { uint8_t n_tickets; flm_ticket tickets[FLM_CAP_TICKETS]; } flm_reclaim_body;
typedef struct { uint64_t lease_id; uint16_t code; } flm_reclaim_result;
typedef struct { uint8_t n_results; flm_reclaim_result results[FLM_CAP_TICKETS]; } flm_reclaim_reply_body;
typedef struct { uint16_t code; uint32_t retry_after_ms; flm_msg message; } flm_error_body;

/* One datagram. The auth block fields are meaningful only on client requests (flags 0):
 * mode 1 cred_id + nonce, mode 2 token, mode 4 key_id. */
typedef struct flm_datagram {
  uint8_t type, flags, auth;
  uint32_t request_id;
  uint64_t session_id;
  uint32_t seq;
  uint64_t timestamp; /* UTC ms, < 2^53 */
  flm_name cred_id; uint8_t nonce[FLM_NONCE_LEN];
  uint16_t token_len; uint8_t token[FLM_CAP_TOKEN];
  flm_name key_id;
  union {
    flm_hello_body hello; flm_hello_ok_body hello_ok;
    flm_checkout_body checkout; flm_checkout_reply_body checkout_reply;
    flm_heartbeat_ack_body heartbeat_ack;
    flm_checkin_body checkin; flm_checkin_ok_body checkin_ok;
    flm_test_conn_body test_conn; flm_test_conn_ack_body test_conn_ack;
    flm_status_body status; flm_status_reply_body status_reply;
    flm_admin_body admin; flm_admin_reply_body admin_reply;
    flm_ping_body ping; flm_pong_body pong;
    flm_reclaim_body reclaim; flm_reclaim_reply_body reclaim_reply;
    flm_error_body error;
  } body;
  uint8_t tag[FLM_TAG_LEN];
} flm_datagram;

/* ---- codec ---------------------------------------------------------------------------- */

/* Decodes one whole UDP payload into *out (tag copied, NOT verified). Returns FLM_OK or a
 * decode error FLM_E_TRUNCATED..FLM_E_TOO_LARGE, checked in protocol.md's order. On error
 * *out holds garbage. Never reads outside buf[0..len). */
int flm_decode(const uint8_t *buf, size_t len, flm_datagram *out);

/* Encodes *d with a zero tag (header length filled in). Validates every field as the
 * decoder would (caps, ranges, UTF-8). Returns FLM_OK and *out_len, FLM_E_TOO_LARGE over
 * 1200 bytes, FLM_E_ARG when cap is too small, or the decode error the field would cause. */
int flm_encode(const flm_datagram *d, uint8_t *buf, size_t cap, size_t *out_len);

/* Writes the tag: HMAC-SHA256(key, buf[0..len-32)) into buf[len-32..len). len >= 64. */
int flm_sign(uint8_t *buf, size_t len, const uint8_t key[32]);
/* FLM_OK when the last 32 bytes are the tag of the rest under key, else FLM_E_BAD_TAG. */
int flm_verify(const uint8_t *buf, size_t len, const uint8_t key[32]);

/* sessionKey = wrappedKey XOR HMAC(credKey, "floatlm wrap v1" || nonce || u64be(sessionId)) */
void flm_unwrap_key(const uint8_t cred_key[32], const uint8_t nonce[16], uint64_t session_id,
                    const uint8_t wrapped[32], uint8_t session_key[32]);

/* UTF-8 validity as protocol.md section 6 defines it (1 valid, 0 not). */
int flm_utf8_valid(const uint8_t *s, size_t len);

const char *flm_strerror(int rc);      /* "TRUNCATED", "TIMEOUT", ... */
/* Wire code name ("NO_SEATS"), "UNKNOWN" for a code this build does not know (print the
 * number then). Always a string literal: no buffer shared between calls or threads. */
const char *flm_code_name(unsigned c);

/* ---- client --------------------------------------------------------------------------- */

#define FLM_MAX_SERVERS 8
#define FLM_MAX_LEASES 32

typedef struct flm_config {
  const char *cred_id;            /* credential id, e.g. "demo" */
  const uint8_t *cred_key;        /* 32 bytes */
  const char *servers[FLM_MAX_SERVERS]; /* "host:port", "host" (port 27400), "[v6]:port" */
  unsigned n_servers;
  const char *vendor, *program, *version; /* HELLO fields; NULL = "" */
  const char *user, *host;        /* NULL = $USER, $LOGNAME or the passwd entry (none found:
                                     FLM_E_ARG) / gethostname() */
  /* retransmission (ms); 0 = protocol default: first interval 500, cap 8000, give up 30000;
   * a mode-3 request unanswered for upgrade_ms (default total_ms / 2) goes again in mode 2 */
  unsigned initial_ms, max_interval_ms, total_ms, upgrade_ms;
  int no_jitter;                  /* 1: no +-25% randomisation (tests) */
} flm_config;

typedef struct flm_lease {
  uint64_t lease_id;
  flm_name feature;
  uint16_t count;
  flm_ticket ticket;
} flm_lease;

typedef struct flm_client {
  /* configuration (copied) */
  char cred_id[FLM_CAP_NAME + 1];
  uint8_t cred_key[32];
  char vendor[FLM_CAP_NAME + 1], program[FLM_CAP_NAME + 1], version[FLM_CAP_VERSION + 1];
  char user[FLM_CAP_NAME + 1], host[FLM_CAP_NAME + 1];
  unsigned initial_ms, max_interval_ms, total_ms, upgrade_ms;
  int no_jitter;
  /* transport */
  int fd;
  unsigned n_servers, cur;
  struct sockaddr_storage addrs[FLM_MAX_SERVERS];
  socklen_t addr_lens[FLM_MAX_SERVERS];
  /* session (the notes' token layer) */
  int have_token;
  int restoring;                  /* the server may have lost us: requests go in mode 2 */
  uint16_t token_len; uint8_t token[FLM_CAP_TOKEN];
  uint8_t session_key[32];
  uint64_t session_id, token_expires;
  uint32_t heartbeat_ms, seq, next_request_id;
  int64_t clock_offset;           /* server clock - local clock, ms */
  flm_lease leases[FLM_MAX_LEASES];
  unsigned n_leases;
  /* server-originated requests (TEST_CONN): replay window and last answer */
  int srv_any; uint32_t srv_top; uint64_t srv_bits[16];
  uint8_t last_tc[FLM_MAX_DATAGRAM]; size_t last_tc_len;
  uint8_t last_ack[128]; size_t last_ack_len;
  unsigned test_conns_answered;
  /* last ERROR (FLM_E_SERVER) */
  uint16_t error_code; uint32_t error_retry_ms; char error_message[FLM_CAP_MESSAGE + 1];
  /* last automatic reclaim after a restore (see flm_heartbeat) */
  flm_reclaim_reply_body last_reclaim; int reclaimed;
  uint64_t rng;
} flm_client;

/* Opens the UDP socket and resolves the servers. FLM_E_ARG, FLM_E_SOCKET. */
int flm_init(flm_client *c, const flm_config *cfg);
/* Closes the socket and wipes the keys (does not check leases in; see flm_close). */
void flm_free(flm_client *c);
/* The notes' get_token: HELLO (mode 1, padded to 600 bytes) to the current server, failing
 * over to the next on timeout; unwraps the session key and verifies HELLO_OK under it. */
int flm_get_token(flm_client *c);
/* The notes' authenticate(&Packet): fills the auth block and header of *d for mode 1, 2 or 3
 * (session id, a fresh nonce in mode 1), encodes and signs with the matching key.
 * d->type, request_id, seq, timestamp and body must be set. */
int flm_authenticate(flm_client *c, flm_datagram *d, int mode, uint8_t *buf, size_t cap,
                     size_t *len);
/* CHECKOUT; on GRANTED the lease (and its ticket) is kept in c->leases. A QUEUED or
 * DENIED answer is FLM_OK too: look at out->status. out may be NULL. */
int flm_checkout(flm_client *c, const char *feature, const char *version, uint16_t count,
                 uint8_t options, flm_checkout_reply_body *out);
/* HEARTBEAT. If it restored the session on a new or restarted server (mode 2), or the ack
 * counts fewer leases than the client holds (a server restarted from its durable state),
 * the client RECLAIMs its tickets right after and sets c->reclaimed / c->last_reclaim.
 * (CHECKOUT and CHECKIN answered in mode 2 reclaim the same way.) */
int flm_heartbeat(flm_client *c, flm_heartbeat_ack_body *out);
/* CHECKIN of a held lease; lease_id 0 with a feature leaves that feature's queue (answered
 * CHECKIN_OK whether or not the session was queued: call it before giving up a wait). */
int flm_checkin(flm_client *c, uint64_t lease_id, const char *feature, flm_checkin_ok_body *out);
/* RECLAIM every held ticket (in groups of 8); leases not given back are forgotten. out
 * gets the results of the last group; may be NULL. */
int flm_reclaim(flm_client *c, flm_reclaim_reply_body *out);
/* PING (padded so the PONG always fits). */
int flm_ping(flm_client *c, flm_pong_body *out);
/* Waits up to timeout_ms for datagrams from the servers, answering each TEST_CONN.
 * Returns the number of TEST_CONNs answered (>= 0) or a negative FLM_E_*. */
int flm_poll(flm_client *c, int timeout_ms);
/* The socket, for an application's own poll loop: call flm_poll(c, 0) when readable. */
int flm_fd(const flm_client *c);
/* Checks every lease in, ends the session on the server (CHECKIN leaseId 0 with an empty
 * feature: queue entries go too; best effort, 1 s, no answer is not an error), then forgets
 * token and key, and frees. Returns the first error of the checkins. */
int flm_close(flm_client *c);

#ifdef __cplusplus
}
#endif
#endif
