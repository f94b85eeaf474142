import t from 'tap';
import {
  formatActionFailed,
  formatDf,
  formatCannotStat,
  formatFilelistError,
  formatHsmAction,
  formatHsmActionError,
  formatHsmFlagsError,
  formatHsmState,
  formatHsmStateError,
  formatNotRegular,
  formatRequestFailed,
  hsmActionJson,
  hsmErrorJson,
  hsmStateJson,
  strerror,
} from '../src/hsm/format.js';

t.test('hsm_state lines (docs/SEMANTICS.md examples and lfs.c format)', async (t) => {
  const cases: Array<[flags: number, archiveId: number, line: string]> = [
    [0x00, 0, 'f: (0x00000000)'],
    [0x0d, 1, 'f: (0x0000000d) released exists archived, archive_id:1'],
    [0x0b, 1, 'f: (0x0000000b) exists dirty archived, archive_id:1'],
    [0x09, 1, 'f: (0x00000009) exists archived, archive_id:1'],
    [0x01, 2, 'f: (0x00000001) exists, archive_id:2'],
    [0x7f, 3, 'f: (0x0000007f) released exists dirty archived never_release never_archive lost_from_hsm, archive_id:3'],
    [0x7f, 0, 'f: (0x0000007f) released exists dirty archived never_release never_archive lost_from_hsm'],
    [0x30, 0, 'f: (0x00000030) never_release never_archive'],
    [0x48, 1, 'f: (0x00000048) archived lost_from_hsm, archive_id:1'],
    [0x09, 4294967295, 'f: (0x00000009) exists archived, archive_id:4294967295'],
  ];
  for (const [flags, id, line] of cases) t.equal(formatHsmState('f', flags, id), line, line);
  t.equal(formatHsmState('/mnt/a b/c', 0x09, 1), '/mnt/a b/c: (0x00000009) exists archived, archive_id:1', 'path verbatim');
  t.equal(formatHsmState('f', 0x80, 0), 'f: (0x00000080)', 'unknown bits shown in hex only');
});

t.test('error lines', async (t) => {
  t.equal(formatHsmStateError('F', 'ENOENT'), "lfs hsm_state: get HSM state for 'F' failed: No such file or directory");
  t.equal(formatHsmStateError('F', 'EPERM', 'state'), "lfs state: get HSM state for 'F' failed: Operation not permitted");
  t.equal(formatHsmActionError('F', 'EIO'), "lfs hsm_action: get hsm action for 'F' failed: Input/output error");
  t.equal(formatHsmFlagsError('F', 'EINVAL', 'hsm_set'), "lfs hsm_set: change hsm flags for 'F' failed: Invalid argument");
  t.equal(formatHsmFlagsError('F', 'EPERM', 'hsm_clear'), "lfs hsm_clear: change hsm flags for 'F' failed: Operation not permitted");
  t.equal(formatNotRegular('d'), 'error: "d" is not a regular file');
  t.equal(formatCannotStat('x', 'ENOENT'), 'Cannot stat x: No such file or directory');
  t.equal(formatFilelistError('list', 'EACCES'), 'Cannot read the file list list: Permission denied');
  t.equal(formatRequestFailed('f', 'EPERM'), 'Cannot send HSM request (use of f): Operation not permitted');
  t.equal(formatActionFailed('hsm_restore', 'RESTORE', 'f', 'EIO', 'blob gone'), "lfs hsm_restore: restore of 'f' failed: Input/output error (blob gone)");
  t.equal(formatActionFailed('archive', 'ARCHIVE', 'f', 'ECANCELED'), "lfs archive: archive of 'f' failed: Operation canceled");
});

t.test('strerror: glibc texts', async (t) => {
  const glibc: Record<string, string> = {
    ENOENT: 'No such file or directory',
    EEXIST: 'File exists',
    ENOTDIR: 'Not a directory',
    EISDIR: 'Is a directory',
    ENOTEMPTY: 'Directory not empty',
    EINVAL: 'Invalid argument',
    EPERM: 'Operation not permitted',
    EACCES: 'Permission denied',
    EROFS: 'Read-only file system',
    EIO: 'Input/output error',
    EBUSY: 'Device or resource busy',
    ENOSPC: 'No space left on device',
    ENAMETOOLONG: 'File name too long',
    ENODATA: 'No data available',
    ENOTSUP: 'Operation not supported',
    EXDEV: 'Invalid cross-device link',
    EBADF: 'Bad file descriptor',
    ETIMEDOUT: 'Connection timed out',
    ENOSYS: 'Function not implemented',
    ERANGE: 'Numerical result out of range',
    EAGAIN: 'Resource temporarily unavailable',
    EFBIG: 'File too large',
    ECANCELED: 'Operation canceled',
  };
  for (const [code, text] of Object.entries(glibc)) t.equal(strerror(code), text, code);
  t.equal(strerror('ENOTCONN'), 'Transport endpoint is not connected');
  t.equal(strerror('ENOTTY'), 'Inappropriate ioctl for device', 'lfs on a file outside the mounts');
  t.equal(strerror('ENOTSOCK'), 'Unknown error 88', 'unlisted code: glibc unknown-errno form');
  t.equal(strerror('EWHATEVER'), 'Unknown error EWHATEVER');
});

t.test('hsm_action lines (lfs_hsm_action)', async (t) => {
  const cases: Array<[Parameters<typeof formatHsmAction>[1], string]> = [
    [{ kind: 'NOOP' }, 'f: NOOP'],
    [{ kind: 'NOOP', status: 'running', bytesMoved: 5 }, 'f: NOOP'],
    [{ kind: 'ARCHIVE', status: 'running', bytesMoved: 1048576 }, 'f: ARCHIVE running (1048576 bytes moved)'],
    [{ kind: 'RESTORE', status: 'running', bytesMoved: 0 }, 'f: RESTORE running (0 bytes moved)'],
    [{ kind: 'RESTORE', status: 'running' }, 'f: RESTORE running (0 bytes moved)'],
    [{ kind: 'RESTORE', status: 'waiting' }, 'f: RESTORE waiting (from 0 to EOF)'],
    [{ kind: 'ARCHIVE', status: 'waiting', extent: { offset: 0, length: 'EOF' } }, 'f: ARCHIVE waiting (from 0 to EOF)'],
    [{ kind: 'ARCHIVE', status: 'done', extent: { offset: 0, length: 'EOF' } }, 'f: ARCHIVE done (from 0 to EOF)'],
    [{ kind: 'RESTORE', status: 'waiting', extent: { offset: 4096, length: 8192 } }, 'f: RESTORE waiting (from 4096 to 12288)'],
    [{ kind: 'REMOVE', status: 'running', bytesMoved: 7 }, 'f: REMOVE running (from 0 to EOF)'],
    [{ kind: 'CANCEL', status: 'waiting' }, 'f: CANCEL waiting (from 0 to EOF)'],
    [{ kind: 'RELEASE', status: 'running' }, 'f: RELEASE running (from 0 to EOF)'],
    [{ kind: 'ARCHIVE' }, 'f: ARCHIVE unknown (from 0 to EOF)'],
  ];
  for (const [action, line] of cases) t.equal(formatHsmAction('f', action), line, line);
});

t.test('JSON variants', async (t) => {
  t.same(hsmStateJson('f', 0x0d, 1), {
    path: 'f',
    flags: 13,
    flagsHex: '0x0000000d',
    states: ['released', 'exists', 'archived'],
    archiveId: 1,
  });
  t.same(hsmStateJson('f', 0, 0), { path: 'f', flags: 0, flagsHex: '0x00000000', states: [], archiveId: 0 });
  t.equal(JSON.stringify(hsmStateJson('f', 0x0b, 1)), '{"path":"f","flags":11,"flagsHex":"0x0000000b","states":["exists","dirty","archived"],"archiveId":1}');
  t.same(hsmActionJson('f', { kind: 'NOOP' }), { path: 'f', action: 'NOOP', status: null, bytesMoved: null, extent: null });
  t.same(hsmActionJson('f', { kind: 'ARCHIVE', status: 'running', bytesMoved: 10 }), {
    path: 'f',
    action: 'ARCHIVE',
    status: 'running',
    bytesMoved: 10,
    extent: { offset: 0, length: 'EOF' },
  });
  t.same(hsmErrorJson('f', 'ENOENT'), { path: 'f', error: 'ENOENT', message: 'No such file or directory' });
});

t.test('formatDf: lfs df layout, -i and -h', async (t) => {
  const mdt = { bsize: 4096, blocks: 1000, bfree: 990, bavail: 900, files: 1_000_050, ffree: 1_000_000 };
  const ost = { bsize: 4096, blocks: 1000, bfree: 750, bavail: 700, files: 5000, ffree: 4000 };
  t.equal(
    formatDf('box', '/mnt/b', mdt, ost, { inodes: false, human: false }),
    'UUID                   1K-blocks        Used   Available Use% Mounted on\n' +
      'box-MDT0000_UUID            4000          40        3600   2% /mnt/b[MDT:0]\n' +
      'box-OST0000_UUID            4000        1000        2800  27% /mnt/b[OST:0]\n' +
      '\n' +
      'filesystem_summary:         4000        1000        2800  27% /mnt/b\n',
  );
  t.equal(
    formatDf('box', '/mnt/b', mdt, ost, { inodes: true, human: false }).split('\n')[1],
    'box-MDT0000_UUID         1000050          50     1000000   1% /mnt/b[MDT:0]',
  );
  t.equal(formatDf('box', '/m', mdt, ost, { inodes: false, human: true }).split('\n')[2], 'box-OST0000_UUID          3.9M   1000.0K      2.7M  27% /m[OST:0]', 'HDF is %8.1f%c: narrower than the 11-wide columns, as in lfs');
});
