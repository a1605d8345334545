// The bench's SVG chart is drawn from a run's JSON, never by hand: the chart in docs/bench (shown in
// the README) is exactly what bench/chart.ts makes from the JSON beside it, and a chart says per
// figure and peer how many times kernel overlayfs's cost it is (a time divided by the kernel's, a
// rate the kernel's divided by the peer's), naming what was not run.
import test from 'ava';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chartableSections, ratioChart, type ReportJson } from '../bench/chart.js';

const docs = (name: string) => fileURLToPath(new URL(`../../docs/bench/${name}`, import.meta.url));

test("docs/bench's chart is the one its JSON makes, and the README shows it", (t) => {
  const report = JSON.parse(fs.readFileSync(docs('peers-quick.json'), 'utf8')) as ReportJson;
  const [section] = chartableSections(report);
  t.truthy(section, 'a section measured against the kernel');
  t.is(fs.readFileSync(docs('peers-quick.svg'), 'utf8'), ratioChart(report, section!, 'peers-quick.json'));
  t.true(fs.readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8').includes('](docs/bench/peers-quick.svg)'));
});

test('one bar per figure and peer, as times the kernel cost; what was not run is named', (t) => {
  const report: ReportJson = {
    meta: {
      date: '2026-12-02T00:00:00Z', kernel: '6.1', cpus: 2, node: 'v20', quick: true, reps: 1, shapes: [],
      sections: [{ id: 'peers', title: 'Peers', subject: 'tarstack', reference: 'kernel overlayfs' }],
      peers: ['kernel overlayfs', 'tarstack', 'fuse-overlayfs'].map((name) => ({ name, fuse: name !== 'kernel overlayfs', version: '1', writable: true, notes: [] })),
    },
    figures: [
      { id: 'a', section: 'peers', label: 'untar', unit: 's', better: 'lower', cells: { 'kernel overlayfs': { value: 2 }, tarstack: { value: 4 }, 'fuse-overlayfs': { value: 1 } } },
      { id: 'b', section: 'peers', label: 'read', unit: 'MiB/s', better: 'higher', cells: { 'kernel overlayfs': { value: 300 }, tarstack: { value: 100 } } },
    ],
  };
  const svg = ratioChart(report, 'peers');
  const bars = [...svg.matchAll(/<rect [^>]*><title>([^<]*)<\/title><\/rect>/g)].map((m) => m[1]);
  t.deepEqual(bars, ['tarstack: untar: 2.00× kernel', 'fuse-overlayfs: untar: 0.50× kernel', 'tarstack: read: 3.00× kernel']);
  t.regex(svg, /fuse-overlayfs: not run/);
  t.regex(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
});
