// Attr helpers shared by layers and the overlay.
import type { Attr } from '../vfs/api.js';

export function emptyAttr(): Attr {
  return { ino: 0, mode: 0, nlink: 0, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, atimeSec: 0, atimeNsec: 0, mtimeSec: 0, mtimeNsec: 0, ctimeSec: 0, ctimeNsec: 0 };
}

/** Linux's dev_t encoding (new_encode_dev in include/linux/kdev_t.h, as glibc's makedev). */
export function makedev(major: number, minor: number): number {
  return (minor & 0xff) + (major & 0xfff) * 0x100 + (minor - (minor & 0xff)) * 0x1000 + (major - (major & 0xfff)) * 0x100000000;
}

export function majorOf(dev: number): number {
  return (Math.floor(dev / 0x100) & 0xfff) + (Math.floor(dev / 0x100000000) & ~0xfff);
}

export function minorOf(dev: number): number {
  return (dev & 0xff) + (Math.floor(dev / 0x1000) & ~0xff & 0xfffff00);
}

/** Nanoseconds since the epoch as [seconds, nanoseconds 0..999999999], flooring before 1970. */
export function splitNs(ns: bigint): [number, number] {
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += 1_000_000_000n;
  }
  return [Number(sec), Number(nsec)];
}
