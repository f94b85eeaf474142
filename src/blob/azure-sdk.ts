// The Azure SDK packages the blob store runs on, loaded from their CommonJS builds. On Node 20, loading
// @azure/storage-blob with what it needs (about 450 files) costs 140-150 ms of CPU from its ESM build and 110-115 ms
// from its CommonJS build, and every `blobhsm ingest`, `import`, `export` or mount pays it at start. Every value
// import of @azure/* in src comes from here, so one build of each package is loaded (the ESM and CommonJS builds
// of a package are two copies); types are imported from the packages as usual.
import { createRequire } from 'node:module';
import type * as StorageBlob from '@azure/storage-blob';
import type * as CoreRestPipeline from '@azure/core-rest-pipeline';
import type * as CoreXml from '@azure/core-xml';
import type * as Identity from '@azure/identity';

const require = createRequire(import.meta.url);

export const storageBlob = require('@azure/storage-blob') as typeof StorageBlob;
export const coreRestPipeline = require('@azure/core-rest-pipeline') as typeof CoreRestPipeline;
export const coreXml = require('@azure/core-xml') as typeof CoreXml;

/** @azure/identity (slow to load: only when a token credential is first needed). */
export function loadIdentity(): typeof Identity {
  return require('@azure/identity') as typeof Identity;
}
