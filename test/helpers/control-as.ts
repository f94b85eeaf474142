// Test helper: one raw control-socket request sent by another user (runuser), so a test can forge what the
// request claims (a uid of 0, say) while the kernel reports who really connected.
import { execFile } from 'node:child_process';

/**
 * Connects to `socket` as `user`, sends `request` as one JSON line and resolves with the reply lines, parsed.
 * The socket and its directories must be reachable by that user.
 */
export function requestAs(user: string, socket: string, request: unknown): Promise<unknown[]> {
  const client =
    'const s = require("node:net").createConnection(process.argv[1]); let out = "";' +
    's.on("data", (c) => (out += c)); s.on("close", () => process.stdout.write(out));' +
    's.write(process.argv[2] + "\\n");';
  // Without tap's process-info loader (it would try to write to the test's .tap directory as that user).
  const argv = ['-u', user, '--', 'env', '-u', 'NODE_OPTIONS', process.execPath, '-e', client, socket, JSON.stringify(request)];
  return new Promise((resolve, reject) =>
    execFile('runuser', argv, (err, stdout, stderr) => {
      if (err) return reject(new Error(`runuser -u ${user}: ${String(stderr).trim() || err.message}`, { cause: err }));
      resolve(String(stdout).split('\n').filter(Boolean).map((line) => JSON.parse(line) as unknown));
    }),
  );
}
