// The daemon's log: JSON lines (pino) on stderr (the background daemon's log file) or in --log-file, at
// --log-level. Modules keep calling `log(line)`; the few places that record an HSM action, a job, an export or an
// error add fields (`log(line, { event: 'hsm_action', path, cause, ... })`), which become the record's keys.
// Every message and string field is scrubbed of the mount's secrets before it is written.
import { pino, type Logger } from 'pino';
import type { Log } from '../log.js';
import type { LogLevel } from '../config.js';
import { scrubSecrets } from '../blob/azure-store.js';

export interface DaemonLogOptions {
  level?: LogLevel;
  /** Append JSON lines here instead of stderr. */
  file?: string;
  /** Values never written (account key, SAS token, connection string). */
  secrets?: readonly string[];
  /** Where to write (tests); default stderr or `file`. */
  stream?: { write(text: string): unknown };
}

export function createDaemonLog(o: DaemonLogOptions = {}): { log: Log; logger: Logger } {
  const secrets = (o.secrets ?? []).filter((s) => s.length >= 4);
  const destination = o.stream ?? pino.destination({ dest: o.file ?? 2, append: true, mkdir: true, sync: true });
  const logger = pino({ level: o.level ?? 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination as pino.DestinationStream);
  const clean = (value: unknown): unknown => (typeof value === 'string' ? scrubSecrets(value, secrets) : value);
  const log: Log = (line, fields) => {
    const msg = scrubSecrets(line, secrets);
    if (!fields) return logger.info(msg);
    const { level = 'info', ...rest } = fields;
    const record = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, clean(v)]));
    logger[level](record, msg);
  };
  return { log, logger };
}
