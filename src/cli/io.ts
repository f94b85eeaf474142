// The streams and environment a CLI command writes to and reads from (injected so commands are testable).
export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env };
}

/** Exit status for general failures of blobhsm's own commands (the lfs commands use errno values). */
export const EXIT_FAILURE = 1;
