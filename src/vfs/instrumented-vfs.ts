// Op counts and latencies of a filesystem binding: wraps the Vfs that a FUSE adapter calls (fuse-native's today,
// the libfuse3 addon's tomorrow) so each call is timed where the binding meets the semantics, whatever binding
// drives it. Knows nothing of FUSE or of metrics libraries: it reports to an OpObserver.
import { errnoCodeOf } from '../errors.js';

export interface OpObserver {
  /** One finished call: its method name, how long it took, and the errno code when it failed. */
  observe(op: string, seconds: number, errorCode?: string): void;
}

/** The same object, with every method call reported to `observer` (async ones when they settle). */
export function instrumentVfs<T extends object>(vfs: T, observer: OpObserver): T {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(vfs, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      let fn = wrapped.get(prop);
      if (!fn) {
        const op = prop;
        const method = value as (...args: unknown[]) => unknown;
        fn = (...args: unknown[]) => {
          const started = performance.now();
          const done = (err?: unknown) => observer.observe(op, (performance.now() - started) / 1000, err === undefined ? undefined : errnoCodeOf(err));
          let result: unknown;
          try {
            result = method.apply(target, args);
          } catch (err) {
            done(err);
            throw err;
          }
          if (result instanceof Promise) {
            result.then(
              () => done(),
              (err: unknown) => done(err),
            );
          } else done();
          return result;
        };
        wrapped.set(prop, fn);
      }
      return fn;
    },
  });
}
