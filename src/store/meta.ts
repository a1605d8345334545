// Versioned JSON metadata: written atomically, read with a check that names the file when it is
// truncated or edited into nonsense, so a broken store gives one clear line, never a stack trace.
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { writingTo } from '../util/error-funnel.js';

export const META_VERSION = 1;

export function writeMeta(path: string, value: { version: number }): void {
  writingTo(path, () => writeFileAtomic(path, Buffer.from(JSON.stringify(value, null, 2) + '\n')));
}

/** Read and check a metadata file; `check` throws a message (string) when a field is wrong. */
export function readMeta<T extends { version: number }>(path: string, what: string, check: (v: Record<string, unknown>) => void): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read ${what} metadata ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new UserError(`${what} metadata ${path} is damaged (not valid JSON); restore it or remove it`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new UserError(`${what} metadata ${path} is damaged (not an object)`);
  const o = v as Record<string, unknown>;
  if (o.version !== META_VERSION) throw new UserError(`${what} metadata ${path} has version ${JSON.stringify(o.version)}, this tarstack reads ${META_VERSION}`);
  try {
    check(o);
  } catch (msg) {
    if (typeof msg !== 'string') throw msg;
    throw new UserError(`${what} metadata ${path} is damaged: ${msg}`);
  }
  return o as unknown as T;
}

/** Field checks for readMeta: each throws a message string. */
export const field = {
  str(o: Record<string, unknown>, k: string): void {
    if (typeof o[k] !== 'string' || o[k] === '') throw `"${k}" must be a non-empty string`;
  },
  num(o: Record<string, unknown>, k: string): void {
    if (typeof o[k] !== 'number' || !Number.isFinite(o[k])) throw `"${k}" must be a number`;
  },
  strOrNull(o: Record<string, unknown>, k: string): void {
    if (o[k] !== null && typeof o[k] !== 'string') throw `"${k}" must be a string or null`;
  },
  obj(o: Record<string, unknown>, k: string): Record<string, unknown> {
    const v = o[k];
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw `"${k}" must be an object`;
    return v as Record<string, unknown>;
  },
};
