// A loopback fake of a hierarchical-namespace (ADLS Gen2) account: an HTTP proxy in front of Azurite that owns a
// table of path attributes (owner, group, permissions, ACL, resource type) and adds what an HNS account adds:
// - account info (`restype=account&comp=properties`) answers `x-ms-is-hns-enabled: true` (or, with
//   `refuseAccountInfo`, 403 AuthorizationPermissionMismatch as for a SAS without account permissions);
// - List Blobs with `include=...permissions` gets `Owner`, `Group`, `Permissions`, `Acl`, `ResourceType` in each
//   entry's `<Properties>`; HEAD/GET of a blob get `x-ms-owner`, `x-ms-group`, `x-ms-permissions`, `x-ms-acl`,
//   `x-ms-resource-type`;
// - the DFS calls export uses: Create Directory (`PUT ?resource=directory`, with x-ms-owner/-group/-permissions/
//   -acl), Set Access Control (`PATCH ?action=setAccessControl`), Rename (`PUT` with `x-ms-rename-source`), done on
//   Azurite with the fake's own client (a directory is an empty `hdi_isfolder=true` blob, as HNS lists it).
// Blob requests are forwarded unchanged: SharedKey signs /account/path, not host:port. Paths the table does not know
// get HNS's defaults for a SharedKey caller: `$superuser`, `$superuser`, rw-r----- (directories rwxr-x---).
// Not modelled: implicit parent directories of blobs written through the Blob API, leases, recursive ACL calls.
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { EMULATOR_ACCOUNT, EMULATOR_KEY } from '../../src/emulator/emulator.js';
import type { Azurite } from './azurite.js';

export interface HnsPath {
  owner: string;
  group: string;
  permissions: string;
  /** Access ACL, `user::rwx,group::r-x,other::---[,user:<id>:rwx,mask::rwx]`. */
  acl?: string;
  resourceType: 'file' | 'directory';
}

export interface HnsFake {
  connectionString: string;
  blobEndpoint: string;
  port: number;
  /** Sets (merges) the attributes of a path of a container. */
  setPath(container: string, path: string, attrs: Partial<HnsPath>): void;
  /** The attributes the fake reports for a path it knows, else undefined. */
  getPath(container: string, path: string): HnsPath | undefined;
  /** Requests served, by operation (getAccountInfo, listBlobs, getProperties, getBlob, createDirectory, setAccessControl, rename, blob). */
  requests(): Record<string, number>;
  /** Answer account info with 403 (a credential that may not read account properties). */
  refuseAccountInfo: boolean;
  stop(): Promise<void>;
}

const FILE_DEFAULT = 'rw-r-----';
const DIR_DEFAULT = 'rwxr-x---';

const xmlEscape = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
const xmlUnescape = (s: string) =>
  s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#x([0-9a-f]+);/gi, (_, h: string) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#([0-9]+);/g, (_, d: string) => String.fromCodePoint(Number(d)))
    .replace(/&amp;/g, '&');

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function dfsError(res: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, { 'content-type': 'application/json', 'x-ms-error-code': code, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startHnsFake(azurite: Pick<Azurite, 'blobEndpoint'>): Promise<HnsFake> {
  const target = new URL(azurite.blobEndpoint);
  const table = new Map<string, HnsPath>();
  const counts: Record<string, number> = {};
  const count = (op: string) => (counts[op] = (counts[op] ?? 0) + 1);
  const credential = new StorageSharedKeyCredential(EMULATOR_ACCOUNT, EMULATOR_KEY);
  const containerClient = (container: string) => new ContainerClient(`${azurite.blobEndpoint}/${container}`, credential);
  const key = (container: string, path: string) => `${container}/${path.replace(/\/+$/, '')}`;

  const attrsOf = (container: string, path: string, isFolder: boolean): HnsPath => {
    const known = table.get(key(container, path));
    if (known) return known;
    return isFolder
      ? { owner: '$superuser', group: '$superuser', permissions: DIR_DEFAULT, resourceType: 'directory' }
      : { owner: '$superuser', group: '$superuser', permissions: FILE_DEFAULT, resourceType: 'file' };
  };
  const aclOf = (a: HnsPath) => a.acl ?? defaultAcl(a.permissions);

  /** Forwards a request to Azurite; `rewrite` may replace the body and headers of a buffered response. */
  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    rewrite?: (status: number, headers: Record<string, string | string[] | undefined>, body: Buffer) => { headers: Record<string, string | string[] | undefined>; body: Buffer },
  ) => {
    const upstream = httpRequest(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (up) => {
        if (!rewrite) {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
          return;
        }
        void readBody(up).then((body) => {
          const out = rewrite(up.statusCode ?? 502, { ...up.headers }, body);
          delete out.headers['transfer-encoding'];
          if (req.method !== 'HEAD') out.headers['content-length'] = String(out.body.length);
          res.writeHead(up.statusCode ?? 502, out.headers);
          res.end(req.method === 'HEAD' ? undefined : out.body);
        });
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const q = url.searchParams;
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    // parts[0] is the account, parts[1] the container, the rest the path.
    const container = parts[1] ?? '';
    const path = parts.slice(2).join('/');

    if (q.get('restype') === 'account' && q.get('comp') === 'properties') {
      count('getAccountInfo');
      if (fake.refuseAccountInfo) {
        const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch</Code><Message>This request is not authorized to perform this operation using this permission.</Message></Error>`;
        res.writeHead(403, { 'content-type': 'application/xml', 'x-ms-error-code': 'AuthorizationPermissionMismatch', 'content-length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      return forward(req, res, (_s, headers, body) => ({ headers: { ...headers, 'x-ms-is-hns-enabled': 'true' }, body }));
    }

    if (q.get('restype') === 'container' && q.get('comp') === 'list') {
      count('listBlobs');
      const withPermissions = (q.get('include') ?? '').split(',').includes('permissions');
      if (!withPermissions) return forward(req, res);
      return forward(req, res, (status, headers, body) => {
        if (status !== 200) return { headers, body };
        const xml = body.toString('utf8').replace(/<Blob>([\s\S]*?)<\/Blob>/g, (whole, inner: string) => {
          const name = xmlUnescape(/<Name>([\s\S]*?)<\/Name>/.exec(inner)?.[1] ?? '');
          const isFolder = /<Metadata>[\s\S]*<hdi_isfolder>true<\/hdi_isfolder>/i.test(inner);
          const a = attrsOf(container, name, isFolder);
          const extra =
            `<Owner>${xmlEscape(a.owner)}</Owner><Group>${xmlEscape(a.group)}</Group>` +
            `<Permissions>${xmlEscape(a.permissions)}</Permissions><Acl>${xmlEscape(aclOf(a))}</Acl>` +
            `<ResourceType>${a.resourceType}</ResourceType>`;
          return whole.replace('</Properties>', `${extra}</Properties>`);
        });
        return { headers, body: Buffer.from(xml) };
      });
    }

    // ---- DFS calls ----
    if (req.method === 'PUT' && q.get('resource') === 'directory') {
      count('createDirectory');
      await readBody(req);
      const dir = containerClient(container).getBlockBlobClient(path);
      if (req.headers['if-none-match'] === '*' && (await dir.exists())) {
        return dfsError(res, 409, 'PathAlreadyExists', 'The specified path already exists.');
      }
      const r = await dir.upload('', 0, { metadata: { hdi_isfolder: 'true' } });
      table.set(key(container, path), {
        owner: header(req, 'x-ms-owner') ?? '$superuser',
        group: header(req, 'x-ms-group') ?? '$superuser',
        permissions: permissionsString(header(req, 'x-ms-permissions')) ?? DIR_DEFAULT,
        ...(header(req, 'x-ms-acl') ? { acl: header(req, 'x-ms-acl')! } : {}),
        resourceType: 'directory',
      });
      res.writeHead(201, { etag: r.etag ?? '', 'last-modified': (r.lastModified ?? new Date()).toUTCString(), 'content-length': 0 });
      res.end();
      return;
    }

    if (req.method === 'PATCH' && q.get('action') === 'setAccessControl') {
      count('setAccessControl');
      await readBody(req);
      let props;
      try {
        props = await containerClient(container).getBlobClient(path).getProperties();
      } catch {
        return dfsError(res, 404, 'PathNotFound', 'The specified path does not exist.');
      }
      const was = attrsOf(container, path, props.metadata?.hdi_isfolder === 'true');
      const acl = header(req, 'x-ms-acl');
      const perms = permissionsString(header(req, 'x-ms-permissions'));
      table.set(key(container, path), {
        ...was,
        owner: header(req, 'x-ms-owner') ?? was.owner,
        group: header(req, 'x-ms-group') ?? was.group,
        ...(perms ? { permissions: perms, acl: undefined } : {}),
        ...(acl ? { acl, permissions: permissionsFromAcl(acl, was.permissions) } : {}),
      });
      res.writeHead(200, { etag: props.etag ?? '', 'last-modified': (props.lastModified ?? new Date()).toUTCString(), 'content-length': 0 });
      res.end();
      return;
    }

    const renameSource = header(req, 'x-ms-rename-source');
    if (req.method === 'PUT' && renameSource) {
      count('rename');
      await readBody(req);
      // `/container/path` (a path-style endpoint also names the account first), maybe with a SAS.
      const srcParts = renameSource.split('?')[0]!.split('/').filter(Boolean).map(decodeURIComponent);
      if (srcParts[0] === EMULATOR_ACCOUNT) srcParts.shift();
      const srcContainer = srcParts[0] ?? '';
      const srcPath = srcParts.slice(1).join('/');
      await renamePath(srcContainer, srcPath, container, path, req, res);
      return;
    }

    if ((req.method === 'HEAD' || req.method === 'GET') && path && !q.has('comp') && !q.has('restype')) {
      count(req.method === 'HEAD' ? 'getProperties' : 'getBlob');
      return forward(req, res, (status, headers, body) => {
        if (status >= 300) return { headers, body };
        const isFolder = String(headers['x-ms-meta-hdi_isfolder'] ?? '').toLowerCase() === 'true';
        const a = attrsOf(container, path, isFolder);
        return {
          headers: {
            ...headers,
            'x-ms-owner': a.owner,
            'x-ms-group': a.group,
            'x-ms-permissions': a.permissions,
            'x-ms-acl': aclOf(a),
            'x-ms-resource-type': a.resourceType,
          },
          body,
        };
      });
    }
    count('blob');
    return forward(req, res);
  };

  /** Moves a file, or a directory and everything under it, inside Azurite and in the table. */
  const renamePath = async (
    srcContainer: string,
    srcPath: string,
    dstContainer: string,
    dstPath: string,
    req: IncomingMessage,
    res: ServerResponse,
  ) => {
    const from = containerClient(srcContainer);
    const to = containerClient(dstContainer);
    if (req.headers['if-none-match'] === '*' && (await to.getBlobClient(dstPath).exists())) {
      return dfsError(res, 409, 'PathAlreadyExists', 'The specified path already exists.');
    }
    const names: string[] = [];
    if (await from.getBlobClient(srcPath).exists()) names.push(srcPath);
    for await (const b of from.listBlobsFlat({ prefix: `${srcPath}/` })) names.push(b.name);
    if (names.length === 0) return dfsError(res, 404, 'SourcePathNotFound', 'The source path for a rename operation does not exist.');
    for (const name of names) {
      const newName = dstPath + name.slice(srcPath.length);
      const source = from.getBlobClient(name);
      const props = await source.getProperties();
      const data = await source.downloadToBuffer();
      await to.getBlockBlobClient(newName).upload(data, data.length, { metadata: props.metadata ?? {} });
      await source.delete();
      const k = key(srcContainer, name);
      const attrs = table.get(k);
      if (attrs) {
        table.delete(k);
        table.set(key(dstContainer, newName), attrs);
      }
    }
    const head = await to.getBlobClient(dstPath).getProperties().catch(() => undefined);
    res.writeHead(201, { etag: head?.etag ?? '', 'last-modified': (head?.lastModified ?? new Date()).toUTCString(), 'content-length': 0 });
    res.end();
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) dfsError(res, 500, 'InternalError', String(err));
      else res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const blobEndpoint = `http://127.0.0.1:${port}/${EMULATOR_ACCOUNT}`;
  const fake: HnsFake = {
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${EMULATOR_ACCOUNT};AccountKey=${EMULATOR_KEY};BlobEndpoint=${blobEndpoint};`,
    blobEndpoint,
    port,
    refuseAccountInfo: false,
    setPath(container, path, attrs) {
      const k = key(container, path);
      const was = table.get(k) ?? attrsOf(container, path, attrs.resourceType === 'directory');
      table.set(k, { ...was, ...attrs });
    },
    getPath: (container, path) => table.get(key(container, path)),
    requests: () => ({ ...counts }),
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return fake;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** x-ms-permissions as the service takes it: symbolic (`rwxr-x---`, sticky t/T) or 4-digit octal. */
function permissionsString(value: string | undefined): string | undefined {
  if (!value) return undefined;
  if (!/^[0-7]{3,4}$/.test(value)) return value;
  const n = parseInt(value, 8);
  let s = '';
  for (let i = 8; i >= 0; i--) s += n & (1 << i) ? 'rwx'[(8 - i) % 3] : '-';
  if (n & 0o1000) s = s.slice(0, 8) + (s[8] === 'x' ? 't' : 'T');
  return s;
}

/** The ACL HNS reports for plain permissions: owner, group and other entries. */
function defaultAcl(permissions: string): string {
  const p = permissions.replace(/\+$/, '');
  const other = p.slice(6, 9).replace('t', 'x').replace('T', '-');
  return `user::${p.slice(0, 3)},group::${p.slice(3, 6)},other::${other}`;
}

/** Permissions after setting an ACL: owner and other from their entries, the group bits from the mask (if any). */
function permissionsFromAcl(acl: string, was: string): string {
  const entries = new Map<string, string>();
  let named = false;
  for (const e of acl.split(',')) {
    const [tag, id, perm] = e.split(':');
    if (tag === undefined || perm === undefined) continue;
    if (id) named = true;
    else entries.set(tag, perm);
  }
  const sticky = /[tT]$/.test(was.replace(/\+$/, ''));
  const other = entries.get('other') ?? was.slice(6, 9);
  const otherBits = sticky ? other.slice(0, 2) + (other[2] === 'x' ? 't' : 'T') : other;
  const group = entries.get('mask') ?? entries.get('group') ?? was.slice(3, 6);
  return `${entries.get('user') ?? was.slice(0, 3)}${group}${otherBits}${named ? '+' : ''}`;
}
