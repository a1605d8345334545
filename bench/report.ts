// Figures, the targets of /work/shared/TARGETS.md, and the report: a markdown table (one row per
// figure, peers side by side, tarstack's ratios and the target check) or JSON for machines.
export type Unit = 's' | 'MiB/s' | 'IOPS' | 'MiB';

export interface Cell {
  value?: number; // the median, in the figure's unit
  runs?: number[];
  note?: string; // "wrong tree", "> 45 s", "sync 0.8 s", an error…
  excluded?: boolean; // measured but gets no ratio (wrong tree)
  aboveNode?: number; // peak RSS minus a bare node process's, in MiB (tarstack)
}

export interface Target {
  text: string;
  /** true/false, or undefined when tarstack has no figure to check. */
  met(cells: Record<string, Cell>): boolean | undefined;
}

export interface FigureSpec {
  id: string;
  label: string;
  unit: Unit;
  better: 'lower' | 'higher';
  target?: Target;
}

export interface FigureResult extends FigureSpec {
  cells: Record<string, Cell>; // by peer name
}

export interface Meta {
  date: string;
  kernel: string;
  cpus: number;
  node: string;
  quick: boolean;
  reps: number;
  shapes: string[];
  peers: { name: string; fuse: boolean; version: string; unavailable?: string; writable: boolean; notes: string[] }[];
  nodeBaselineMiB?: number;
  seconds?: number;
  load?: [number, number]; // 1-minute load average at start and end: other work on the machine skews figures
  busyStarts?: [number, number]; // cases that began on busy CPUs, of all cases measured
}

const KERNEL = 'kernel overlayfs';
const TARSTACK = 'tarstack';

const num = (c: Cell | undefined): number | undefined => (c && !c.excluded ? c.value : undefined);
const ratioTo = (cells: Record<string, Cell>, peer: string): number | undefined => {
  const t = num(cells[TARSTACK]);
  const p = num(cells[peer]);
  return t !== undefined && p !== undefined && p > 0 ? t / p : undefined;
};

export const ratioAtMost = (r: number): Target => ({
  text: `≤ ${r}× kernel`,
  met: (c) => map(ratioTo(c, KERNEL), (x) => x <= r),
});
export const shareAtLeast = (r: number): Target => ({
  text: `≥ ${r * 100} % of kernel`,
  met: (c) => map(ratioTo(c, KERNEL), (x) => x >= r),
});
export const secondsAtMost = (s: number): Target => ({
  text: `≤ ${s} s`,
  met: (c) => map(num(c[TARSTACK]), (x) => x <= s),
});
export const aboveNodeAtMost = (mib: number): Target => ({
  text: `≤ ${mib} MiB above bare node`,
  met: (c) => map(c[TARSTACK]?.aboveNode, (x) => x <= mib),
});
const map = <T, U>(v: T | undefined, f: (v: T) => U): U | undefined => (v === undefined ? undefined : f(v));

/** The best FUSE peer other than tarstack, for the second ratio. */
function bestFuse(f: FigureResult, meta: Meta): { peer: string; ratio: number } | undefined {
  const fuse = meta.peers.filter((p) => p.fuse && p.name !== TARSTACK && num(f.cells[p.name]) !== undefined);
  if (fuse.length === 0) return undefined;
  const sign = f.better === 'lower' ? 1 : -1;
  const best = fuse.reduce((a, b) => (sign * num(f.cells[b.name])! < sign * num(f.cells[a.name])! ? b : a));
  const ratio = ratioTo(f.cells, best.name);
  return ratio === undefined ? undefined : { peer: best.name, ratio };
}

/** Three significant digits below 10 (and 0 as 0), whole numbers above. */
const sig = (v: number): string => (v === 0 ? '0' : v < 10 ? v.toPrecision(3) : v < 100 ? v.toFixed(1) : v.toFixed(0));
const fmt = (v: number, unit: Unit): string => `${sig(v)} ${unit}`;
const ratio = (r: number): string => `${r >= 0.1 ? r.toFixed(2) : r.toPrecision(2)}×`;

function cellText(c: Cell | undefined, unit: Unit): string {
  if (!c) return '—';
  const parts: string[] = [];
  if (c.value !== undefined) parts.push(fmt(c.value, unit));
  if (c.note) parts.push(c.value !== undefined ? `(${c.note})` : c.note);
  return parts.join(' ') || '—';
}

export function markdown(figures: FigureResult[], meta: Meta): string {
  const peers = meta.peers.map((p) => p.name);
  const lines = [
    `# tarstack bench, ${meta.date}`,
    '',
    `Linux ${meta.kernel}, ${meta.cpus} CPUs, node ${meta.node}; ${meta.quick ? '--quick (shapes 10× smaller, 1 run each)' : `median of ${meta.reps}`}; ` +
      `"cold" = remount + drop_caches before each run.` + (meta.seconds ? ` Run took ${(meta.seconds / 60).toFixed(1)} min.` : ''),
    `Data: ${meta.shapes.join('; ')}.`,
    `Peers: ${meta.peers.map((p) => `${p.name} ${p.version}${p.unavailable ? ` (not run: ${p.unavailable})` : ''}${p.unavailable || p.writable ? '' : ' (read-only)'}`).join('; ')}.`,
  ];
  if (meta.load) lines.push(`Load average (1 min) at start ${meta.load[0]}, at end ${meta.load[1]}${meta.load[0] > 0.5 ? ': the machine was busy before the run began, so figures may be skewed' : ''}.`);
  if (meta.busyStarts?.[0]) lines.push(`**${meta.busyStarts[0]} of ${meta.busyStarts[1]} runs began while other processes kept the CPUs ≥ 15 % busy**: treat those figures with care.`);
  if (meta.nodeBaselineMiB !== undefined) lines.push(`Bare \`node\` process peak RSS (VmHWM): ${meta.nodeBaselineMiB.toFixed(0)} MiB.`);
  for (const p of meta.peers) for (const n of p.notes) lines.push(`- ${p.name}: ${n}`);
  lines.push('', `| figure | ${peers.join(' | ')} | tarstack ÷ kernel | tarstack ÷ best FUSE | target | met |`);
  lines.push(`|---|${peers.map(() => '---:').join('|')}|---:|---:|---|:-:|`);
  for (const f of figures) {
    const rk = ratioTo(f.cells, KERNEL);
    const bf = bestFuse(f, meta);
    const met = f.target?.met(f.cells);
    lines.push(`| ${f.label} | ${peers.map((p) => cellText(f.cells[p], f.unit)).join(' | ')} | ` +
      `${rk === undefined ? '—' : ratio(rk)} | ${bf ? `${ratio(bf.ratio)} ${bf.peer}` : '—'} | ` +
      `${f.target?.text ?? '—'} | ${met === undefined ? '' : met ? '✓' : '✗'} |`);
  }
  return lines.join('\n') + '\n';
}

export function json(figures: FigureResult[], meta: Meta): string {
  return JSON.stringify({
    meta,
    figures: figures.map((f) => ({
      id: f.id, label: f.label, unit: f.unit, better: f.better, cells: f.cells,
      ratioToKernel: ratioTo(f.cells, KERNEL) ?? null,
      ratioToBestFuse: bestFuse(f, meta) ?? null,
      target: f.target?.text ?? null,
      met: f.target?.met(f.cells) ?? null,
    })),
  }, null, 1) + '\n';
}
