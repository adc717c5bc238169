{
  "targets": [
    {
      "target_name": "floatlm_native",
      "sources": ["native/addon.c", "native/udp.c", "native/hmac.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
