// The credential and container options shared by every command that talks to a container directly (`mount`,
// `ingest`): the flags, and the StorageConfig they give together with the Azure environment variables.
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { checkContainerName, type StorageConfig } from '../config.js';

export interface StorageFlags {
  container?: string;
  connectionString?: string;
  account?: string;
  accountKey?: string;
  sasToken?: string;
  blobEndpoint?: string;
}

/** Adds --container, --prefix and the credential flags (same spelling for every command). */
export function addStorageOptions(command: Command, prefixHelp: string): Command {
  return command
    .option('--container <name>', 'blob container (env AZURE_STORAGE_CONTAINER)')
    .option('--prefix <prefix>', prefixHelp)
    .option('--connection-string <s>', "storage connection string, or '-' to type it (better: env AZURE_STORAGE_CONNECTION_STRING)")
    .option('--account <name>', 'storage account (env AZURE_STORAGE_ACCOUNT)')
    .option('--account-key <key>', "account key, or '-' to type it (better: env AZURE_STORAGE_KEY)")
    .option('--sas-token <token>', "SAS token, or '-' to type it (better: env AZURE_STORAGE_SAS_TOKEN)")
    .option('--blob-endpoint <url>', 'blob service endpoint (env AZURE_STORAGE_BLOB_ENDPOINT)');
}

/**
 * The container named by the flags or AZURE_STORAGE_CONTAINER (`fallbackContainer` when neither), checked, with the
 * credentials given as flags; the environment fills in the rest when the store is created.
 */
export function storageConfigFromFlags(flags: StorageFlags, env: NodeJS.ProcessEnv, fallbackContainer?: string): StorageConfig {
  const container = flags.container ?? env.AZURE_STORAGE_CONTAINER ?? fallbackContainer;
  if (!container) throw new UsageError('no container given: pass --container NAME (or set AZURE_STORAGE_CONTAINER)');
  checkContainerName(container);
  if ((flags.accountKey || flags.sasToken) && !(flags.account ?? env.AZURE_STORAGE_ACCOUNT)) {
    throw new UsageError('--account-key and --sas-token need --account NAME (or AZURE_STORAGE_ACCOUNT)');
  }
  return {
    container,
    ...(flags.connectionString ? { connectionString: flags.connectionString } : {}),
    ...(flags.account ? { account: flags.account } : {}),
    ...(flags.accountKey ? { accountKey: flags.accountKey } : {}),
    ...(flags.sasToken ? { sasToken: flags.sasToken } : {}),
    ...(flags.blobEndpoint ? { blobEndpoint: flags.blobEndpoint } : {}),
  };
}
