// Figures, the targets of /work/shared/TARGETS.md, and the report: per suite, a markdown table (one
// row per figure, peers side by side, the subject's ratios and the target check) or JSON for
// machines. A suite names its subject (tarstack, its FUSE binding, tarstack-overlay) and the peer
// its first ratio is taken to (kernel overlayfs, or decompressing the archive once).
export type Unit = 's' | 'ms' | 'MiB/s' | 'IOPS' | 'MiB' | 'KiB' | '%' | 'threads';

export interface Cell {
  value?: number; // the median, in the figure's unit
  runs?: number[];
  note?: string; // "wrong tree", "> 45 s", "sync 0.8 s", an error…
  excluded?: boolean; // measured but gets no ratio (wrong tree)
  aboveNode?: number; // peak RSS minus a bare node process's, in MiB (tarstack)
}

/** Whose figures a table is about, and what its first ratio divides by. */
export interface Section {
  id: string;
  title: string;
  subject: string; // a peer name
  reference?: string; // a peer name; none where the figures are absolute (one peer)
}

export interface Target {
  text: string;
  /** true/false, or undefined when the subject has no figure to check. */
  met(cells: Record<string, Cell>, s: Section): boolean | undefined;
}

export interface FigureSpec {
  id: string;
  label: string;
  unit: Unit;
  better: 'lower' | 'higher';
  target?: Target;
}

export interface FigureResult extends FigureSpec {
  section: string; // Section.id
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
  sections: Section[];
  peers: { name: string; fuse: boolean; version: string; unavailable?: string; writable: boolean; notes: string[] }[];
  nodeBaselineMiB?: number;
  seconds?: number;
  load?: [number, number]; // 1-minute load average at start and end: other work on the machine skews figures
  busyStarts?: [number, number]; // cases that began on busy CPUs, of all cases measured
}

const num = (c: Cell | undefined): number | undefined => (c && !c.excluded ? c.value : undefined);
const ratioOf = (cells: Record<string, Cell>, subject: string, peer: string | undefined): number | undefined => {
  if (peer === undefined) return undefined;
  const t = num(cells[subject]);
  const p = num(cells[peer]);
  return t !== undefined && p !== undefined && p > 0 ? t / p : undefined;
};

/**
 * What a ratio target compares the subject with: a name for the section's reference (as the text
 * calls it), or `{ peer }`, another peer of the section by its name ("≥ 70 % of curl -r").
 */
type Versus = string | { peer: string };
const versus = (v: Versus): { text: string; peer: (s: Section) => string | undefined } =>
  typeof v === 'string' ? { text: v, peer: (s) => s.reference } : { text: v.peer, peer: () => v.peer };

export const shareAtLeast = (r: number, of: Versus = 'kernel'): Target => {
  const v = versus(of);
  return { text: `≥ ${r * 100} % of ${v.text}`, met: (c, s) => map(ratioOf(c, s.subject, v.peer(s)), (x) => x >= r) };
};
/** The subject at most `r` times what it is compared with (a decompressor: "≤ 1.3× gzip -dc"). */
export const timesAtMost = (r: number, of: Versus): Target => {
  const v = versus(of);
  return { text: `≤ ${r}× ${v.text}`, met: (c, s) => map(ratioOf(c, s.subject, v.peer(s)), (x) => x <= r) };
};
/** The subject at most `r` times kernel overlayfs (the peers suite's reference). */
export const ratioAtMost = (r: number): Target => timesAtMost(r, 'kernel');
export const secondsAtMost = (v: number): Target => valueAtMost(v, 's');
export const valueAtMost = (v: number, unit: Unit): Target => ({
  text: `≤ ${v} ${unit}`,
  met: (c, s) => map(num(c[s.subject]), (x) => x <= v),
});
export const aboveNodeAtMost = (mib: number): Target => ({
  text: `≤ ${mib} MiB above bare node`,
  met: (c, s) => map(c[s.subject]?.aboveNode, (x) => x <= mib),
});
const map = <T, U>(v: T | undefined, f: (v: T) => U): U | undefined => (v === undefined ? undefined : f(v));

/** The best FUSE peer other than the subject and its variants (tarstack-NAME, tarstack as a user), for the second ratio. */
function bestFuse(f: FigureResult, s: Section, meta: Meta): { peer: string; ratio: number } | undefined {
  let best: { peer: string; value: number } | undefined;
  for (const p of meta.peers) {
    const v = num(f.cells[p.name]);
    if (!p.fuse || p.name.startsWith(s.subject) || v === undefined || v <= 0) continue;
    if (!best || (f.better === 'lower' ? v < best.value : v > best.value)) best = { peer: p.name, value: v };
  }
  const t = num(f.cells[s.subject]);
  return best && t !== undefined ? { peer: best.peer, ratio: t / best.value } : undefined;
}

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

function table(s: Section, figures: FigureResult[], meta: Meta): string[] {
  // the section's columns: peers with a cell in it, in the report's peer order
  const peers = meta.peers.map((p) => p.name).filter((n) => figures.some((f) => f.cells[n]));
  const short = (name: string) => (name === 'kernel overlayfs' ? 'kernel' : name);
  const lines = [`| figure | ${peers.join(' | ')} | ${s.reference ? `${s.subject} ÷ ${short(s.reference)}` : 'ratio'} | ${s.subject} ÷ best FUSE | target | met |`];
  lines.push(`|---|${peers.map(() => '---:').join('|')}|---:|---:|---|:-:|`);
  for (const f of figures) {
    const rk = ratioOf(f.cells, s.subject, s.reference);
    const bf = bestFuse(f, s, meta);
    const met = f.target?.met(f.cells, s);
    lines.push(`| ${f.label} | ${peers.map((p) => cellText(f.cells[p], f.unit)).join(' | ')} | ` +
      `${rk === undefined ? '—' : ratio(rk)} | ${bf ? `${ratio(bf.ratio)} ${bf.peer}` : '—'} | ` +
      `${f.target?.text ?? '—'} | ${met === undefined ? '' : met ? '✓' : '✗'} |`);
  }
  return lines;
}

export function markdown(figures: FigureResult[], meta: Meta): string {
  const lines = [
    `# tarstack bench, ${meta.date}`,
    '',
    `Linux ${meta.kernel}, ${meta.cpus} CPUs, node ${meta.node}; ${meta.quick ? '--quick (data 10× smaller, 1 run each)' : `median of ${meta.reps}`}; ` +
      `"cold" = remount + drop_caches before each run.` + (meta.seconds ? ` Run took ${(meta.seconds / 60).toFixed(1)} min.` : ''),
    `Data: ${meta.shapes.join('; ')}.`,
    `Peers: ${meta.peers.map((p) => `${p.name} ${p.version}${p.unavailable ? ` (not run: ${p.unavailable})` : ''}${p.unavailable || p.writable ? '' : ' (read-only)'}`).join('; ')}.`,
  ];
  if (meta.load) lines.push(`Load average (1 min) at start ${meta.load[0]}, at end ${meta.load[1]}${meta.load[0] > 0.5 ? ': the machine was busy before the run began, so figures may be skewed' : ''}.`);
  if (meta.busyStarts?.[0]) lines.push(`**${meta.busyStarts[0]} of ${meta.busyStarts[1]} runs began while other processes kept the CPUs ≥ 15 % busy**: treat those figures with care.`);
  if (meta.nodeBaselineMiB !== undefined) lines.push(`Bare \`node\` process peak RSS (VmHWM): ${meta.nodeBaselineMiB.toFixed(0)} MiB.`);
  for (const p of meta.peers) for (const n of p.notes) lines.push(`- ${p.name}: ${n}`);
  for (const s of meta.sections) {
    const mine = figures.filter((f) => f.section === s.id);
    if (mine.length === 0) continue;
    if (meta.sections.length > 1) lines.push('', `## ${s.title}`);
    lines.push('', ...table(s, mine, meta));
  }
  return lines.join('\n') + '\n';
}

export function json(figures: FigureResult[], meta: Meta): string {
  const sections = new Map(meta.sections.map((s) => [s.id, s]));
  return JSON.stringify({
    meta,
    figures: figures.map((f) => {
      const s = sections.get(f.section)!;
      return {
        id: f.id, section: f.section, label: f.label, unit: f.unit, better: f.better, cells: f.cells,
        subject: s.subject, reference: s.reference,
        ratioToReference: ratioOf(f.cells, s.subject, s.reference) ?? null,
        ratioToKernel: ratioOf(f.cells, s.subject, 'kernel overlayfs') ?? null,
        ratioToBestFuse: bestFuse(f, s, meta) ?? null,
        target: f.target?.text ?? null,
        met: f.target?.met(f.cells, s) ?? null,
      };
    }),
  }, null, 1) + '\n';
}
