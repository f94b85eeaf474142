// Bytes and errors of a BlobStore by operation, for metrics: a wrapper that passes every call through to the
// store (its own extras, such as the HNS calls, included) and counts the bytes read by readRange and staged by
// upload, and every BlobError by operation and kind. Request counts stay the store's own (requestCounts()).
import { Transform, pipeline, type Readable } from 'node:stream';
import { BlobError } from '../errors.js';
import type { BlobStore, UploadOptions } from './blob-store.js';

export interface BlobMeter {
  bytes(operation: 'read' | 'upload', n: number): void;
  error(operation: string, kind: string): void;
}

export function meterStore<T extends BlobStore>(store: T, meter: BlobMeter): T {
  const counted = (operation: string, p: unknown): unknown => {
    if (p instanceof Promise) p.catch((err: unknown) => err instanceof BlobError && meter.error(operation, err.kind));
    return p;
  };
  const overrides: Record<string, unknown> = {
    readRange: async (...args: Parameters<BlobStore['readRange']>): Promise<Readable> => {
      const source = await (counted('readRange', store.readRange(...args)) as Promise<Readable>);
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          meter.bytes('read', chunk.length);
          callback(null, chunk);
        },
      });
      pipeline(source, counter, () => undefined);
      return counter;
    },
    upload: (name: string, source: Parameters<BlobStore['upload']>[1], options: UploadOptions) => {
      let reported = 0;
      return counted(
        'upload',
        store.upload(name, source, {
          ...options,
          onProgress: (staged) => {
            // A retried upload stages again from 0: count only what goes past the bytes already reported.
            if (staged > reported) meter.bytes('upload', staged - reported);
            reported = Math.max(reported, staged);
            options.onProgress?.(staged);
          },
        }),
      );
    },
  };
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && prop in overrides) return overrides[prop];
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      return (...args: unknown[]) => counted(prop, (value as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
}
