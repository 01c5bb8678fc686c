# The original-destination addon (original_dst.c): built by build.sh with node-gyp and the running
# Node's own headers (--nodedir), never downloaded. Linux only.
{
  "targets": [
    {
      "target_name": "original_dst",
      "sources": ["original_dst.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"]
    }
  ]
}
