// The report's ratio table as an SVG chart, read from a run's JSON (report.ts json()), never drawn by
// hand: one group per figure, a bar per peer (the section's subject first) from kernel overlayfs's
// 1× on a log scale, so left of the line is faster than the kernel and right is slower. A time, or
// memory, is divided by the kernel's; a rate (MiB/s, IOPS) is the kernel's divided by the peer's, so
// every bar reads the same way: how many times the kernel's cost. The bench writes one chart per
// section measured against the kernel beside each result; `node dist/bench/chart.js RESULT.json
// [SECTION] > FILE.svg` makes one from a saved result.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cell, Meta, Unit } from './report.js';

export interface ReportJson {
  meta: Meta;
  figures: Array<{ id: string; section: string; label: string; unit: Unit; better: 'lower' | 'higher'; cells: Record<string, Cell> }>;
}

const KERNEL = 'kernel overlayfs';
const COLORS = ['#d95f02', '#1b9e77', '#7570b3', '#e7298a', '#66a61e', '#e6ab02'];
const W = 960;
const LABEL_W = 360;
const PLOT_L = LABEL_W + 20;
const PLOT_R = W - 70;
const BAR = 13;
const GAP = 3;
const GROUP_GAP = 12;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const usable = (c: Cell | undefined): number | undefined => (c && !c.excluded && c.value !== undefined && c.value > 0 ? c.value : undefined);
const times = (r: number): string => `${r >= 10 ? r.toFixed(0) : r >= 0.1 ? r.toFixed(2) : r.toPrecision(2)}×`;

/** How many times the kernel's cost a peer's figure is (undefined: either is missing). */
function costRatio(f: ReportJson['figures'][number], peer: string): number | undefined {
  const k = usable(f.cells[KERNEL]);
  const v = usable(f.cells[peer]);
  if (k === undefined || v === undefined) return undefined;
  return f.better === 'lower' ? v / k : k / v;
}

/** The sections of a report whose figures are divided by kernel overlayfs. */
export function chartableSections(report: ReportJson): string[] {
  return report.meta.sections.filter((s) => s.reference === KERNEL && report.figures.some((f) => f.section === s.id && usable(f.cells[KERNEL]) !== undefined)).map((s) => s.id);
}

export function ratioChart(report: ReportJson, sectionId: string, source = ''): string {
  const section = report.meta.sections.find((s) => s.id === sectionId);
  if (!section) throw new Error(`no section ${sectionId} in the report (it has ${report.meta.sections.map((s) => s.id).join(', ')})`);
  const figures = report.figures.filter((f) => f.section === sectionId && usable(f.cells[KERNEL]) !== undefined);
  const named = report.meta.peers.map((p) => p.name).filter((n) => n !== KERNEL && figures.some((f) => f.cells[n]));
  const peers = [section.subject, ...named.filter((n) => n !== section.subject)].filter((n) => named.includes(n));
  const ratios = figures.flatMap((f) => peers.map((p) => costRatio(f, p))).filter((r): r is number => r !== undefined);
  const lo = Math.min(0.5, ...ratios.map((r) => r / 1.3));
  const hi = Math.max(4, ...ratios.map((r) => r * 1.3));
  const x = (r: number): number => PLOT_L + ((Math.log10(r) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (PLOT_R - PLOT_L);
  const ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].filter((t) => t >= lo && t <= hi);

  const top = 92;
  const groupH = peers.length * (BAR + GAP) - GAP;
  const bottom = top + figures.length * (groupH + GROUP_GAP);
  const H = bottom + 64;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="12" y="22" font-size="15" font-weight="bold">${esc(section.title)}</text>`,
    `<text x="12" y="42" fill="#444">each figure ÷ kernel overlayfs (= 1): a time or memory divided by the kernel's, a rate the kernel's divided by the peer's; left of 1 is faster, right is slower</text>`,
  ];
  peers.forEach((p, i) => {
    const lx = 12 + i * 190;
    out.push(`<rect x="${lx}" y="56" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`, `<text x="${lx + 18}" y="66"${p === section.subject ? ' font-weight="bold"' : ''}>${esc(p)}</text>`);
  });
  for (const t of ticks) {
    out.push(`<line x1="${x(t).toFixed(1)}" y1="${top - 8}" x2="${x(t).toFixed(1)}" y2="${bottom}" stroke="${t === 1 ? '#000' : '#ddd'}" stroke-width="${t === 1 ? 1.5 : 1}"/>`);
    out.push(`<text x="${x(t).toFixed(1)}" y="${bottom + 16}" text-anchor="middle" fill="#444">${t}×</text>`);
  }
  out.push(`<text x="${x(1).toFixed(1)}" y="${top - 12}" text-anchor="middle" fill="#000">kernel overlayfs = 1</text>`);
  figures.forEach((f, g) => {
    const gy = top + g * (groupH + GROUP_GAP);
    const label = f.label.length > 58 ? `${f.label.slice(0, 57)}…` : f.label;
    out.push(`<text x="${LABEL_W}" y="${gy + groupH / 2 + 4}" text-anchor="end"><title>${esc(f.label)} (${f.unit}, ${f.better} is better)</title>${esc(label)}</text>`);
    peers.forEach((p, i) => {
      const y = gy + i * (BAR + GAP);
      const r = costRatio(f, p);
      if (r === undefined) {
        const why = f.cells[p]?.note ?? (f.cells[p] ? 'no figure' : 'not run');
        out.push(`<text x="${(x(1) + 6).toFixed(1)}" y="${y + BAR - 3}" fill="#888" font-size="11">${esc(p)}: ${esc(why)}</text>`);
        return;
      }
      const [a, b] = [x(Math.min(r, 1)), x(Math.max(r, 1))];
      out.push(`<rect x="${a.toFixed(1)}" y="${y}" width="${Math.max(b - a, 1).toFixed(1)}" height="${BAR}" fill="${COLORS[i % COLORS.length]}"><title>${esc(`${p}: ${f.label}: ${times(r)} kernel`)}</title></rect>`);
      const right = r >= 1;
      out.push(`<text x="${(right ? b + 4 : a - 4).toFixed(1)}" y="${y + BAR - 2}" text-anchor="${right ? 'start' : 'end'}" font-size="11">${times(r)}</text>`);
    });
  });
  const m = report.meta;
  const how = m.quick ? '--quick (data 10× smaller, 1 run each)' : `median of ${m.reps} runs`;
  const load = m.load ? `, load ${m.load[0]} → ${m.load[1]}` : '';
  const notRun = m.peers.filter((p) => p.unavailable && p.name !== KERNEL).map((p) => `${p.name} not run (${p.unavailable})`);
  if (notRun.length) out.push(`<text x="12" y="${H - 30}" fill="#666" font-size="11">${esc(notRun.join('; '))}</text>`);
  out.push(`<text x="12" y="${H - 12}" fill="#666" font-size="11">${esc(`tarstack bench ${m.date.slice(0, 10)}, ${how}, Linux ${m.kernel}, ${m.cpus} CPUs${load}${source ? `; generated from ${source}` : ''}`)}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// `node dist/bench/chart.js RESULT.json [SECTION]`: the chart of a saved result on stdout.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, section] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node dist/bench/chart.js RESULT.json [SECTION] > chart.svg\n');
    process.exit(2);
  }
  const report = JSON.parse(readFileSync(file, 'utf8')) as ReportJson;
  const id = section ?? chartableSections(report)[0];
  if (!id) throw new Error(`${file}: no section measured against kernel overlayfs`);
  process.stdout.write(ratioChart(report, id, basename(file)));
}
