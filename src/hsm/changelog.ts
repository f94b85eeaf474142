// The changelog writer: appends Lustre-style records (CREAT, CLOSE, MTIME, TRUNC, UNLNK, RENME, HSM, ...) to the
// metadata store for policy engines, and formats them the way `lfs changelog` prints them.
import type { ChangelogRecord, MetaStore } from '../namespace/types.js';

/** Lustre changelog record type numbers, used in the printed line ("%02d%-5s"). */
const TYPE_NUMBERS: Record<string, number> = {
  MARK: 0,
  CREAT: 1,
  MKDIR: 2,
  HLINK: 3,
  SLINK: 4,
  MKNOD: 5,
  UNLNK: 6,
  RMDIR: 7,
  RENME: 8,
  RNMTO: 9,
  OPEN: 10,
  CLOSE: 11,
  LYOUT: 12,
  TRUNC: 13,
  SATTR: 14,
  XATTR: 15,
  HSM: 16,
  MTIME: 17,
  CTIME: 18,
  ATIME: 19,
};

export type ChangelogType = keyof typeof TYPE_NUMBERS;

/** HSM event names carried by HSM records, with Lustre's event numbers. */
export const HSM_EVENTS = { ARCHIVE: 0, RESTORE: 1, CANCEL: 2, RELEASE: 3, REMOVE: 4, STATE: 5 } as const;
export type HsmEvent = keyof typeof HSM_EVENTS;

export class Changelog {
  constructor(private readonly meta: MetaStore) {}

  record(type: ChangelogType, ino: number, parentIno: number, name: string, extra: Record<string, string | number> = {}): number {
    let flags = 0;
    if (type === 'UNLNK') flags = (extra.lastLink ? 0x1 : 0) | (extra.hadArchive ? 0x2 : 0);
    return this.meta.appendChangelog({ type, flags, ino, parentIno, name, extra });
  }

  /** An HSM record: event, errno (0 on success) and whether the file was dirty, packed as Lustre packs them. */
  hsm(event: HsmEvent, ino: number, error: number, dirty: boolean): number {
    // lustre_user.h: error in bits 0-6 (0x7f for an errno that does not fit), event in bits 7-9, CLF_HSM_DIRTY at
    // bit 10. A RESTORE record is 0x80, a STATE record 0x280, a dirty failed ARCHIVE 0x405.
    const err = error > 0x7e ? 0x7f : Math.max(0, error);
    const flags = err | ((HSM_EVENTS[event] & 0x7) << 7) | (dirty ? 0x400 : 0);
    return this.meta.appendChangelog({ type: 'HSM', flags, ino, parentIno: 0, name: '', extra: { event, error, dirty: dirty ? 1 : 0 } });
  }
}

/** One record as `lfs changelog` prints it: index, type, time, date, flags, target fid, parent fid, name. */
export function formatChangelogRecord(r: ChangelogRecord): string {
  const d = new Date(r.timeMs);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}000000`;
  const date = `${d.getUTCFullYear()}.${pad(d.getUTCMonth() + 1)}.${pad(d.getUTCDate())}`;
  const num = TYPE_NUMBERS[r.type] ?? 0;
  // A rename's target is the file it replaced (none: the zero FID); the renamed file is its source, s=.
  const target = r.type === 'RENME' ? (r.extra.targetIno ? fid(Number(r.extra.targetIno)) : ZERO_FID) : fid(r.ino);
  let line = `${r.index} ${pad(num)}${r.type.padEnd(5)} ${time} ${date} 0x${r.flags.toString(16)} t=[${target}]`;
  if (r.type === 'HSM') line += ` ${r.extra.event ?? ''}`;
  if (r.parentIno) line += ` p=[${fid(r.parentIno)}] ${r.name}`;
  if (r.type === 'RENME' && r.extra.sourceParent !== undefined) {
    line += ` s=[${fid(r.ino)}] sp=[${fid(Number(r.extra.sourceParent))}] ${r.extra.sourceName ?? ''}`;
  }
  return line;
}

const ZERO_FID = '0:0x0:0x0';

/** A Lustre-looking FID for an inode number (sequence 0x200000400, object id = inode, version 0). */
export function fid(ino: number): string {
  return `0x200000400:0x${ino.toString(16)}:0x0`;
}

export function changelogJson(r: ChangelogRecord): Record<string, unknown> {
  return { index: r.index, type: r.type, time: new Date(r.timeMs).toISOString(), flags: r.flags, ino: r.ino, parentIno: r.parentIno, name: r.name, ...r.extra };
}
