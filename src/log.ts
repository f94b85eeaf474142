// The log function every module takes: a line, and optionally the structured fields of an event (an HSM action,
// a job, an export, an error). The daemon backs it with a JSON-lines logger (src/daemon/logger.ts); tests pass any
// function of a line.
import type { LogLevel } from './config.js';

/** Structured fields of one record: what happened (`event`), to which file, and why it failed. */
export interface LogFields {
  event: string;
  level?: LogLevel;
  path?: string;
  cause?: string;
  [field: string]: unknown;
}

/** The function every module takes; the second argument is optional. */
export type Log = (line: string, fields?: LogFields) => void;
