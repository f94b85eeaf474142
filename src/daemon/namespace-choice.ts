// Which namespace rules a mount uses (docs/SEMANTICS.md §1, HNS): forced by `--namespace hns|flat`, else detected with
// getAccountInfo(); a refused detection (a credential without account-level read, e.g. a container SAS) falls back
// to the flat rules with a log line saying why and how to force HNS. Also loads the `--id-map` file.
import { readFileSync } from 'node:fs';
import type { BlobStore, NamespaceKind } from '../blob/blob-store.js';
import { BlobError, UsageError, describeError } from '../errors.js';
import { IdMap } from '../namespace/id-map.js';

export interface NamespaceChoice {
  kind: NamespaceKind;
  /** How it was chosen: 'forced' (--namespace), 'detected' (getAccountInfo), 'fallback' (detection refused). */
  how: 'forced' | 'detected' | 'fallback';
}

/** Chooses the rules and sets them on the store. */
export async function chooseNamespace(
  store: BlobStore,
  forced: NamespaceKind | undefined,
  log: (line: string) => void,
): Promise<NamespaceChoice> {
  let choice: NamespaceChoice;
  if (forced) {
    choice = { kind: forced, how: 'forced' };
  } else {
    try {
      choice = { kind: await store.detectNamespace(), how: 'detected' };
    } catch (err) {
      if (!(err instanceof BlobError && err.kind === 'Unauthorized')) throw err;
      log(
        `namespace: getAccountInfo was refused (${describeError(err)}); using the flat rules (POSIX attributes from ` +
          'metadata). If the account has a hierarchical namespace, mount with --namespace hns',
      );
      choice = { kind: 'flat', how: 'fallback' };
    }
  }
  store.useNamespace(choice.kind);
  log(`namespace: ${choice.kind === 'hns' ? 'hierarchical (HNS)' : 'flat'} (${choice.how})`);
  return choice;
}

/** Reads an `--id-map` file (format in src/namespace/id-map.ts); a missing or bad file is a UsageError. */
export function loadIdMap(path: string | undefined): IdMap {
  if (!path) return new IdMap();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the --id-map file ${path}: ${describeError(err)}`);
  }
  return IdMap.parse(text, path);
}
