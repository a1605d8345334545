// An object that is `target` but for a few members: every other method is the target's own (bound
// to it) and every field is read through, so whatever the target's class offers, optional members
// included, the forwarder offers the same (a lease of a shared layer, a served instance).

export function forwarding<T extends object>(target: T, own: Partial<T>): T {
  const out: Record<string, unknown> = {};
  for (let o: object | null = target; o && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const key of Object.getOwnPropertyNames(o)) {
      if (key === 'constructor' || key in out || key in own) continue;
      const d = Object.getOwnPropertyDescriptor(o, key)!;
      if (typeof d.value === 'function') out[key] = (d.value as (...a: unknown[]) => unknown).bind(target);
      else Object.defineProperty(out, key, { get: () => (target as Record<string, unknown>)[key], enumerable: true });
    }
  }
  return Object.assign(out, own) as T;
}
