// The fixture catalogue: tars covering what tarstack must read, each with a manifest saying which
// tool made it, what it covers and what tarstack must do with it. Builders write into a given dir.
// Tool-made ones live in fixtures-tools.ts, programmatic ones in fixtures-stream.ts.
import fs from 'node:fs';
import path from 'node:path';
import * as raw from './rawtar.js';
import { toolFixtures, hugeFixtureNames } from './fixtures-tools.js';
import { streamFixtures } from './fixtures-stream.js';

export type Maker = 'gnu-tar' | 'bsdtar' | 'tar-stream' | 'raw';

/**
 * serve: image add and mount succeed, the mount equals the GNU tar extraction.
 * serve-with-warnings: as serve, but GNU tar skips the members in `skipped`; tarstack skips them
 *   too and says so on stderr (a warning each, exit 0).
 * refuse: `image add` exits non-zero with exactly one stderr line `tarstack: ...`.
 */
export type Expect = 'serve' | 'serve-with-warnings' | 'refuse';

export interface Fixture {
  name: string;
  path: string; // the tar (a directory for the "directory given as tar" case)
  maker: Maker;
  expect: Expect;
  covers: string[];
  /** Member names (latin1 byte strings, as stored) GNU tar refuses; tarstack must skip them too. */
  skipped?: string[];
  /** false when GNU tar's result is not a sensible standard (see note); only confinement is checked. */
  compare: boolean;
  note?: string;
}

export type FixtureBuilder = (dir: string) => Promise<Fixture>;

/** Tars tarstack must refuse. GNU tar's own reaction, for comparison, is in each note. */
export const brokenFixtures: Record<string, FixtureBuilder> = {
  'truncated-mid-body': async (dir) => {
    const tar = twoFiles();
    return broken(dir, 'truncated-mid-body', tar.subarray(0, 512 + 1000), 'GNU tar: "Unexpected EOF in archive", exit 2');
  },
  'truncated-mid-header': async (dir) => {
    const tar = twoFiles();
    return broken(dir, 'truncated-mid-header', tar.subarray(0, B_HEADER + 200), 'GNU tar: exits 0 silently (takes the short record for the end)');
  },
  'bad-checksum': async (dir) => {
    const tar = twoFiles();
    tar[B_HEADER + 10] = 0x58; // a byte after the NUL of b's name: same name, checksum no longer matches
    return broken(dir, 'bad-checksum', tar, 'GNU tar: "Skipping to next header", extracts the rest, exit 2');
  },
  'random-bytes': async (dir) => {
    let seed = 12345; // deterministic noise so a failure reproduces
    const buf = Buffer.alloc(8192, 0).map(() => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff);
    return broken(dir, 'random-bytes', Buffer.from(buf), 'GNU tar: "This does not look like a tar archive", exit 2');
  },
  'zero-byte-file': async (dir) => broken(dir, 'zero-byte-file', Buffer.alloc(0), 'GNU tar: "This does not look like a tar archive", exit 2'),
  'a-directory': async (dir) => {
    const p = path.join(dir, 'a-directory.tar');
    fs.mkdirSync(p);
    return { name: 'a-directory', path: p, maker: 'raw', expect: 'refuse', compare: false, covers: ['a directory given as the tar'] };
  },
};

/** Serveable oddities of archive framing, made byte by byte. */
export const framingFixtures: Record<string, FixtureBuilder> = {
  'empty-archive': async (dir) => write(dir, 'empty-archive', raw.END, ['only the end-of-archive blocks: an empty image']),
  'no-eof-marker': async (dir) => write(dir, 'no-eof-marker', twoFiles().subarray(0, B_HEADER + 1024), ['no end-of-archive blocks after the last member (GNU tar accepts it silently)']),
  'lone-zero-block': async (dir) => write(dir, 'lone-zero-block', twoFiles().subarray(0, B_HEADER + 1536), ['one zero block then EOF (GNU tar: "A lone zero block", exit 0)']),
};

export const allFixtureBuilders: Record<string, FixtureBuilder> = {
  ...toolFixtures,
  ...streamFixtures,
  ...framingFixtures,
  ...brokenFixtures,
};

/** Builds the named fixtures (default: all; the huge ones, which write gigabytes when extracted,
 *  only with TARSTACK_TEST_HUGE=1). */
export async function buildFixtures(dir: string, names?: string[]): Promise<Fixture[]> {
  const out: Fixture[] = [];
  const wanted = names ?? Object.keys(allFixtureBuilders).filter((n) => !hugeFixtureNames.has(n) || process.env['TARSTACK_TEST_HUGE'] === '1');
  for (const name of wanted) {
    const build = allFixtureBuilders[name];
    if (!build) throw new Error(`no fixture named ${name}`);
    const sub = path.join(dir, name);
    fs.mkdirSync(sub, { recursive: true });
    out.push(await build(sub));
  }
  return out;
}

/** Two ustar members, "a" (2000 bytes: 4 body blocks) and "b", then the end marker: the base the
 *  broken ones damage. b's header starts at B_HEADER. */
const B_HEADER = 512 + 2048;
function twoFiles(): Buffer {
  return Buffer.concat([
    raw.entry({ name: 'a', mtime: 1_000_000_000 }, 'A'.repeat(1999) + '\n'),
    raw.entry({ name: 'b', mtime: 1_000_000_000 }, 'world\n'),
    raw.END,
    Buffer.alloc(512 * 16), // zero padding after the end marker, as tools pad to whole records
  ]);
}

function write(dir: string, name: string, bytes: Buffer, covers: string[]): Fixture {
  const p = path.join(dir, `${name}.tar`);
  fs.writeFileSync(p, bytes);
  return { name, path: p, maker: 'raw', expect: 'serve', compare: true, covers };
}

function broken(dir: string, name: string, bytes: Buffer, note: string): Fixture {
  return { ...write(dir, name, bytes, [name.replaceAll('-', ' ')]), expect: 'refuse', compare: false, note };
}
