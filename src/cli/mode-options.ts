// The --file-mode, --dir-mode and --umask flags of mount: the modes of entries whose blob carries no permissions.
import { UsageError } from '../errors.js';
import { DEFAULT_MODES, type DefaultModes } from '../namespace/blob-encoding.js';

/** `--file-mode`/`--dir-mode`: 3 or 4 octal digits (a leading 1 is the sticky bit). */
export function parseMode(text: string, flag: string): number {
  if (!/^[0-1]?[0-7]{3}$/.test(text)) throw new UsageError(`invalid ${flag} '${text}': octal permissions such as 0644, 0750 or 1777`);
  return parseInt(text, 8);
}

/** The modes of entries without permissions in their blob: the flags (else the defaults of docs/SEMANTICS.md §1), less the umask. */
export function defaultModesFrom(o: { fileMode?: string; dirMode?: string; umask?: string }): DefaultModes {
  const umask = o.umask === undefined ? 0 : parseUmask(o.umask);
  const file = o.fileMode === undefined ? DEFAULT_MODES.file : parseMode(o.fileMode, '--file-mode');
  const dir = o.dirMode === undefined ? DEFAULT_MODES.dir : parseMode(o.dirMode, '--dir-mode');
  return { file: file & ~umask, dir: dir & ~umask, symlink: DEFAULT_MODES.symlink };
}

function parseUmask(text: string): number {
  if (!/^[0-7]{1,4}$/.test(text)) throw new UsageError(`invalid --umask '${text}': octal, such as 022 or 027`);
  return parseInt(text, 8) & 0o777;
}
