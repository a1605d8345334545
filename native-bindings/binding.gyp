# Builds tarstack_native.node (N-API 8, C only) against the system libfuse3 found by pkg-config, and
# Debian's libzstd and liblzma (codec*.c), libcurl and libcrypto (fetch.c: remote blobs' range GETs
# and chunk digests). zlib is the one Node itself exports, through its headers.
{
  "targets": [
    {
      "target_name": "tarstack_native",
      "sources": [
        "src/addon.c", "src/jsutil.c", "src/reqs.c", "src/session.c", "src/ops.c",
        "src/replies.c", "src/kext.c", "src/uring.c", "src/uring_read.c", "src/dir.c", "src/pool.c", "src/readpool.c", "src/notify.c", "src/sys.c", "src/tree.c",
        "src/codec.c", "src/crc32_fold.c", "src/codec_ahead.c", "src/codec_ahead_js.c", "src/codec_dec.c", "src/codec_gzip.c", "src/codec_zstd.c", "src/codec_xz.c", "src/codec_zsum.c", "src/stream.c",
        "src/fetch.c", "src/fetch_js.c"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["<!@(pkg-config --cflags fuse3 libzstd liblzma libxxhash libcurl libcrypto)", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror=implicit-function-declaration"],
      "libraries": ["<!@(pkg-config --libs fuse3 libzstd liblzma libxxhash libcurl libcrypto)", "-lz"],
      "conditions": [
        ["OS!='linux'", { "type": "none" }]
      ]
    }
  ]
}
