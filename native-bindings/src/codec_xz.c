// xz (the .xz file format 1.0.4): blocks are independent, and each stream's index says where every
// block starts in both coordinates, so the seek points come from the index (read from the end of
// the file before the sequential pass) and a point resumes with liblzma's block decoder. A
// single-block file (plain `xz`) has one point: it is served sequentially.
#include "codec_impl.h"

#include <string.h>

enum { X_RUN };

static const char *lzma_msg(lzma_ret r) {
  switch (r) {
    case LZMA_MEM_ERROR: return "out of memory";
    case LZMA_MEMLIMIT_ERROR: return "memory limit reached";
    case LZMA_FORMAT_ERROR: return "not xz data";
    case LZMA_OPTIONS_ERROR: return "unsupported options";
    case LZMA_DATA_ERROR: return "compressed data is corrupt";
    case LZMA_BUF_ERROR: return "compressed data is cut short";
    case LZMA_UNSUPPORTED_CHECK: return "unsupported integrity check";
    default: return "decoder error";
  }
}

static int xz_fail(tsc_dec *d, lzma_ret r, const char *what) {
  int code = r == LZMA_MEM_ERROR || r == LZMA_MEMLIMIT_ERROR ? TSC_ENOMEM
           : r == LZMA_BUF_ERROR ? TSC_ETRUNC
           : r == LZMA_OPTIONS_ERROR || r == LZMA_UNSUPPORTED_CHECK ? TSC_EUNSUPPORTED
           : TSC_ECORRUPT;
  const char *cls = code == TSC_ETRUNC ? "truncated" : code == TSC_ECORRUPT ? "corrupt" : "unreadable";
  return tsc_fail(d, code, "%s xz data%s near compressed byte %llu (%s)", cls, what, (unsigned long long)tsc_in_pos(d), lzma_msg(r));
}

int tsc_xz_init(tsc_dec *d) {
  lzma_stream init = LZMA_STREAM_INIT;
  d->lz = init;
  d->lz_ready = 1;
  return 0;
}

void tsc_xz_end(tsc_dec *d) {
  if (d->lz_ready) lzma_end(&d->lz);
}

// Feed input until the coder says it is done; LZMA_SEEK_NEEDED moves the input (file info decoder).
static lzma_ret run(tsc_dec *d, lzma_stream *s) {
  for (;;) {
    ssize_t avail = tsc_fill(d);
    if (avail < 0) return LZMA_PROG_ERROR;
    s->next_in = d->in + d->in_off;
    s->avail_in = (size_t)avail;
    lzma_ret r = lzma_code(s, avail == 0 ? LZMA_FINISH : LZMA_RUN);
    d->in_off += (size_t)avail - s->avail_in;
    if (r == LZMA_SEEK_NEEDED) {
      tsc_set_in(d, s->seek_pos);
      continue;
    }
    if (r != LZMA_OK) return r;
  }
}

// Scan mode: every non-empty block of every stream (concatenated streams included) is a point.
int tsc_xz_scan(tsc_dec *d) {
  lzma_stream s = LZMA_STREAM_INIT;
  lzma_index *idx = NULL;
  lzma_ret r = lzma_file_info_decoder(&s, &idx, UINT64_MAX, d->size);
  if (r == LZMA_OK) r = run(d, &s);
  lzma_end(&s);
  if (r != LZMA_STREAM_END) {
    if (idx) lzma_index_end(idx, NULL);
    if (d->errcode) return -1;
    // The index sits at the end of the file: a cut-short file fails here, before any data.
    return tsc_fail(d, r == LZMA_MEM_ERROR ? TSC_ENOMEM : TSC_ECORRUPT, "xz data is truncated or damaged: the index at the end of the file is unreadable (%s)", lzma_msg(r));
  }
  lzma_index_iter it;
  lzma_index_iter_init(&it, idx);
  int rc = 0;
  while (rc == 0 && !lzma_index_iter_next(&it, LZMA_INDEX_ITER_NONEMPTY_BLOCK)) {
    uint32_t kind = TSC_XZ_BLOCK | ((uint32_t)it.stream.flags->check << 8);
    rc = tsc_add_point(d, (double)it.block.compressed_file_offset * 8, (double)it.block.uncompressed_file_offset, kind, NULL, 0);
  }
  lzma_index_end(idx, NULL);
  if (rc != 0) return -1;
  // The sequential pass decodes whole streams, so every check and index is verified on the way.
  tsc_set_in(d, 0);
  r = lzma_stream_decoder(&d->lz, UINT64_MAX, LZMA_CONCATENATED);
  if (r != LZMA_OK) return xz_fail(d, r, " at the start");
  d->state = X_RUN;
  return 0;
}

int tsc_xz_seek(tsc_dec *d, uint32_t kind, uint64_t pos) {
  if ((kind & 0xff) != TSC_XZ_BLOCK) return tsc_fail(d, TSC_ECORRUPT, "xz: unknown seek point kind %u", kind);
  unsigned char hdr[LZMA_BLOCK_HEADER_SIZE_MAX];
  int n = tsc_peek(d, pos, hdr, 1);
  if (n < 0) return -1;
  if (n == 0 || hdr[0] == 0) return tsc_fail(d, TSC_ECORRUPT, "corrupt xz data: no block header at compressed byte %llu", (unsigned long long)pos);
  uint32_t size = lzma_block_header_size_decode(hdr[0]);
  n = tsc_peek(d, pos, hdr, size);
  if (n < 0) return -1;
  if ((uint32_t)n < size) return tsc_fail(d, TSC_ETRUNC, "truncated xz data: a block header at byte %llu is cut short", (unsigned long long)pos);
  lzma_filter filters[LZMA_FILTERS_MAX + 1];
  lzma_block *block = &d->xblock; // in the decoder: liblzma writes the final sizes into it
  memset(block, 0, sizeof *block);
  block->version = 1;
  block->check = (lzma_check)((kind >> 8) & 0xff);
  block->header_size = size;
  block->filters = filters;
  tsc_set_in(d, pos);
  lzma_ret r = lzma_block_header_decode(block, NULL, hdr);
  if (r != LZMA_OK) return xz_fail(d, r, " in a block header");
  r = lzma_block_decoder(&d->lz, block);
  lzma_filters_free(filters, NULL); // the decoder copied what it needs
  block->filters = NULL;
  if (r != LZMA_OK) return xz_fail(d, r, " in a block header");
  tsc_set_in(d, pos + size);
  d->state = X_RUN;
  return 0;
}

int64_t tsc_xz_decode(tsc_dec *d, unsigned char *out, size_t len) {
  size_t done = 0;
  while (done < len && !d->ended) {
    ssize_t avail = tsc_fill(d);
    if (avail < 0) return -1;
    lzma_stream *s = &d->lz;
    s->next_in = d->in + d->in_off;
    s->avail_in = (size_t)avail;
    s->next_out = out + done;
    s->avail_out = len - done;
    lzma_ret r = lzma_code(s, avail == 0 ? LZMA_FINISH : LZMA_RUN);
    size_t produced = (len - done) - s->avail_out;
    d->in_off += (size_t)avail - s->avail_in;
    done += produced;
    d->out_total += produced;
    if (r == LZMA_STREAM_END) d->ended = 1; // the end of the block (served) or of the last stream (scan)
    else if (r != LZMA_OK) return xz_fail(d, r, "");
  }
  return (int64_t)done;
}
