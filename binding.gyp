{
  "targets": [
    {
      "target_name": "floatlm_udp",
      "sources": ["native/udp.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
