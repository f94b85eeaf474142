// How the Azure store reads the POSIX attributes of a hierarchical-namespace account in the same listing that
// carries the metadata: List Blobs with `include=metadata,permissions` (service version 2020-06-12+).
// @azure/storage-blob 12.32 has no "permissions" include option and its models drop `Owner`, `Group`,
// `Permissions`, `Acl` and `ResourceType`, so (1) a pipeline policy in phase "Serialize" appends `permissions` to
// the `include` of List Blobs requests, and (2) the raw page (`page._response.bodyAsText`, internal to the SDK) is
// parsed here for those elements. test/hns-listing.test.ts pins both against the pinned SDK version.
// HEAD answers carry the same attributes as `x-ms-owner`, `x-ms-group`, `x-ms-permissions`, `x-ms-acl`,
// `x-ms-resource-type`. Pure functions and a policy object; no I/O of its own.
import { coreXml } from './azure-sdk.js';
import type { HnsAttributes } from './blob-store.js';

/** The part of a core-rest-pipeline request and policy this module needs. */
interface PolicyRequest {
  url: string;
}
export interface UrlPolicy {
  name: string;
  sendRequest<R>(request: PolicyRequest, next: (request: PolicyRequest) => Promise<R>): Promise<R>;
}

/** Appends `permissions` to the `include` of List Blobs requests while `enabled()` says so. */
export function listPermissionsPolicy(enabled: () => boolean): UrlPolicy {
  return {
    name: 'blobhsmListPermissions',
    sendRequest(request, next) {
      if (enabled()) request.url = withPermissionsInclude(request.url);
      return next(request);
    },
  };
}

/** A List Blobs URL with `permissions` in its include list (other URLs unchanged). */
export function withPermissionsInclude(url: string): string {
  const u = new URL(url);
  if (u.searchParams.get('comp') !== 'list' || u.searchParams.get('restype') !== 'container') return url;
  const include = (u.searchParams.get('include') ?? '').split(',').filter(Boolean);
  if (include.includes('permissions')) return url;
  u.searchParams.set('include', [...include, 'permissions'].join(','));
  return u.toString();
}

type XmlNode = string | number | { _?: string | number; $?: Record<string, string>; [k: string]: unknown };

function text(node: unknown): string | undefined {
  if (node === undefined || node === null) return undefined;
  if (typeof node === 'string' || typeof node === 'number') return String(node);
  const n = node as { _?: unknown };
  return n._ === undefined ? '' : String(n._);
}

function blobName(node: XmlNode | undefined): string | undefined {
  const value = text(node);
  if (value === undefined) return undefined;
  const encoded = typeof node === 'object' && node.$?.Encoded === 'true';
  return encoded ? decodeURIComponent(value) : value;
}

/**
 * The HNS attributes of each entry of a raw List Blobs page, by blob name. An entry without any of the five
 * elements (a flat account, or a request without include=permissions) is absent from the map.
 */
export async function parseListingPermissions(xml: string): Promise<Map<string, HnsAttributes>> {
  const out = new Map<string, HnsAttributes>();
  if (!xml) return out;
  const root = (await coreXml.parseXML(xml, { includeRoot: false })) as { Blobs?: { Blob?: unknown } };
  const raw = root.Blobs?.Blob;
  const blobs = (raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]) as Array<{ Name?: XmlNode; Properties?: Record<string, unknown> }>;
  for (const b of blobs) {
    const name = blobName(b.Name);
    if (name === undefined || !b.Properties) continue;
    const attrs = hnsAttributes((k) => text(b.Properties![k]));
    if (attrs) out.set(name, attrs);
  }
  return out;
}

const FIELDS = [
  ['owner', 'Owner', 'x-ms-owner'],
  ['group', 'Group', 'x-ms-group'],
  ['permissions', 'Permissions', 'x-ms-permissions'],
  ['acl', 'Acl', 'x-ms-acl'],
] as const;

function hnsAttributes(get: (listingName: string, headerName: string) => string | undefined): HnsAttributes | undefined {
  const attrs: HnsAttributes = {};
  let any = false;
  for (const [field, listingName, headerName] of FIELDS) {
    const v = get(listingName, headerName);
    if (v === undefined || v === '') continue;
    attrs[field] = v;
    any = true;
  }
  const type = get('ResourceType', 'x-ms-resource-type')?.toLowerCase();
  if (type === 'directory' || type === 'file') {
    attrs.resourceType = type;
    any = true;
  }
  return any ? attrs : undefined;
}

/** The HNS attributes of a HEAD answer's headers, or undefined when it has none. */
export function headerPermissions(header: (name: string) => string | undefined | null): HnsAttributes | undefined {
  return hnsAttributes((_listing, name) => header(name) ?? undefined);
}
