// Which FUSE binding serves a mount: the libfuse3 addon (the default) or fuse-native (libfuse 2, `--fuse fuse2`,
// and the fallback when the addon is not built, with the reason logged).
import { UsageError } from '../errors.js';
import { NO_KERNEL_CACHE, type KernelCache } from '../namespace/types.js';
import type { Vfs } from '../vfs/vfs.js';
import { mountFuse, type FuseHandle, type FuseMountOptions } from './fuse-adapter.js';
import { mountFuse3 } from './fuse3-adapter.js';
import { loadAddon } from './lowlevel.js';
import type { FuseBindingChoice } from './bindings.js';


export interface MountedBinding {
  binding: 'fuse3' | 'fuse2';
  handle: FuseHandle;
  kernel: KernelCache;
}

export async function mountBinding(mountpoint: string, vfs: Vfs, choice: FuseBindingChoice, o: FuseMountOptions): Promise<MountedBinding> {
  const log = o.log ?? (() => undefined);
  if (choice !== 'fuse2') {
    const addon = loadAddon();
    if (!(addon instanceof Error)) {
      const { kernel, ...handle } = await mountFuse3(mountpoint, vfs, o);
      return { binding: 'fuse3', handle, kernel };
    }
    if (choice === 'fuse3') throw new UsageError(`--fuse fuse3: ${addon.message}`, { cause: addon });
    log(`using fuse-native (libfuse 2): ${addon.message}`);
  }
  return { binding: 'fuse2', handle: await mountFuse(mountpoint, vfs, o), kernel: NO_KERNEL_CACHE };
}
