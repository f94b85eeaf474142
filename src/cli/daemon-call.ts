// Finds the daemon serving a path and calls one control method on it.
import { stateHome } from '../config.js';
import { callDaemon } from '../control/client.js';
import { MountRegistry, type MountRecord } from '../control/registry.js';

export interface Located {
  mount: MountRecord;
  inner: string;
}

export function locate(path: string, env: NodeJS.ProcessEnv): Located {
  return new MountRegistry(stateHome(env)).locate(path);
}

export async function callMount(
  mountpoint: string,
  env: NodeJS.ProcessEnv,
  method: string,
  params: Record<string, unknown> = {},
  onEvent?: (event: unknown) => void,
): Promise<unknown> {
  const { mount } = locate(mountpoint, env);
  return callDaemon(mount.socket, method, params, onEvent);
}
