// `blobhsm changelog MOUNTPOINT [--follow] [--json] [START]`, `changelog_register` and `changelog_clear`.
import { changelogJson, formatChangelogRecord } from '../hsm/changelog.js';
import type { ChangelogRecord } from '../namespace/types.js';
import { describeError } from '../errors.js';
import { callMount } from './daemon-call.js';
import type { CliIo } from './io.js';
import { EXIT_FAILURE } from './io.js';

export async function runChangelog(mountpoint: string, opts: { follow?: boolean; json?: boolean; from?: string }, io: CliIo): Promise<number> {
  try {
    await callMount(mountpoint, io.env, 'changelog', { from: Number(opts.from ?? 0), follow: Boolean(opts.follow) }, (event) => {
      const r = event as ChangelogRecord;
      io.stdout.write((opts.json ? JSON.stringify(changelogJson(r)) : formatChangelogRecord(r)) + '\n');
    });
    return 0;
  } catch (err) {
    io.stderr.write(`blobhsm changelog: ${describeError(err)}\n`);
    return EXIT_FAILURE;
  }
}

export async function runChangelogRegister(mountpoint: string, io: CliIo): Promise<number> {
  try {
    const r = (await callMount(mountpoint, io.env, 'changelog_register')) as { reader: string };
    io.stdout.write(`${mountpoint}: Registered changelog userid '${r.reader}'\n`);
    return 0;
  } catch (err) {
    io.stderr.write(`blobhsm changelog_register: ${describeError(err)}\n`);
    return EXIT_FAILURE;
  }
}

export async function runChangelogClear(mountpoint: string, reader: string, index: string, io: CliIo): Promise<number> {
  if (!/^\d+$/.test(index)) {
    io.stderr.write(`blobhsm changelog_clear: invalid index '${index}': a record number, or 0 for all records\n`);
    return 4;
  }
  try {
    await callMount(mountpoint, io.env, 'changelog_clear', { reader, index: Number(index) });
    return 0;
  } catch (err) {
    io.stderr.write(`blobhsm changelog_clear: ${describeError(err)}\n`);
    return EXIT_FAILURE;
  }
}
