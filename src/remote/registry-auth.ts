// Credentials for a registry as podman and skopeo find them ($REGISTRY_AUTH_FILE, then
// ${XDG_RUNTIME_DIR}/containers/auth.json, then ~/.docker/config.json), and the answer to its
// challenge: anonymous first; on 401, `Basic` sends the credentials, `Bearer` fetches a token from
// the realm it names (with the credentials, if any). Tokens are kept per registry and scope.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { header, request, type Remote, type RequestOptions, type Response } from './http.js';

export class AuthError extends Error {}

export function authFiles(): string[] {
  const out: string[] = [];
  if (process.env.REGISTRY_AUTH_FILE) out.push(process.env.REGISTRY_AUTH_FILE);
  if (process.env.XDG_RUNTIME_DIR) out.push(join(process.env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  out.push(join(process.env.HOME || homedir(), '.docker', 'config.json'));
  return out;
}

/** `user:password` for a registry host (host[:port]), from the first auth file that names it. */
export function credentialsFor(host: string): string | undefined {
  for (const file of authFiles()) {
    let auths: Record<string, { auth?: string; username?: string; password?: string }>;
    try {
      auths = (JSON.parse(readFileSync(file, 'utf8')) as { auths?: typeof auths }).auths ?? {};
    } catch {
      continue;
    }
    for (const [key, v] of Object.entries(auths)) {
      const keyHost = key.replace(/^https?:\/\//, '').split('/')[0];
      if (keyHost !== host) continue;
      if (v.auth) return Buffer.from(v.auth, 'base64').toString();
      if (v.username !== undefined) return `${v.username}:${v.password ?? ''}`;
    }
  }
  return undefined;
}

/** Authorization headers in use, per registry host and challenge scope. */
const tokens = new Map<string, string>();

function parseChallenge(c: string): { scheme: string; params: Record<string, string> } {
  const m = /^(\w+)\s*(.*)$/s.exec(c.trim());
  const params: Record<string, string> = {};
  if (!m) return { scheme: '', params };
  for (const p of m[2].matchAll(/(\w+)="([^"]*)"/g)) params[p[1]] = p[2];
  return { scheme: m[1].toLowerCase(), params };
}

/** Answer a 401's challenge for `host`: the Authorization header to use from now on, or an AuthError. */
async function answer(host: string, challenge: string | undefined, tlsVerify: boolean, certDir?: string): Promise<string> {
  const creds = credentialsFor(host);
  const basic = creds ? `Basic ${Buffer.from(creds).toString('base64')}` : undefined;
  const { scheme, params } = parseChallenge(challenge ?? '');
  if (scheme === 'basic') {
    if (!basic) throw new AuthError(`registry ${host} wants a login and no credentials for it were found (${authFiles().join(', ')})`);
    return basic;
  }
  if (scheme !== 'bearer' || !params.realm) throw new AuthError(`registry ${host} refused access (401) with an unknown challenge "${challenge ?? ''}"`);
  const url = new URL(params.realm);
  if (params.service) url.searchParams.set('service', params.service);
  if (params.scope) url.searchParams.set('scope', params.scope);
  const res = await request(url.toString(), { headers: basic ? { authorization: basic } : {}, tlsVerify, certDir });
  if (res.status !== 200) throw new AuthError(`registry ${host}: its token service refused ${creds ? 'the credentials' : 'anonymous access'} (HTTP ${res.status})`);
  const body = JSON.parse(res.body.toString()) as { token?: string; access_token?: string };
  const token = body.token ?? body.access_token;
  if (!token) throw new AuthError(`registry ${host}: its token service gave no token`);
  return `Bearer ${token}`;
}

/** A blob URL of a registry as a Remote: current credentials in its headers, renewed on 401. */
export function registryRemote(url: string, tlsVerify: boolean, certDir?: string): Remote {
  const host = new URL(url).host;
  return {
    url,
    tlsVerify,
    ...(certDir ? { certDir } : {}),
    headers: (): Record<string, string> => {
      const h = tokens.get(host);
      return h ? { authorization: h } : {};
    },
    renew: async (challenge) => {
      try {
        tokens.set(host, await answer(host, challenge, tlsVerify, certDir));
        return true;
      } catch {
        return false;
      }
    },
  };
}

/** A request to a registry, answering one 401 challenge; a refusal after that is an AuthError. */
export async function registryRequest(url: string, o: RequestOptions = {}): Promise<Response> {
  const host = new URL(url).host;
  const send = (): Promise<Response> => {
    const h = tokens.get(host);
    return request(url, { ...o, headers: { ...o.headers, ...(h ? { authorization: h } : {}) } });
  };
  let res = await send();
  if (res.status !== 401) return res;
  tokens.set(host, await answer(host, header(res.headers['www-authenticate']), o.tlsVerify !== false, o.certDir));
  res = await send();
  if (res.status === 401) throw new AuthError(`registry ${host} refused the credentials${credentialsFor(host) ? '' : ' (none were found)'} (HTTP 401)`);
  return res;
}
