/*
 * The floatlm addon, build/Release/floatlm_native.node: the batched UDP socket (udp.c) and
 * the keyed HMAC of a datagram's tag (hmac.c), loaded by lib/native.ts. Optional: without it
 * the daemon uses node:dgram and the JavaScript HMAC, with the same results.
 */
#include "addon.h"

static napi_value init(napi_env env, napi_value exports) {
  udp_init(env, exports);
  hmac_init(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
