// `image pull` and `image push`: images in an OCI registry (src/remote does the work).
import type { Context } from '../context.js';
import { printJson } from '../output.js';

export async function imagePull(ctx: Context, a: { ref: string; name?: string; tlsVerify?: boolean; certDir?: string; platform?: string; full?: boolean }): Promise<void> {
  const { pullImage } = await import('../../remote/pull.js');
  const r = await pullImage(ctx, { ref: a.ref, name: a.name, tlsVerify: a.tlsVerify !== false, certDir: a.certDir, platform: a.platform, full: !!a.full });
  if (ctx.opts.json) return printJson({ image: r.names[r.names.length - 1], stack: [...r.names].reverse(), manifest: r.manifest, indexes: [...r.indexes].reverse(), ...(r.tocRefused.length ? { tocRefused: r.tocRefused } : {}), ...(r.fetched !== undefined ? { fetchedBytes: r.fetched } : {}) });
  const count = (k: string) => r.indexes.filter((i) => i === k).length;
  const pushed = count('pushed');
  const tocs = [['estargz', 'from eStargz TOCs'], ['zstd:chunked', 'from zstd:chunked manifests']].filter(([k]) => count(k) > 0).map(([k, what]) => `, ${count(k)} ${what}`).join('');
  const full = r.fetched !== undefined ? `; every layer fetched in full (${(r.fetched / 2 ** 20).toFixed(1)} MiB in the chunk cache)` : '';
  for (const why of r.tocRefused) process.stderr.write(`tarstack: ${why}; streamed instead\n`);
  process.stdout.write(`pulled image ${r.names[r.names.length - 1]} from ${a.ref} (${r.manifest}): ${[...r.names].reverse().join(' <- ')}; ${pushed} of ${r.names.length} layer indexes fetched as pushed${tocs}, the rest made by a streaming pass${full}\n`);
}

export async function imagePush(ctx: Context, a: { image: string; ref: string; tlsVerify?: boolean; certDir?: string }): Promise<void> {
  const { pushImage } = await import('../../remote/push.js');
  const r = await pushImage(ctx, { image: a.image, ref: a.ref, tlsVerify: a.tlsVerify !== false, certDir: a.certDir });
  if (ctx.opts.json) return printJson(r);
  process.stdout.write(`pushed image ${a.image} to ${a.ref} (${r.manifest}): ${r.uploaded} of ${r.layers} layers uploaded, ${r.indexes} indexes (${r.referrers ? 'referrers API' : 'tag-schema fallback'})\n`);
}
