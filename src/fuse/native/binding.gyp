# Built by bin/build-addon.sh (npm ci's install step and npm run setup) with node-gyp --directory=src/fuse/native,
# so the package root keeps only package.json, tsconfig.json, src, bin, test, docker and README.md.
{
  "targets": [
    {
      "target_name": "blobhsm_fuse",
      "sources": ["blobhsm_fuse.c"],
      "cflags": ["<!@(pkg-config --cflags fuse3)", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}
