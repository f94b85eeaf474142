// lfs find over the metadata store (src/namespace/find.ts) and its argument parser (src/cli/lfs-find-args.ts):
// Lustre's numeric tests, the HSM states, depth-first name order page by page, and the usage errors.
import t from 'tap';
import { openMetaStore } from '../src/namespace/meta-store.js';
import { ROOT_INO, blankInode, HsmFlag, type Inode, type NewInode } from '../src/namespace/types.js';
import { findPaths, inodeMatches, valueMatches, type FindCriteria } from '../src/namespace/find.js';
import { parseDfArgs, parseFindArgs, parseSize, parseTime } from '../src/cli/lfs-find-args.js';
import { LfsUsageError } from '../src/cli/lfs-args.js';

const { EXISTS, DIRTY, RELEASED, ARCHIVED, NORELEASE } = HsmFlag;
const NOW = 1_800_000_000;
const DAY = 86400;

function file(over: Partial<NewInode> = {}): NewInode {
  return { ...blankInode('file', 0o644, 0, 0, NOW * 1000), ...over };
}

function tree(t: { teardown(fn: () => void): void }) {
  const m = openMetaStore(':memory:');
  t.teardown(() => m.close());
  const dir = (parent: number, name: string) => m.create(parent, name, blankInode('dir', 0o755, 0, 0, NOW * 1000)).ino;
  const data = dir(ROOT_INO, 'data');
  const sub = dir(data, 'sub');
  m.create(data, 'released.bin', file({ hsmFlags: EXISTS | RELEASED | ARCHIVED, size: 4096 }));
  m.create(data, 'dirty.txt', file({ hsmFlags: EXISTS | DIRTY | ARCHIVED, size: 100, mtimeMs: (NOW - 3 * DAY) * 1000 }));
  m.create(sub, 'new.txt', file({ size: 0 }));
  m.create(sub, 'pinned.bin', file({ hsmFlags: EXISTS | ARCHIVED | NORELEASE, size: 2 * 1024 * 1024 }));
  m.create(data, 'link', { ...blankInode('symlink', 0o777, 0, 0, NOW * 1000), target: 'dirty.txt' });
  return m;
}

const all = (m: ReturnType<typeof tree>, path: string, c: FindCriteria, page = 1000) =>
  [...findPaths(m, m.resolve(path)!, c, page)].flat();

t.test("Lustre's find_value_cmp", async (t) => {
  const c = (sign: -1 | 0 | 1, negate = false) => ({ sign, limit: 100, margin: 10, negate });
  t.same([89, 90, 91, 100, 101].map((v) => valueMatches(v, c(1))), [true, true, false, false, false], 'sign 1: value + margin <= limit');
  t.same([90, 91, 100, 101].map((v) => valueMatches(v, c(0))), [false, true, true, false], 'sign 0: (limit - margin, limit]');
  t.same([100, 101].map((v) => valueMatches(v, c(-1))), [false, true], 'sign -1: value > limit');
  t.same([100, 101].map((v) => valueMatches(v, c(-1, true))), [true, false], '! inverts');
});

t.test('sizes and times parse as lfs parses them', async (t) => {
  t.same(parseSize('+1M', false), { sign: -1, limit: 1048576, margin: 1048576, negate: false }, '+ is bigger (sign -1)');
  t.same(parseSize('-10k', true), { sign: 1, limit: 10240, margin: 1024, negate: true });
  t.same(parseSize('3', false), { sign: 0, limit: 1536, margin: 512, negate: false }, 'default unit: 512-byte blocks');
  t.same(parseSize('5c', false), { sign: 0, limit: 5, margin: 1, negate: false });
  t.same(parseSize('1.5KiB', false)?.limit, 1536);
  t.equal(parseSize('1X', false), undefined);
  t.equal(parseSize('k', false), undefined);
  t.same(parseTime('+2', false, NOW), { sign: 1, limit: NOW - 2 * DAY, margin: DAY, negate: false }, '+ is older (sign 1), days');
  t.same(parseTime('-90m', false, NOW), { sign: -1, limit: NOW - 5400, margin: 60, negate: false }, 'the smallest unit is the margin');
  t.same(parseTime('1d12h', false, NOW), { sign: 0, limit: NOW - 36 * 3600, margin: 3600, negate: false }, 'components add up');
  t.same(parseTime('1y', false, NOW)?.margin, 8 * DAY, 'years: 8 days (lfs)');
  t.same(parseTime('-1', false, NOW, parseTime('+5', false, NOW)), { sign: 0, limit: NOW - DAY, margin: 4 * DAY, negate: false }, '+5 -1: a range');
  t.equal(parseTime('2x', false, NOW), undefined);
  t.equal(parseTime(String(NOW + 1) + 's', false, NOW), undefined, 'before the epoch');
});

t.test('parseFindArgs: -type/--type, ! negation, --hsm-state lists, -print0, errors', async (t) => {
  const r = parseFindArgs(['/mnt/d', '-type', 'f', '!', '--hsm-state', 'released,^dirty', '-print0', '--size=+1k'], NOW);
  t.same(r.paths, ['/mnt/d']);
  t.equal(r.print0, true);
  t.same(r.criteria.type, { letter: 'f', negate: false });
  t.same(r.criteria.hsmState, { states: [{ state: 'released', exclude: false }, { state: 'dirty', exclude: true }], negate: true });
  t.same(r.criteria.size, { sign: -1, limit: 1024, margin: 1024, negate: false });
  t.same(parseFindArgs(['d', '-t', 'd', '--hsm', '!lost', '-D', '2'], NOW).criteria, {
    type: { letter: 'd', negate: false },
    hsmState: { states: [{ state: 'lost', exclude: true }], negate: false },
    maxDepth: 2,
  }, 'short options, a unique prefix, !STATE');
  const usage = (args: string[]) => {
    try {
      parseFindArgs(args, NOW);
    } catch (err) {
      if (err instanceof LfsUsageError) return err.detail ?? '(usage)';
    }
    return 'parsed';
  };
  t.match(usage(['d', '--hsm-state', 'gone']), /unknown HSM state 'gone': one of exists, dirty, released/);
  t.match(usage(['d', '-type', 'x']), /invalid type 'x'/);
  t.match(usage(['d', '--size', 'big']), /bad file size 'big'/);
  t.match(usage(['d', '--mtime', '3q']), /bad time string '3q'/);
  t.match(usage(['d', '--bogus']), /unrecognized option '--bogus'/);
  t.match(usage(['d', '--type']), /requires an argument/);
  t.match(usage(['-type', 'f']), /no directory or file given/);
  t.match(usage(['a', '-type', 'f', 'b']), /must either precede options or follow options/);
  t.equal(usage(['d', '-h']), '(usage)');
  t.same(parseDfArgs(['-ih', '/m']), { inodes: true, human: true, path: '/m' });
  t.same(parseDfArgs([]), { inodes: false, human: false });
});

t.test('findPaths: depth first in name order, every criterion, the start itself, depths', async (t) => {
  const m = tree(t);
  t.same(all(m, '/data', {}), ['', '/dirty.txt', '/link', '/released.bin', '/sub', '/sub/new.txt', '/sub/pinned.bin']);
  t.same(all(m, '/data', {}, 1), all(m, '/data', {}), 'the same with pages of one entry');
  t.same(all(m, '/data', { type: { letter: 'f', negate: false } }), ['/dirty.txt', '/released.bin', '/sub/new.txt', '/sub/pinned.bin']);
  t.same(all(m, '/data', { type: { letter: 'f', negate: true } }), ['', '/link', '/sub']);
  const state = (states: FindCriteria['hsmState']) => all(m, '/data', { type: { letter: 'f', negate: false }, hsmState: states });
  t.same(state({ states: [{ state: 'released', exclude: false }], negate: false }), ['/released.bin']);
  t.same(state({ states: [{ state: 'released', exclude: false }], negate: true }), ['/dirty.txt', '/sub/new.txt', '/sub/pinned.bin']);
  t.same(state({ states: [{ state: 'archived', exclude: false }, { state: 'dirty', exclude: true }], negate: false }), ['/released.bin', '/sub/pinned.bin']);
  t.same(state({ states: [{ state: 'none', exclude: false }], negate: false }), ['/sub/new.txt']);
  t.same(state({ states: [{ state: 'norelease', exclude: false }], negate: false }), ['/sub/pinned.bin']);
  t.same(all(m, '/data', { size: parseSize('+1M', false) }), ['/sub/pinned.bin']);
  t.same(all(m, '/data', { type: { letter: 'f', negate: false }, size: parseSize('-1', false) }), ['/sub/new.txt'], '-1: 0 blocks of 512');
  t.same(all(m, '/data', { mtime: parseTime('+2', false, NOW) }), ['/dirty.txt'], 'older than 2 days');
  t.same(all(m, '/data', { mtime: parseTime('-1', false, NOW), type: { letter: 'f', negate: false } }), ['/released.bin', '/sub/new.txt', '/sub/pinned.bin']);
  t.same(all(m, '/data', { maxDepth: 1 }), ['', '/dirty.txt', '/link', '/released.bin', '/sub']);
  t.same(all(m, '/data', { minDepth: 2 }), ['/sub/new.txt', '/sub/pinned.bin']);
  t.same(all(m, '/data/dirty.txt', {}), [''], 'a file as the start');
  const released = m.resolve('/data/released.bin') as Inode;
  t.equal(inodeMatches(released, { hsmState: { states: [{ state: 'exists', exclude: false }], negate: false } }), true);
});

t.test('findPaths holds one page per level: a 3,000-entry directory read in pages of 100', async (t) => {
  const m = openMetaStore(':memory:');
  t.teardown(() => m.close());
  const big = m.create(ROOT_INO, 'big', blankInode('dir', 0o755, 0, 0, 0)).ino;
  m.transaction(() => {
    for (let i = 0; i < 3000; i++) m.create(big, `f${String(i).padStart(4, '0')}`, file({ hsmFlags: i % 3 === 0 ? EXISTS | RELEASED | ARCHIVED : 0 }));
  });
  let pages = 0;
  let largest = 0;
  const calls: number[] = [];
  const counting = new Proxy(m, {
    get(target, prop, receiver) {
      if (prop === 'readdirSummaryPage') return (ino: number, after: string | undefined, limit: number) => {
        const page = target.readdirSummaryPage(ino, after, limit);
        calls.push(page.length);
        return page;
      };
      return Reflect.get(target, prop, receiver);
    },
  });
  const found: string[] = [];
  for (const batch of findPaths(counting, m.resolve('/big')!, { hsmState: { states: [{ state: 'released', exclude: false }], negate: false } }, 100)) {
    pages++;
    largest = Math.max(largest, batch.length);
    found.push(...batch);
  }
  t.equal(found.length, 1000);
  t.equal(found[0], '/f0000');
  t.same(calls.slice(0, 30), Array(30).fill(100), 'thirty full pages');
  t.ok(largest <= 100, 'no batch larger than a page');
  t.ok(pages >= 30);
});

t.test('findPaths: -type p and -type s find FIFOs and sockets; -type f does not', async (t) => {
  const m = tree(t);
  const data = m.resolve('/data')!.ino;
  m.create(data, 'pipe', blankInode('fifo', 0o644, 0, 0, NOW * 1000));
  m.create(data, 'sock', blankInode('socket', 0o755, 0, 0, NOW * 1000));
  t.same(all(m, '/data', { type: { letter: 'p', negate: false } }), ['/pipe']);
  t.same(all(m, '/data', { type: { letter: 's', negate: false } }), ['/sock']);
  t.notOk(all(m, '/data', { type: { letter: 'f', negate: false } }).some((p) => p === '/pipe' || p === '/sock'), 'not regular files');
});
