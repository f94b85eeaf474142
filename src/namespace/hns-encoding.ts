// The blob encoding on a hierarchical-namespace account (docs/SEMANTICS.md §1, HNS): POSIX attributes from the service's
// Owner/Group/Permissions/Acl/ResourceType instead of metadata, and POSIX ACL text for system.posix_acl_access.
// Pure functions, no I/O.
//
// Precedence (AMLFS: "for a storage account with hierarchical namespace enabled, Azure Managed Lustre reads POSIX
// attributes from the blob header"): the service's owner, group and permissions win over `owner`/`group`/
// `permissions` metadata (written by a flat-account tool); metadata is used only where the service gives no usable
// value (a fallback, counted). `modtime`, symlink markers and everything else still come from metadata as on flat
// accounts; ResourceType=directory makes a directory without any stub.
import type { BlobInfo, HnsAttributes } from '../blob/blob-store.js';
import { DEFAULT_MODES, blobAttributes, defaultMode, type BlobAttributes, type DefaultModes, type MetadataWarning } from './blob-encoding.js';
import type { IdKind, IdMap } from './id-map.js';

const S_ISVTX = 0o1000;

export interface HnsBlobAttributes extends BlobAttributes {
  /** The access ACL with numeric ids (`user::rwx,user:1001:r-x,group::r-x,mask::r-x,other::---`) when it has
   * entries beyond owner/group/other, else null (the mode says it all). */
  acl: string | null;
  /** Attributes the service did not give (or gave unusable) so metadata or the default was used. */
  fallbacks: string[];
  /** Metadata keys (owner, group, permissions) the service's values overrode. */
  metadataIgnored: string[];
  /** Identities (owners, groups, named ACL entries) not in the id map: [kind, identity]. */
  unknownIdentities: Array<[IdKind, string]>;
}

/** HNS permissions: `rwxr-x---`, the last x as `t` (sticky, x) or `T` (sticky, no x), optional `+` (extended ACL). */
export function parseHnsPermissions(value: string): number | undefined {
  const m = /^([r-][w-][x-])([r-][w-][x-])([r-][w-])([xtT-])(\+?)$/.exec(value);
  if (!m) return undefined;
  const bits = `${m[1]}${m[2]}${m[3]}${m[4] === 't' ? 'x' : m[4] === 'T' ? '-' : m[4]}`;
  let mode = 0;
  for (let i = 0; i < 9; i++) if (bits[i] !== '-') mode |= 1 << (8 - i);
  if (m[4] === 't' || m[4] === 'T') mode |= S_ISVTX;
  return mode;
}

/** `rwxr-x--t` for a mode (sticky as t/T), as HNS takes x-ms-permissions. */
export function formatHnsPermissions(mode: number): string {
  let s = '';
  for (let i = 8; i >= 0; i--) s += mode & (1 << i) ? 'rwx'[(8 - i) % 3] : '-';
  if (mode & S_ISVTX) s = s.slice(0, 8) + (s[8] === 'x' ? 't' : 'T');
  return s;
}

const PERM = /^[r-][w-][x-]$/;
const permBits = (p: string) => (p[0] === 'r' ? 4 : 0) | (p[1] === 'w' ? 2 : 0) | (p[2] === 'x' ? 1 : 0);
/** `r-x` for 5. */
export const permString = (bits: number) => `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${bits & 1 ? 'x' : '-'}`;

export interface AclEntry {
  tag: 'user' | 'group' | 'mask' | 'other';
  /** Numeric id of a named user/group entry; undefined for the owner, owning group, mask and other entries. */
  id?: number;
  perm: number;
}

/** Parses POSIX ACL text with numeric ids (the form kept in the metadata store). */
export function parseAclText(text: string): AclEntry[] {
  const out: AclEntry[] = [];
  for (const part of text.split(',')) {
    const [tag, id, perm] = part.split(':');
    if ((tag !== 'user' && tag !== 'group' && tag !== 'mask' && tag !== 'other') || perm === undefined || !PERM.test(perm)) continue;
    out.push({ tag, ...(id ? { id: Number(id) } : {}), perm: permBits(perm) });
  }
  return out;
}

export function formatAclText(entries: AclEntry[]): string {
  return entries.map((e) => `${e.tag}:${e.id ?? ''}:${permString(e.perm)}`).join(',');
}

/**
 * The access ACL of an HNS `Acl` value with identities mapped to ids: default-scope entries are dropped, named
 * entries whose identity is not in the map are dropped (reported in `unknown`). Null when nothing extends the mode.
 */
function accessAcl(acl: string, ids: IdMap, unknown: Array<[IdKind, string]>): AclEntry[] | null {
  const entries: AclEntry[] = [];
  let extended = false;
  for (const raw of acl.split(',')) {
    const parts = raw.trim().split(':');
    if (parts[0] === 'default') continue;
    const [tag, who, perm] = parts;
    if ((tag !== 'user' && tag !== 'group' && tag !== 'mask' && tag !== 'other') || perm === undefined || !PERM.test(perm)) continue;
    if (who && (tag === 'user' || tag === 'group')) {
      const r = ids.resolve(tag, who);
      if (!r.known) {
        unknown.push([tag, who]);
        continue;
      }
      entries.push({ tag, id: r.id, perm: permBits(perm) });
      extended = true;
    } else {
      if (tag === 'mask') extended = true;
      entries.push({ tag, perm: permBits(perm) });
    }
  }
  return extended ? entries : null;
}

/** Attributes of a listing entry that carries HNS attributes (`info.hns`); see the precedence rule above. */
export function hnsBlobAttributes(info: BlobInfo & { hns: HnsAttributes }, ids: IdMap, modes: DefaultModes = DEFAULT_MODES): HnsBlobAttributes {
  const flat = blobAttributes(info, modes);
  const hns = info.hns;
  const kind = hns.resourceType === 'directory' ? 'dir' : flat.kind;
  const fallbacks: string[] = [];
  const metadataIgnored: string[] = [];
  const unknownIdentities: Array<[IdKind, string]> = [];
  const overridden = new Set<string>();
  const metadataHas = (key: string) => Object.keys(info.metadata).some((k) => k.toLowerCase() === key);

  const id = (which: IdKind, value: string | undefined, fromMetadata: number): number => {
    const key = which === 'user' ? 'owner' : 'group';
    if (value === undefined) {
      fallbacks.push(key);
      return fromMetadata;
    }
    overridden.add(key);
    if (metadataHas(key)) metadataIgnored.push(key);
    const r = ids.resolve(which, value);
    if (!r.known) unknownIdentities.push([which, value]);
    return r.id;
  };
  const uid = id('user', hns.owner, flat.uid);
  const gid = id('group', hns.group, flat.gid);

  const warnings: MetadataWarning[] = [];
  let mode = kind === flat.kind ? flat.mode : defaultMode(kind, modes);
  const parsed = hns.permissions === undefined ? undefined : parseHnsPermissions(hns.permissions);
  if (parsed === undefined) {
    fallbacks.push('permissions');
    if (hns.permissions !== undefined) {
      warnings.push({ key: 'x-ms-permissions', value: hns.permissions, reason: `permissions '${hns.permissions}' are not rwxr-x--- form` });
    }
  } else {
    mode = parsed;
    overridden.add('permissions');
    if (metadataHas('permissions')) metadataIgnored.push('permissions');
  }

  let acl: string | null = null;
  const entries = hns.acl ? accessAcl(hns.acl, ids, unknownIdentities) : null;
  if (entries) {
    // POSIX: with a mask entry, the group bits of the mode are the mask.
    const mask = entries.find((e) => e.tag === 'mask');
    if (mask) mode = (mode & ~0o070) | (mask.perm << 3);
    acl = formatAclText(entries);
  }
  // Warnings about metadata values the service's values replaced are moot.
  for (const w of flat.warnings) if (!overridden.has(w.key.toLowerCase())) warnings.push(w);
  return { kind, mode, uid, gid, mtimeMs: flat.mtimeMs, warnings, acl, fallbacks, metadataIgnored, unknownIdentities };
}

const ACL_XATTR_VERSION = 2;
const ACL_UNDEFINED_ID = 0xffffffff;
const TAG = { userObj: 0x01, user: 0x02, groupObj: 0x04, group: 0x08, mask: 0x10, other: 0x20 } as const;

/**
 * The `system.posix_acl_access` value (Linux's POSIX ACL xattr format: a little-endian u32 version 2, then one
 * {u16 tag, u16 perm, u32 id} per entry, sorted by tag then id) of an inode with an extended ACL. The owner, mask
 * (or owning group, without a mask) and other entries come from the mode, so a chmod shows at once; named entries
 * and the owning group's entry (under a mask) from the stored ACL.
 */
export function posixAclXattr(mode: number, aclText: string): Buffer {
  const entries = parseAclText(aclText);
  const hasMask = entries.some((e) => e.tag === 'mask');
  const ownGroup = entries.find((e) => e.tag === 'group' && e.id === undefined)?.perm ?? (mode >> 3) & 7;
  const out: Array<[tag: number, perm: number, id: number]> = [[TAG.userObj, (mode >> 6) & 7, ACL_UNDEFINED_ID]];
  for (const e of entries) if (e.tag === 'user' && e.id !== undefined) out.push([TAG.user, e.perm, e.id]);
  out.push([TAG.groupObj, hasMask ? ownGroup : (mode >> 3) & 7, ACL_UNDEFINED_ID]);
  for (const e of entries) if (e.tag === 'group' && e.id !== undefined) out.push([TAG.group, e.perm, e.id]);
  if (hasMask) out.push([TAG.mask, (mode >> 3) & 7, ACL_UNDEFINED_ID]);
  out.push([TAG.other, mode & 7, ACL_UNDEFINED_ID]);
  out.sort((a, b) => a[0] - b[0] || a[2] - b[2]);
  const buf = Buffer.alloc(4 + out.length * 8);
  buf.writeUInt32LE(ACL_XATTR_VERSION, 0);
  out.forEach(([tag, perm, id], i) => {
    buf.writeUInt16LE(tag, 4 + i * 8);
    buf.writeUInt16LE(perm, 6 + i * 8);
    buf.writeUInt32LE(id, 8 + i * 8);
  });
  return buf;
}
