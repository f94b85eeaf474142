// The streams and environment a CLI command writes to and reads from (injected so commands are testable).
export interface CliIo {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  env: NodeJS.ProcessEnv;
  /** What `--filelist -` reads (process.stdin when absent). */
  stdin?: AsyncIterable<Buffer | string>;
}

export function processIo(): CliIo {
  // stdin is opened only when a command reads it (process.stdin is created on first access).
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    get stdin() {
      return process.stdin;
    },
  };
}

/** Exit status for general failures of blobhsm's own commands (the lfs commands use errno values). */
export const EXIT_FAILURE = 1;
