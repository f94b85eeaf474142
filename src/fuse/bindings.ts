// The names of the FUSE bindings a mount can use (`--fuse`), apart from the bindings themselves so the CLI can
// parse the flag without loading them.
export const FUSE_BINDINGS = ['auto', 'fuse3', 'fuse2'] as const;
export type FuseBindingChoice = (typeof FUSE_BINDINGS)[number];
