// The identity map of a hierarchical-namespace mount (`--id-map FILE`): which uid/gid an Entra object ID or user
// principal name (the owners and groups HNS reports) stands for, and back for export. Pure parsing and lookup.
//
// Format, one mapping per line; `#` starts a comment, blank lines are ignored, fields are separated by spaces:
//   user  <object ID or UPN>  <uid>
//   group <object ID or name> <gid>
//   user  *  <uid>            # the uid of every unmapped owner (default 0, as for flat accounts)
//   group *  <gid>            # the gid of every unmapped group (default 0)
// `$superuser` is always 0 and a decimal owner/group is taken as the id itself. Identities compare
// case-insensitively (object IDs are GUIDs, UPNs are e-mail-like). Export writes the first identity mapped to an
// id, `$superuser` for 0, and leaves owner/group unchanged for an id with no identity.
import { UsageError } from '../errors.js';

export type IdKind = 'user' | 'group';

export interface ResolvedId {
  id: number;
  /** False when the identity was not in the map and the default was used. */
  known: boolean;
}

const SUPERUSER = '$superuser';
const MAX_ID = 0xfffffffe;

export class IdMap {
  private readonly forward = { user: new Map<string, number>(), group: new Map<string, number>() };
  private readonly backward = { user: new Map<number, string>(), group: new Map<number, string>() };
  private readonly defaults = { user: 0, group: 0 };

  /** Parses the map's text; `source` names it in errors (e.g. the file path). */
  static parse(text: string, source = 'id map'): IdMap {
    const map = new IdMap();
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/#.*$/, '').trim();
      if (line === '') return;
      const fields = line.split(/\s+/);
      const where = `${source} line ${i + 1}`;
      if (fields.length !== 3 || (fields[0] !== 'user' && fields[0] !== 'group')) {
        throw new UsageError(`${where}: '${raw.trim()}' is not 'user IDENTITY UID' or 'group IDENTITY GID'`);
      }
      const [kind, identity, number] = fields as [IdKind, string, string];
      if (!/^[0-9]+$/.test(number) || Number(number) > MAX_ID) {
        throw new UsageError(`${where}: '${number}' is not a ${kind === 'user' ? 'uid' : 'gid'} (a decimal number up to ${MAX_ID})`);
      }
      map.add(kind, identity, Number(number), where);
    });
    return map;
  }

  private add(kind: IdKind, identity: string, id: number, where: string): void {
    if (identity === '*') {
      this.defaults[kind] = id;
      return;
    }
    const key = identity.toLowerCase();
    if (key === SUPERUSER) throw new UsageError(`${where}: '$superuser' is always 0 and cannot be mapped`);
    if (this.forward[kind].has(key)) throw new UsageError(`${where}: ${kind} '${identity}' is mapped twice`);
    this.forward[kind].set(key, id);
    if (!this.backward[kind].has(id)) this.backward[kind].set(id, identity);
  }

  /** The uid/gid an HNS owner or group stands for. */
  resolve(kind: IdKind, identity: string): ResolvedId {
    if (identity.toLowerCase() === SUPERUSER) return { id: 0, known: true };
    if (/^[0-9]+$/.test(identity) && Number(identity) <= MAX_ID) return { id: Number(identity), known: true };
    const id = this.forward[kind].get(identity.toLowerCase());
    return id === undefined ? { id: this.defaults[kind], known: false } : { id, known: true };
  }

  /** The identity export sets for a uid/gid, or undefined when none is known (then it is left unchanged). */
  identityOf(kind: IdKind, id: number): string | undefined {
    if (id === 0) return SUPERUSER;
    return this.backward[kind].get(id);
  }
}
