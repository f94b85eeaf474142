import t from 'tap';
import { UsageError } from '../src/errors.js';
import { HsmFlag } from '../src/hsm/flags.js';
import { LfsUsageError, parseFilelist, parseLfsArgs, usageText, type LfsRequest } from '../src/cli/lfs-args.js';
import { EXIT_USAGE, errnoNumber, exitStatusFor } from '../src/cli/exit-status.js';

const { EXISTS, DIRTY, ARCHIVED, NORELEASE, NOARCHIVE, LOST } = HsmFlag;

function usageOf(argv: string[]): LfsUsageError {
  try {
    parseLfsArgs(argv);
  } catch (err) {
    if (err instanceof LfsUsageError) return err;
    throw err;
  }
  throw new Error(`expected a usage error for ${JSON.stringify(argv)}`);
}

t.test('hsm_state / hsm_action', async (t) => {
  t.same(parseLfsArgs(['hsm_state', 'a', 'b']), {
    command: 'hsm_state',
    name: 'hsm_state',
    spelling: 'underscore',
    files: ['a', 'b'],
    wait: false,
    json: false,
  } satisfies LfsRequest);
  t.same(parseLfsArgs(['hsm', 'state', 'a']), {
    command: 'hsm_state',
    name: 'state',
    spelling: 'hsm',
    files: ['a'],
    wait: false,
    json: false,
  });
  t.match(parseLfsArgs(['hsm_action', 'f']), { command: 'hsm_action', files: ['f'] });
  t.match(parseLfsArgs(['hsm', 'action', 'f', 'g']), { command: 'hsm_action', name: 'action', files: ['f', 'g'] });
  t.match(parseLfsArgs(['hsm_state', '--json', 'f']), { json: true, files: ['f'] });
  t.match(parseLfsArgs(['--json', 'hsm_state', 'f']), { json: true, files: ['f'] });
  t.match(parseLfsArgs(['hsm_state', 'f', '--json']), { json: true, files: ['f'] });
  // lfs hsm_state takes no options: anything else is a path, as in lfs.
  t.match(parseLfsArgs(['hsm_state', '-h', '--jsn', '-']), { files: ['-h', '--jsn', '-'], json: false });
  t.match(parseLfsArgs(['hsm_state', '--', '--json']), { files: ['--json'], json: false });
  const e = usageOf(['hsm_state']);
  t.equal(e.usage, 'Display the HSM information for given files.\nusage: hsm_state FILE\nblobhsm options: [--filelist FILELIST] [--json]');
  t.equal(e.detail, undefined);
  t.ok(e instanceof UsageError);
  t.match(usageOf(['hsm', 'action']).usage, /^Display current HSM request for given files\.\nusage: hsm action FILE\n/);
  usageOf(['hsm_state', '--json']);
});

t.test('hsm_set / hsm_clear', async (t) => {
  const flagCases: Array<[string[], number]> = [
    [['--norelease'], NORELEASE],
    [['--noarchive'], NOARCHIVE],
    [['--dirty'], DIRTY],
    [['--exists'], EXISTS],
    [['--archived'], ARCHIVED],
    [['--lost'], LOST],
    [['-r'], NORELEASE],
    [['-a'], NOARCHIVE],
    [['-d'], DIRTY],
    [['-e'], EXISTS],
    [['-A'], ARCHIVED],
    [['-l'], LOST],
    [['--exists', '--archived'], EXISTS | ARCHIVED],
    [['-eA'], EXISTS | ARCHIVED],
    [['--norel'], NORELEASE], // unique long prefix, as getopt_long
    [['--noa', '-d'], NOARCHIVE | DIRTY],
  ];
  for (const [opts, mask] of flagCases) {
    t.match(parseLfsArgs(['hsm_set', ...opts, 'f']), { command: 'hsm_set', setFlags: mask, files: ['f'] }, `set ${opts.join(' ')}`);
    const clear = parseLfsArgs(['hsm_clear', ...opts, 'f']);
    t.equal(clear.clearFlags, mask, `clear ${opts.join(' ')}`);
    t.equal(clear.setFlags, undefined);
  }
  t.match(parseLfsArgs(['hsm_set', 'f', '--dirty', 'g']), { files: ['f', 'g'], setFlags: DIRTY }, 'options after files');
  t.match(parseLfsArgs(['hsm_set', '--exists', '--archive-id', '2', 'f']), { setFlags: EXISTS, archiveId: 2 });
  t.match(parseLfsArgs(['hsm_set', '--exists', '--archive-id=3', 'f']), { archiveId: 3 });
  t.match(parseLfsArgs(['hsm_set', '-e', '-i', '4', 'f']), { archiveId: 4 });
  t.match(parseLfsArgs(['hsm_set', '-ei5', 'f']), { setFlags: EXISTS, archiveId: 5 });
  t.equal(parseLfsArgs(['hsm_clear', '--lost', '--archive-id', '2', 'f']).archiveId, undefined, 'clear ignores --archive-id');
  t.match(parseLfsArgs(['hsm', 'set', '--norelease', 'f']), { command: 'hsm_set', name: 'set', setFlags: NORELEASE });
  t.match(parseLfsArgs(['hsm_set', '--dirty', '--', '--lost']), { setFlags: DIRTY, files: ['--lost'] });
  t.match(parseLfsArgs(['hsm_set', '--json', '--dirty', 'f']), { json: true });

  // No flag → usage (exit 4), on stdout, no error line.
  const none = usageOf(['hsm_set', 'f']);
  t.equal(none.detail, undefined);
  t.equal(
    none.usage,
    'Set HSM user flag on specified files.\nusage: hsm_set [--norelease] [--noarchive] [--dirty] [--exists]\n\t\t [--archived] [--lost] [--archive-id NUM] FILE\nblobhsm options: [--filelist FILELIST] [--json]',
  );
  t.equal(
    usageOf(['hsm_clear', 'f']).usage,
    'Clear HSM user flag on specified files.\nusage: hsm_clear [--norelease] [--noarchive] [--dirty] [--exists]\n\t\t   [--archived] [--lost] FILE\nblobhsm options: [--filelist FILELIST] [--json]',
  );
  t.match(usageOf(['hsm', 'clear', 'f']).usage, /\nusage: hsm clear \[--norelease\] \[--noarchive\] \[--dirty\] \[--exists\] \[--archived\] \[--lost\] FILE\n/);
  usageOf(['hsm_set', '--archive-id', '2', 'f']);
  usageOf(['hsm_set']);
  usageOf(['hsm_set', '--dirty']);
  // Bad options.
  t.equal(usageOf(['hsm_set', '--bogus', 'f']).detail, "lfs: unrecognized option '--bogus'");
  t.equal(usageOf(['hsm_set', '-x', 'f']).detail, "lfs: unrecognized option '-x'");
  t.equal(usageOf(['hsm_set', '-dx', 'f']).detail, "lfs: unrecognized option '-dx'");
  t.equal(usageOf(['hsm_set', '--archive', 'f']).detail, "lfs: unrecognized option '--archive'", 'ambiguous prefix');
  t.equal(usageOf(['hsm_set', '--dirty=1', 'f']).detail, "lfs: unrecognized option '--dirty=1'");
  t.equal(usageOf(['hsm_set', '--wait', '--dirty', 'f']).detail, "lfs: unrecognized option '--wait'");
  t.equal(usageOf(['hsm_set', '--dirty', 'f', '--archive-id']).detail, "lfs: unrecognized option '--archive-id'", 'missing argument');
  t.equal(usageOf(['hsm_set', '--exists', '--archive-id', 'x2', 'f']).detail, "lfs: invalid archive_id: 'x2'");
  t.equal(usageOf(['hsm_set', '--exists', '--archive-id', '-1', 'f']).detail, "lfs: invalid archive_id: '-1'");
  t.equal(usageOf(['hsm_set', '--exists', '--archive-id', '4294967296', 'f']).detail, "lfs: invalid archive_id: '4294967296'");
  const help = usageOf(['hsm_set', '--help']);
  t.equal(help.detail, undefined);
  t.match(help.usage, /^Set HSM user flag/);
});

t.test('request commands', async (t) => {
  for (const c of ['hsm_archive', 'hsm_release', 'hsm_restore', 'hsm_remove', 'hsm_cancel'] as const) {
    t.same(parseLfsArgs([c, 'f', 'g']), { command: c, name: c, spelling: 'underscore', files: ['f', 'g'], wait: false, json: false }, c);
    const sub = c.slice(4);
    t.match(parseLfsArgs(['hsm', sub, 'f']), { command: c, name: sub, spelling: 'hsm', files: ['f'] }, `hsm ${sub}`);
    t.match(parseLfsArgs([c, '--wait', 'f']), { wait: true, files: ['f'] }, `${c} --wait`);
    t.match(parseLfsArgs([c, '--filelist', 'list.txt']), { files: [], filelist: 'list.txt' }, `${c} --filelist`);
    t.match(parseLfsArgs([c, '-l', 'list.txt', 'f']), { files: ['f'], filelist: 'list.txt' });
    t.match(parseLfsArgs([c, '--data', 'x y', 'f']), { data: 'x y' });
    t.match(parseLfsArgs([c, '-Dopaque', 'f']), { data: 'opaque' });
    const e = usageOf([c]);
    t.equal(e.detail, undefined, `${c} without files → usage`);
    usageOf([c, '--wait']);
  }
  t.same(parseLfsArgs(['hsm_archive', '--archive', '2', '--filelist', 'list.txt']), {
    command: 'hsm_archive',
    name: 'hsm_archive',
    spelling: 'underscore',
    files: [],
    filelist: 'list.txt',
    archiveId: 2,
    wait: false,
    json: false,
  });
  t.match(parseLfsArgs(['hsm_archive', '-a', '3', 'f']), { archiveId: 3 });
  t.match(parseLfsArgs(['hsm_archive', '-a3', 'f']), { archiveId: 3 });
  t.match(parseLfsArgs(['hsm_archive', '--archive=4', 'f']), { archiveId: 4 });
  t.match(parseLfsArgs(['hsm_archive', '--arch', '5', 'f']), { archiveId: 5 }, 'unique prefix');
  t.match(parseLfsArgs(['hsm_remove', '--archive', '2', 'f']), { archiveId: 2 });
  t.match(parseLfsArgs(['hsm_restore', '--wait', '--json', 'f']), { wait: true, json: true });
  t.match(parseLfsArgs(['hsm_restore', 'f', '--wait']), { wait: true, files: ['f'] });
  t.match(parseLfsArgs(['hsm_archive', '--filelist', '-', 'f']), { filelist: '-' }, 'an argument may start with -');
  t.match(parseLfsArgs(['hsm_archive', '--', '-f']), { files: ['-f'] });

  for (const c of ['hsm_restore', 'hsm_release', 'hsm_cancel']) {
    t.equal(usageOf([c, '--archive', '2', 'f']).detail, 'error: -a is supported only when archiving or removing', c);
  }
  t.equal(usageOf(['hsm_archive', '--archive', 'two', 'f']).detail, "lfs: invalid archive_id: 'two'");
  t.equal(usageOf(['hsm_archive', '--bogus', 'f']).detail, "lfs: unrecognized option '--bogus'");
  t.equal(usageOf(['hsm_archive', '--dirty', 'f']).detail, "lfs: unrecognized option '--dirty'");
  t.equal(usageOf(['hsm_archive', 'f', '--filelist']).detail, "lfs: unrecognized option '--filelist'");
  t.match(usageOf(['hsm_remove', '--mntpath', '/mnt', '0x1:0x2:0x0']).detail, /not supported/);
  t.equal(usageOf(['hsm_archive', '-h']).detail, undefined);

  t.equal(
    usageOf(['hsm_archive']).usage,
    'Archive file to external storage.\nusage: hsm_archive [--filelist FILELIST] [--data DATA]\n\t\t     [--archive NUM] FILE\nblobhsm options: [--wait] [--json]',
  );
  t.equal(
    usageOf(['hsm', 'restore']).usage,
    'Restore file from external storage.\nusage: hsm restore [--filelist FILELIST] [--data DATA] FILE\nblobhsm options: [--wait] [--json]',
  );
});

t.test('commands', async (t) => {
  t.match(usageOf([]).usage, /hsm_state/);
  const bad = usageOf(['hsm_frobnicate', 'f']);
  t.equal(bad.detail, "lfs: 'hsm_frobnicate' is not a valid command. See 'lfs --list-commands'.");
  const badSub = usageOf(['hsm', 'frob', 'f']);
  t.equal(badSub.detail, "lfs hsm: 'frob' is not a valid command. See 'lfs hsm --list-commands'.");
  t.match(badSub.usage, /\n {2}state {7}Display the HSM information/);
  t.match(usageOf(['hsm']).usage, /archive/);
  usageOf(['hsm', 'hsm_state', 'f']);
  t.equal(usageOf(['hsm_set', 'f']).message, 'Set HSM user flag on specified files.');
});

t.test('usageText', async (t) => {
  t.equal(usageText('hsm_state'), 'Display the HSM information for given files.\nusage: hsm_state FILE\nblobhsm options: [--filelist FILELIST] [--json]');
  t.equal(usageText('hsm_action', 'hsm'), 'Display current HSM request for given files.\nusage: hsm action FILE\nblobhsm options: [--filelist FILELIST] [--json]');
  t.equal(
    usageText('hsm_remove'),
    'Remove file copy from external storage.\nusage: hsm_remove [--filelist FILELIST] [--data DATA]\n\t\t    [--archive NUM] FILE\nblobhsm options: [--wait] [--json]',
  );
  t.equal(usageText('hsm_release'), 'Release files from Lustre.\nusage: hsm_release [--filelist FILELIST] [--data DATA] FILE\nblobhsm options: [--wait] [--json]');
  t.equal(usageText('hsm_cancel'), 'Cancel requests related to specified files.\nusage: hsm_cancel [--filelist FILELIST] [--data DATA] FILE\nblobhsm options: [--wait] [--json]');
});

t.test('parseFilelist', async (t) => {
  t.same(parseFilelist('a\nb c\n/d/e\n'), ['a', 'b c', '/d/e']);
  t.same(parseFilelist('a\nb'), ['a', 'b'], 'no final newline');
  t.same(parseFilelist(''), []);
  t.same(parseFilelist('a\n\n b \n'), ['a', ' b '], 'empty lines skipped, spaces kept');
});

t.test('exit status', async (t) => {
  t.equal(EXIT_USAGE, 4);
  t.equal(exitStatusFor([]), 0);
  t.equal(exitStatusFor([{ ok: true }, { ok: true }]), 0);
  t.equal(exitStatusFor([{ ok: true }, { ok: false, code: 'ENOENT' }, { ok: false, code: 'EPERM' }]), 2, 'first failure');
  t.equal(exitStatusFor([{ ok: false, code: 'EPERM' }, { ok: false, code: 'ENOENT' }]), 1);
  t.equal(exitStatusFor([{ ok: false, code: 'EINVAL' }]), 22);
  t.equal(exitStatusFor([{ ok: false, code: 'EBUSY' }]), 16);
  t.equal(errnoNumber('EIO'), 5);
});

t.test('--filelist for every command, NUL or newline separated', async (t) => {
  for (const c of ['hsm_state', 'hsm_action']) {
    t.match(parseLfsArgs([c, '--filelist', '-']), { files: [], filelist: '-' }, `${c} --filelist -`);
    t.match(parseLfsArgs([c, '--filelist=list', 'f']), { files: ['f'], filelist: 'list' }, `${c} --filelist=F`);
    t.equal(usageOf([c, '--filelist']).detail, "lfs: unrecognized option '--filelist'", `${c} --filelist without a value`);
  }
  t.match(parseLfsArgs(['hsm_set', '--dirty', '--filelist', '-']), { files: [], filelist: '-', setFlags: DIRTY });
  t.match(parseLfsArgs(['hsm', 'clear', '--norelease', '--filel', 'l']), { filelist: 'l', clearFlags: NORELEASE });
  t.match(usageText('hsm_state'), /blobhsm options: \[--filelist FILELIST\] \[--json\]$/);
  t.same(parseFilelist('a\0b\nc\0\0d\0'), ['a', 'b\nc', 'd'], 'NUL-separated (find -print0): newlines are part of names');
});
