// Secrets given as command-line flags: hidden from `ps` and /proc/PID/cmdline at once (the process title is
// rewritten over the original argv), with a warning; `-` as the value reads the secret from stdin instead
// (prompted, without echo, on a terminal). The environment variables are the better way and need neither.
import { spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { CliIo } from './io.js';

/** The flags whose value is a secret, and the environment variable to use instead. */
export const SECRET_FLAGS: Readonly<Record<string, string>> = {
  '--connection-string': 'AZURE_STORAGE_CONNECTION_STRING',
  '--account-key': 'AZURE_STORAGE_KEY',
  '--sas-token': 'AZURE_STORAGE_SAS_TOKEN',
};

/** argv with every secret flag's value replaced, and the flags that carried one (`-` is not a secret). */
export function redactSecretArgs(argv: readonly string[]): { redacted: string[]; flags: string[] } {
  const redacted: string[] = [];
  const flags: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (!(name in SECRET_FLAGS)) {
      redacted.push(arg);
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[i + 1];
    if (eq < 0) i++;
    if (value === undefined || value === '-') {
      redacted.push(arg);
      if (eq < 0 && value !== undefined) redacted.push(value);
      continue;
    }
    flags.push(name);
    redacted.push(...(eq > 0 ? [`${name}=<hidden>`] : [name, '<hidden>']));
  }
  return { redacted, flags };
}

/** Rewrites this process's title (what ps shows) without the secrets, and warns once per flag. */
export function hideSecretArgs(argv: readonly string[], io: CliIo): void {
  const { redacted, flags } = redactSecretArgs(argv);
  if (flags.length === 0) return;
  process.title = ['blobhsm', ...redacted].join(' ');
  for (const flag of flags) {
    io.stderr.write(
      `blobhsm: warning: the value of ${flag} was visible to other users in the process list until now; ` +
        `prefer ${SECRET_FLAGS[flag]}, or pass ${flag} - to type it\n`,
    );
  }
}

/** Reads one secret line from stdin; on a terminal it prompts on stderr and does not echo. */
export async function readSecret(what: string, io: CliIo): Promise<string> {
  const tty = Boolean(process.stdin.isTTY);
  if (tty) {
    io.stderr.write(`${what}: `);
    spawnSync('stty', ['-echo'], { stdio: 'inherit' });
  }
  try {
    const rl = createInterface({ input: process.stdin, terminal: false });
    const line = await new Promise<string>((resolve) => {
      rl.once('line', resolve);
      rl.once('close', () => resolve(''));
    });
    rl.close();
    return line.trim();
  } finally {
    if (tty) {
      spawnSync('stty', ['echo'], { stdio: 'inherit' });
      io.stderr.write('\n');
    }
  }
}

/** Replaces each secret flag given as `-` by a line read from stdin (storage flags of mount and ingest). */
export async function readSecretFlags(flags: { connectionString?: string; accountKey?: string; sasToken?: string }, io: CliIo): Promise<void> {
  if (flags.connectionString === '-') flags.connectionString = await readSecret('connection string', io);
  if (flags.accountKey === '-') flags.accountKey = await readSecret('account key', io);
  if (flags.sasToken === '-') flags.sasToken = await readSecret('SAS token', io);
}
