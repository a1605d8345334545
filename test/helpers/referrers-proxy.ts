// The OCI distribution spec 1.1's referrers API in front of a registry without it, run as a process
// of its own by remote-servers.ts (startReferrersProxy): `node referrers-proxy.js REGISTRY_URL PORT
// LOG`. Every request passes through to the registry, but a manifest PUT whose body has a `subject`
// is recorded and answered with the OCI-Subject header (as a registry with the API answers), and
// GET /v2/REPO/referrers/DIGEST answers the recorded descriptors as an OCI index. LOG gets a line
// per list served ("served URL") and per manifest recorded ("recorded DIGEST").
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

const [registry, port, log] = process.argv.slice(2);
const byRepoSubject = new Map<string, Array<Record<string, unknown>>>();

const server = http.createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (b: Buffer) => parts.push(b));
  req.on('end', () => {
    const body = Buffer.concat(parts);
    const url = req.url ?? '/';
    const ref = /^\/v2\/(.+)\/referrers\/(sha256:[0-9a-f]{64})/.exec(url);
    if (req.method === 'GET' && ref) {
      fs.appendFileSync(log, `served ${url}\n`);
      const list = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: byRepoSubject.get(`${ref[1]}@${ref[2]}`) ?? [] }));
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json', 'content-length': list.length });
      res.end(list);
      return;
    }
    // Host stays the proxy's: the registry's upload locations come back through it.
    const up = http.request(`${registry}${url}`, { method: req.method, headers: req.headers }, (ans) => {
      const out = { ...ans.headers };
      const man = /^\/v2\/(.+)\/manifests\/[^/]+$/.exec(url);
      if (req.method === 'PUT' && man && ans.statusCode === 201) {
        const m = JSON.parse(body.toString()) as { subject?: { digest: string }; mediaType?: string; artifactType?: string; annotations?: Record<string, string> };
        if (m.subject) {
          const key = `${man[1]}@${m.subject.digest}`;
          const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
          byRepoSubject.set(key, [...(byRepoSubject.get(key) ?? []), { mediaType: m.mediaType, digest, size: body.length, artifactType: m.artifactType, annotations: m.annotations }]);
          fs.appendFileSync(log, `recorded ${digest}\n`);
          out['oci-subject'] = m.subject.digest;
        }
      }
      res.writeHead(ans.statusCode ?? 502, out);
      ans.pipe(res);
    });
    up.on('error', () => res.destroy());
    up.end(body);
  });
});
server.listen(Number(port), '127.0.0.1');
