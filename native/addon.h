/* The parts of the floatlm addon (native/addon.c), each registering its exports. */
#ifndef FLOATLM_ADDON_H
#define FLOATLM_ADDON_H
#include <node_api.h>

/* Batched UDP socket (udp.c): open, port, send, close, BATCH, SLOT. */
void udp_init(napi_env env, napi_value exports);
/* Keyed HMAC-SHA256 over a trailing tag (hmac.c): hmacVerify, hmacSign, hmacKey, hkdf,
 * sha256Impl. */
void hmac_init(napi_env env, napi_value exports);

#endif
