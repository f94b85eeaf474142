// docs/SEMANTICS.md is the document the code and tests cite: every citation names a section it has, and its
// tables say what the code does (flag bits and words, the errnos a read passes on).
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readErrnoOf } from '../src/errors.js';
import { BlobError } from '../src/errors.js';
import { STATE_WORDS } from '../src/hsm/flags.js';

const ROOT = new URL('..', import.meta.url).pathname;
const doc = readFileSync(join(ROOT, 'docs', 'SEMANTICS.md'), 'utf8');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

t.test('every citation of docs/SEMANTICS.md names a section it has', async (t) => {
  const sections = new Set([...doc.matchAll(/^## (§\d+)/gm)].map((m) => m[1]));
  t.ok(sections.size >= 5, 'the document has its numbered sections');
  let cited = 0;
  for (const f of [...files(join(ROOT, 'src')), ...files(join(ROOT, 'test'))]) {
    for (const m of readFileSync(f, 'utf8').matchAll(/SEMANTICS\.md (§\d+)/g)) {
      cited++;
      if (!sections.has(m[1]!)) t.fail(`${f.slice(ROOT.length)} cites ${m[1]}, which docs/SEMANTICS.md does not have`);
    }
  }
  t.ok(cited > 10, `${cited} citations checked`);
  t.notOk(/SPEC\.md|\bSPEC §/.test(files(join(ROOT, 'src')).map((f) => readFileSync(f, 'utf8')).join('\n')), 'no citation of a spec file the repository lacks');
});

t.test('the flag table and the read errno rule say what the code does', async (t) => {
  for (const [bit, word] of STATE_WORDS) {
    t.ok(doc.includes(`0x${bit.toString(16).padStart(2, '0')} \`${word}\``), `flag ${word} = 0x${bit.toString(16)}`);
  }
  t.ok(doc.includes(STATE_WORDS.map(([, w]) => w).join(' ')), 'the hsm_state word order');
  const rule: Array<[BlobError['kind'], string]> = [['Timeout', 'ETIMEDOUT'], ['Unauthorized', 'EACCES'], ['Transient', 'EIO'], ['NotFound', 'EIO']];
  for (const [kind, code] of rule) {
    t.equal(readErrnoOf(new BlobError(kind, 'x')), code, `${kind} → ${code}`);
    t.ok(doc.includes(code), `the document names ${code}`);
  }
});
