// Human and machine output: aligned tables, sizes, JSON, and progress lines on a terminal only.

export function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}

export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  process.stdout.write([line(header), ...rows.map(line)].join('\n') + '\n');
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** A progress reporter that redraws one stderr line on a TTY and stays silent otherwise. */
export function progress(label: string): { update(done: number, total: number): void; done(): void } {
  if (!process.stderr.isTTY) return { update() {}, done() {} };
  const start = Date.now();
  let last = 0;
  return {
    update(done, total) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const secs = (now - start) / 1000;
      const rate = secs > 0 ? `${formatBytes(done / secs)}/s` : '';
      const pct = total > 0 ? Math.floor((done / total) * 100) : 100;
      process.stderr.write(`\r${label}: ${pct}% (${formatBytes(done)} of ${formatBytes(total)}) ${rate}\x1b[K`);
    },
    done() {
      process.stderr.write('\r\x1b[K');
    },
  };
}

export function warn(message: string): void {
  process.stderr.write(`tarstack: warning: ${message}\n`);
}
