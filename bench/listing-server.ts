// A synthetic listing source for the scale bench: a loopback HTTP server that answers List Blobs in Azure's wire
// format (the XML of `comp=list&include=metadata`, 5,000 entries a page, an opaque NextMarker), so the real
// AzureBlobStore and the Azure SDK parse what a container of a million blobs would send, without Azurite (which
// lists ~2k entries/s and slows as it fills). Every blob carries AMLFS-style metadata (owner, group, permissions,
// modtime). Names are generated in sorted order from their index, so any count costs no memory. Also answers the
// container and account properties a mount asks for; anything else is a 404 (and counted, so a run can show it).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A namespace: `count` blob names, in sorted (byte) order by index. */
export interface SyntheticNamespace {
  count: number;
  nameOf(index: number): string;
}

/** `big/f0000000` ... : one directory of `count` files. */
export function wideNamespace(dir: string, count: number): SyntheticNamespace {
  return { count, nameOf: (i) => `${dir}/f${String(i).padStart(7, '0')}` };
}

/** `tree/a000/b000/f000` ...: `width`³ files, three directory levels of `width` entries each. */
export function treeNamespace(dir: string, width: number): SyntheticNamespace {
  const pad = (n: number) => String(n).padStart(3, '0');
  return {
    count: width ** 3,
    nameOf: (i) => `${dir}/a${pad(Math.floor(i / (width * width)))}/b${pad(Math.floor(i / width) % width)}/f${pad(i % width)}`,
  };
}

/** Several namespaces side by side, in the order given (their directory names must sort in that order). */
export function joined(...parts: SyntheticNamespace[]): SyntheticNamespace {
  const starts: number[] = [];
  let total = 0;
  for (const p of parts) {
    starts.push(total);
    total += p.count;
  }
  return {
    count: total,
    nameOf: (i) => {
      let k = parts.length - 1;
      while (starts[k]! > i) k--;
      return parts[k]!.nameOf(i - starts[k]!);
    },
  };
}

export interface ListingServer {
  /** `BlobEndpoint=...` connection string for the SDK (path style, like Azurite). */
  connectionString: string;
  container: string;
  /** Entries served so far (all listings together), and List calls answered. */
  served(): { entries: number; listCalls: number; other: Record<string, number> };
  close(): Promise<void>;
}

const ACCOUNT = 'devstoreaccount1';
// Azurite's well-known development key: the SDK signs with it; this server checks nothing.
const KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const LAST_MODIFIED = 'Tue, 01 Dec 2026 08:00:00 GMT';

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function entryXml(name: string, index: number): string {
  const etag = `0x8DE${index.toString(16).toUpperCase().padStart(12, '0')}`;
  return (
    `<Blob><Name>${xmlEscape(name)}</Name><Properties><Creation-Time>${LAST_MODIFIED}</Creation-Time>` +
    `<Last-Modified>${LAST_MODIFIED}</Last-Modified><Etag>${etag}</Etag><Content-Length>${1024 + (index % 4096)}</Content-Length>` +
    '<Content-Type>application/octet-stream</Content-Type><Content-MD5 /><BlobType>BlockBlob</BlobType>' +
    '<AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked</LeaseStatus>' +
    '<LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted></Properties>' +
    `<Metadata><owner>1000</owner><group>1000</group><permissions>0644</permissions><modtime>2026-11-30 12:00:00 +0000</modtime></Metadata></Blob>`
  );
}

/** The first index whose name is >= prefix (names are sorted), by binary search. */
function lowerBound(ns: SyntheticNamespace, prefix: string): number {
  let lo = 0;
  let hi = ns.count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ns.nameOf(mid) < prefix) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export async function startListingServer(container: string, ns: SyntheticNamespace): Promise<ListingServer> {
  let entries = 0;
  let listCalls = 0;
  const other: Record<string, number> = {};
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const q = url.searchParams;
    const path = url.pathname;
    const common = { 'x-ms-version': '2025-01-05', 'x-ms-request-id': String(listCalls + entries), date: new Date().toUTCString() };
    req.resume();
    // Get Account Information (the SDK's container client sends it to the container's URL).
    if (q.get('comp') === 'properties' && q.get('restype') === 'account') {
      res.writeHead(200, { ...common, 'x-ms-sku-name': 'Standard_LRS', 'x-ms-account-kind': 'StorageV2', 'x-ms-is-hns-enabled': 'false' });
      return res.end();
    }
    if (path === `/${ACCOUNT}/${container}` && q.get('restype') === 'container') {
      if (q.get('comp') === 'list') {
        listCalls++;
        const prefix = q.get('prefix') ?? '';
        const max = Math.min(5000, Number(q.get('maxresults') ?? 5000));
        let i = q.get('marker') ? Number(q.get('marker')) : lowerBound(ns, prefix);
        const parts: string[] = [];
        for (; i < ns.count && parts.length < max; i++) {
          const name = ns.nameOf(i);
          if (!name.startsWith(prefix)) {
            i = ns.count;
            break;
          }
          parts.push(entryXml(name, i));
        }
        entries += parts.length;
        const next = i < ns.count && ns.nameOf(i).startsWith(prefix) ? String(i) : '';
        const body =
          `<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="http://127.0.0.1/${ACCOUNT}/" ContainerName="${container}">` +
          `<Prefix>${xmlEscape(prefix)}</Prefix><MaxResults>${max}</MaxResults><Blobs>${parts.join('')}</Blobs><NextMarker>${next}</NextMarker></EnumerationResults>`;
        res.writeHead(200, { ...common, 'content-type': 'application/xml' });
        return res.end(body);
      }
      if (!q.get('comp')) {
        res.writeHead(200, { ...common, etag: '"0x8DE000000000000"', 'last-modified': LAST_MODIFIED, 'x-ms-lease-status': 'unlocked', 'x-ms-lease-state': 'available' });
        return res.end();
      }
    }
    const key = `${req.method} ${path.replace(`/${ACCOUNT}/${container}/`, '/<blob>/')}?${[...q.keys()].sort().join('&')}`;
    other[key] = (other[key] ?? 0) + 1;
    res.writeHead(404, { ...common, 'content-type': 'application/xml', 'x-ms-error-code': 'ResourceNotFound' });
    res.end('<?xml version="1.0" encoding="utf-8"?><Error><Code>ResourceNotFound</Code><Message>The synthetic listing source has only listings.</Message></Error>');
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT};AccountKey=${KEY};BlobEndpoint=http://127.0.0.1:${port}/${ACCOUNT};`,
    container,
    served: () => ({ entries, listCalls, other: { ...other } }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
