// The Vfs seen through paths, for the fuse-native binding (libfuse 2's high-level API names files by path) and
// semantics tests: each op resolves its path to an inode (or a parent inode and a name) and calls the inode op.
// Callers are unknown here: new files belong to `owner`. Every op is async: a path that does not resolve rejects.
import { FsError } from '../errors.js';
import type { Caller, DirEntryStat, Stat, StatFs, Vfs } from './vfs.js';

const UNCHANGED = [-1, 0xffffffff];

export class PathVfs {
  constructor(
    readonly vfs: Vfs,
    private readonly owner: Caller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 },
  ) {}

  private ino(path: string): number {
    return this.vfs.inodeAt(path);
  }

  private parentOf(path: string): { parent: number; name: string } {
    const cut = path.lastIndexOf('/');
    const name = path.slice(cut + 1);
    if (!name) throw new FsError('EINVAL', `bad path: ${path}`);
    return { parent: this.ino(path.slice(0, cut) || '/'), name };
  }

  async getattr(path: string): Promise<Stat> {
    return this.vfs.getattr(this.ino(path));
  }

  async readdir(path: string): Promise<{ names: string[]; stats: Stat[] }> {
    const entries = await this.vfs.readdir(this.ino(path));
    return { names: entries.map((e) => e.name), stats: entries.map((e) => e.stat) };
  }

  async readdirPage(path: string, after: string | undefined, limit: number): Promise<{ entries: DirEntryStat[]; next: string | undefined }> {
    return this.vfs.readdirPage(this.ino(path), after, limit);
  }

  async readlink(path: string): Promise<string> {
    return this.vfs.readlink(this.ino(path));
  }

  async statfs(_path: string): Promise<StatFs> {
    return this.vfs.statfs();
  }

  async open(path: string, flags: number): Promise<number> {
    return this.vfs.open(this.ino(path), flags);
  }

  async create(path: string, mode: number): Promise<number> {
    const { parent, name } = this.parentOf(path);
    return (await this.vfs.create(parent, name, mode, this.owner)).fh;
  }

  async read(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    return this.vfs.read(fh, buf, length, position);
  }

  async write(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    return this.vfs.write(fh, buf, length, position);
  }

  async flush(fh: number): Promise<void> {
    return this.vfs.flush(fh);
  }

  async fsync(fh: number): Promise<void> {
    return this.vfs.fsync(fh);
  }

  async release(fh: number): Promise<void> {
    return this.vfs.release(fh);
  }

  async truncate(path: string, size: number): Promise<void> {
    await this.vfs.setattr(this.ino(path), { size });
  }

  async ftruncate(fh: number, size: number, path?: string): Promise<void> {
    await this.vfs.setattr(path === undefined ? this.vfs.inodeOfHandle(fh) : this.ino(path), { size }, fh);
  }

  async getxattr(path: string, name: string): Promise<Buffer | null> {
    return this.vfs.getxattr(this.ino(path), name);
  }

  async listxattr(path: string): Promise<string[]> {
    return this.vfs.listxattr(this.ino(path));
  }

  async setxattr(path: string, name: string): Promise<void> {
    return this.vfs.setxattr(this.ino(path), name);
  }

  async mknod(path: string, mode: number): Promise<void> {
    const { parent, name } = this.parentOf(path);
    await this.vfs.mknod(parent, name, mode, this.owner);
  }

  async mkdir(path: string, mode: number): Promise<void> {
    const { parent, name } = this.parentOf(path);
    await this.vfs.mkdir(parent, name, mode, this.owner);
  }

  async symlink(target: string, path: string): Promise<void> {
    const { parent, name } = this.parentOf(path);
    await this.vfs.symlink(parent, name, target, this.owner);
  }

  async link(existingPath: string, newPath: string): Promise<void> {
    const { parent, name } = this.parentOf(newPath);
    await this.vfs.link(this.ino(existingPath), parent, name);
  }

  async unlink(path: string): Promise<void> {
    const { parent, name } = this.parentOf(path);
    return this.vfs.unlink(parent, name);
  }

  async rmdir(path: string): Promise<void> {
    const { parent, name } = this.parentOf(path);
    return this.vfs.rmdir(parent, name);
  }

  async rename(from: string, to: string, flags = 0): Promise<void> {
    const src = this.parentOf(from);
    const dst = this.parentOf(to);
    return this.vfs.rename(src.parent, src.name, dst.parent, dst.name, flags);
  }

  async chmod(path: string, mode: number): Promise<void> {
    await this.vfs.setattr(this.ino(path), { mode });
  }

  /** (uid_t)-1 / (gid_t)-1 mean "leave unchanged". */
  async chown(path: string, uid: number, gid: number): Promise<void> {
    await this.vfs.setattr(this.ino(path), { ...(UNCHANGED.includes(uid) ? {} : { uid }), ...(UNCHANGED.includes(gid) ? {} : { gid }) });
  }

  async utimens(path: string, atimeMs: number, mtimeMs: number): Promise<void> {
    await this.vfs.setattr(this.ino(path), { atime: atimeMs, mtime: mtimeMs });
  }
}
