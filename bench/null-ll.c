// The FUSE ceiling reference: a null filesystem on libfuse3's low-level API, in C, with blobhsm's libfuse3 mount
// settings (src/fuse/fuse3-adapter.ts lowLevelOptions and src/fuse/native/blobhsm_fuse.c ll_init): 1 MiB
// max_read/max_write, max_background 64, congestion threshold 48, READDIRPLUS, the same capability mask, 60 s entry
// and attribute timeouts (negative entries too), keep_cache on open, one session thread. It serves the tree
// bench/null-fs.ts serves: /big/f000000.. (N files of the small size), /large.bin (the large size), /w/ (new files
// take writes: sizes are counted, the bytes dropped). File bytes are deterministic (byte o of any file is
// PATTERN(o mod 1 MiB)); getxattr answers ENODATA as blobhsm does, so `ls -l` sends the same requests.
//
// Built by the bench (bench/null-refs.ts): cc -O2 -o null-ll null-ll.c $(pkg-config --cflags --libs fuse3)
// Usage: null-ll MOUNTPOINT ENTRIES SMALL_BYTES LARGE_BYTES [writeback]
// Control on stdin, one command a line: "stats" prints the counters as one JSON line on stdout, "reset" zeroes
// them (prints {"reset":true}), "stop" or end of input unmounts and exits. "ready" is printed once INIT is done.
#define FUSE_USE_VERSION 34
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1u << 20)
#define TIMEOUT 60.0
#define INO_ROOT 1
#define INO_BIG 2
#define INO_W 3
#define INO_LARGE 4
#define INO_SMALL0 1000
#define INO_WRITTEN0 10000000
#define MAX_WRITTEN 1024
#define T0 1704067200 // 2024-01-01T00:00:00Z, as null-fs.ts

static unsigned entries;
static off_t small_bytes, large_bytes;
static int writeback;
static unsigned char pattern[2 * MiB]; // PATTERN repeated twice: any read of up to 1 MiB is one slice
static pthread_t main_thread;

// Written files: /w/NAME, size only.
static struct { char name[256]; off_t size; int used; } written[MAX_WRITTEN];

// Counters (the stdin thread reads them).
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
#define NOPS 24
static const char *op_names[NOPS] = {"lookup", "forget", "getattr", "setattr", "open", "read", "write", "flush",
                                     "release", "fsync", "opendir", "readdir", "readdirplus", "releasedir",
                                     "statfs", "getxattr", "listxattr", "create", "unlink", "mkdir", "init",
                                     "setxattr", "removexattr", "forget_multi"};
enum { C_LOOKUP, C_FORGET, C_GETATTR, C_SETATTR, C_OPEN, C_READ, C_WRITE, C_FLUSH, C_RELEASE, C_FSYNC, C_OPENDIR,
       C_READDIR, C_READDIRPLUS, C_RELEASEDIR, C_STATFS, C_GETXATTR, C_LISTXATTR, C_CREATE, C_UNLINK, C_MKDIR,
       C_INIT, C_SETXATTR, C_REMOVEXATTR, C_FORGET_MULTI };
static unsigned long op_count[NOPS];
#define NSIZES 64
static struct { size_t size; unsigned long n; } read_sizes[NSIZES], write_sizes[NSIZES];
static struct { char name[64]; unsigned long n; } xattr_names[16];

static void count(int op) {
  pthread_mutex_lock(&stats_lock);
  op_count[op]++;
  pthread_mutex_unlock(&stats_lock);
}

static void count_size(typeof(read_sizes) *hist, size_t size) {
  pthread_mutex_lock(&stats_lock);
  for (int i = 0; i < NSIZES; i++) {
    if ((*hist)[i].n && (*hist)[i].size != size) continue;
    (*hist)[i].size = size;
    (*hist)[i].n++;
    break;
  }
  pthread_mutex_unlock(&stats_lock);
}

static void count_xattr(const char *name) {
  pthread_mutex_lock(&stats_lock);
  for (int i = 0; i < 16; i++) {
    if (xattr_names[i].n && strcmp(xattr_names[i].name, name) != 0) continue;
    snprintf(xattr_names[i].name, sizeof xattr_names[i].name, "%s", name);
    xattr_names[i].n++;
    break;
  }
  pthread_mutex_unlock(&stats_lock);
}

// ---- the tree ---------------------------------------------------------------------------------------------------

static int stat_of(fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = T0;
  st->st_blksize = 4096;
  if (ino == INO_ROOT || ino == INO_BIG || ino == INO_W) {
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    st->st_size = 4096;
    st->st_blocks = 8;
    return 0;
  }
  st->st_mode = S_IFREG | 0644;
  st->st_nlink = 1;
  st->st_uid = st->st_gid = 1000;
  if (ino == INO_LARGE) st->st_size = large_bytes;
  else if (ino >= INO_SMALL0 && ino < INO_SMALL0 + entries) st->st_size = small_bytes;
  else if (ino >= INO_WRITTEN0 && ino < INO_WRITTEN0 + MAX_WRITTEN && written[ino - INO_WRITTEN0].used)
    st->st_size = written[ino - INO_WRITTEN0].size;
  else return ENOENT;
  st->st_blocks = (st->st_size + 511) / 512;
  return 0;
}

// The inode of NAME in PARENT, or 0.
static fuse_ino_t child_of(fuse_ino_t parent, const char *name) {
  if (parent == INO_ROOT) {
    if (!strcmp(name, "big")) return INO_BIG;
    if (!strcmp(name, "w")) return INO_W;
    if (!strcmp(name, "large.bin")) return INO_LARGE;
  } else if (parent == INO_BIG) {
    char *end;
    if (name[0] != 'f' || strlen(name) != 7) return 0;
    unsigned long i = strtoul(name + 1, &end, 10);
    if (*end == 0 && i < entries) return INO_SMALL0 + i;
  } else if (parent == INO_W) {
    for (int i = 0; i < MAX_WRITTEN; i++)
      if (written[i].used && !strcmp(written[i].name, name)) return INO_WRITTEN0 + i;
  }
  return 0;
}

static void reply_entry_of(fuse_req_t req, fuse_ino_t ino) {
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.entry_timeout = e.attr_timeout = TIMEOUT;
  if (ino) { // a negative entry (ino 0) is cached for the entry timeout, as blobhsm answers
    stat_of(ino, &e.attr);
    e.ino = ino;
    e.generation = 1;
  }
  fuse_reply_entry(req, &e);
}

// ---- operations -------------------------------------------------------------------------------------------------

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  count(C_INIT);
  conn->max_read = MiB;
  conn->max_write = MiB;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  unsigned want = FUSE_CAP_READDIRPLUS | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_CACHE_SYMLINKS | FUSE_CAP_ASYNC_READ |
                  FUSE_CAP_ATOMIC_O_TRUNC;
  if (writeback) want |= FUSE_CAP_WRITEBACK_CACHE;
  conn->want |= want & conn->capable;
  conn->want &= ~(FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_SPLICE_READ |
                  FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  if (!writeback) conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  printf("ready\n");
  fflush(stdout);
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  count(C_LOOKUP);
  reply_entry_of(req, child_of(parent, name));
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  (void)ino;
  (void)nlookup;
  count(C_FORGET);
  fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t n, struct fuse_forget_data *f) {
  (void)n;
  (void)f;
  count(C_FORGET_MULTI);
  fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  count(C_GETATTR);
  struct stat st;
  int err = stat_of(ino, &st);
  if (err) fuse_reply_err(req, err);
  else fuse_reply_attr(req, &st, TIMEOUT);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  (void)fi;
  count(C_SETATTR);
  if ((to_set & FUSE_SET_ATTR_SIZE) && ino >= INO_WRITTEN0 && ino < INO_WRITTEN0 + MAX_WRITTEN)
    written[ino - INO_WRITTEN0].size = attr->st_size;
  struct stat st;
  int err = stat_of(ino, &st);
  if (err) fuse_reply_err(req, err);
  else fuse_reply_attr(req, &st, TIMEOUT);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  count(C_OPEN);
  struct stat st;
  if (stat_of(ino, &st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  (void)mode;
  count(C_CREATE);
  if (parent != INO_W) {
    fuse_reply_err(req, EACCES);
    return;
  }
  fuse_ino_t ino = child_of(parent, name);
  for (int i = 0; !ino && i < MAX_WRITTEN; i++) {
    if (written[i].used) continue;
    written[i].used = 1;
    snprintf(written[i].name, sizeof written[i].name, "%s", name);
    ino = INO_WRITTEN0 + i;
  }
  if (!ino) {
    fuse_reply_err(req, ENOSPC);
    return;
  }
  written[ino - INO_WRITTEN0].size = 0;
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = ino;
  e.generation = 1;
  e.entry_timeout = e.attr_timeout = TIMEOUT;
  stat_of(ino, &e.attr);
  fi->keep_cache = 1;
  fuse_reply_create(req, &e, fi);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  count(C_READ);
  count_size(&read_sizes, size);
  struct stat st;
  if (stat_of(ino, &st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  size_t n = off >= st.st_size ? 0 : (size_t)(st.st_size - off) < size ? (size_t)(st.st_size - off) : size;
  if (n > MiB) n = MiB; // max_read
  fuse_reply_buf(req, (const char *)pattern + (off % MiB), n);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  (void)buf;
  (void)fi;
  count(C_WRITE);
  count_size(&write_sizes, size);
  if (ino >= INO_WRITTEN0 && ino < INO_WRITTEN0 + MAX_WRITTEN && written[ino - INO_WRITTEN0].size < off + (off_t)size)
    written[ino - INO_WRITTEN0].size = off + (off_t)size;
  fuse_reply_write(req, size);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  count(C_UNLINK);
  fuse_ino_t ino = parent == INO_W ? child_of(parent, name) : 0;
  if (!ino) {
    fuse_reply_err(req, parent == INO_W ? ENOENT : EACCES);
    return;
  }
  written[ino - INO_WRITTEN0].used = 0;
  fuse_reply_err(req, 0);
}

static void ll_ok(fuse_req_t req, int op) {
  count(op);
  fuse_reply_err(req, 0);
}
static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { (void)ino, (void)fi, ll_ok(req, C_FLUSH); }
static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { (void)ino, (void)fi, ll_ok(req, C_RELEASE); }
static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int d, struct fuse_file_info *fi) { (void)ino, (void)d, (void)fi, ll_ok(req, C_FSYNC); }
static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { (void)ino, (void)fi, ll_ok(req, C_RELEASEDIR); }

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  count(C_OPENDIR);
  if (ino != INO_ROOT && ino != INO_BIG && ino != INO_W) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fuse_reply_open(req, fi);
}

// Entry `i` of directory `ino` (after "." and ".."): its name and inode; 0 past the end.
static fuse_ino_t dir_entry(fuse_ino_t ino, off_t i, char *name, size_t cap) {
  if (ino == INO_ROOT) {
    static const char *names[] = {"big", "large.bin", "w"};
    static const fuse_ino_t inos[] = {INO_BIG, INO_LARGE, INO_W};
    if (i >= 3) return 0;
    snprintf(name, cap, "%s", names[i]);
    return inos[i];
  }
  if (ino == INO_BIG) {
    if (i >= (off_t)entries) return 0;
    snprintf(name, cap, "f%06u", (unsigned)i);
    return INO_SMALL0 + i;
  }
  for (off_t k = 0, seen = 0; k < MAX_WRITTEN; k++) {
    if (!written[k].used) continue;
    if (seen++ == i) {
      snprintf(name, cap, "%s", written[k].name);
      return INO_WRITTEN0 + k;
    }
  }
  return 0;
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus) {
  char *buf = malloc(size);
  size_t used = 0;
  for (off_t i = off;; i++) {
    char name[256];
    fuse_ino_t child = dir_entry(ino, i, name, sizeof name);
    if (!child) break;
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    stat_of(child, &e.attr);
    size_t need;
    if (plus) {
      e.ino = child;
      e.generation = 1;
      e.entry_timeout = e.attr_timeout = TIMEOUT;
      need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, i + 1);
    } else need = fuse_add_direntry(req, buf + used, size - used, name, &e.attr, i + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  count(C_READDIR);
  readdir_common(req, ino, size, off, 0);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  count(C_READDIRPLUS);
  readdir_common(req, ino, size, off, 1);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  count(C_STATFS);
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = st.f_frsize = 4096;
  st.f_blocks = 1 << 28;
  st.f_bfree = st.f_bavail = 1 << 27;
  st.f_files = 1 << 24;
  st.f_ffree = st.f_favail = 1 << 23;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  (void)ino;
  (void)size;
  count(C_GETXATTR);
  count_xattr(name);
  fuse_reply_err(req, ENODATA);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  (void)ino;
  count(C_LISTXATTR);
  if (size == 0) fuse_reply_xattr(req, 0);
  else fuse_reply_buf(req, NULL, 0);
}

static const struct fuse_lowlevel_ops ops = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .open = ll_open,
    .create = ll_create,
    .read = ll_read,
    .write = ll_write,
    .unlink = ll_unlink,
    .flush = ll_flush,
    .release = ll_release,
    .fsync = ll_fsync,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .readdirplus = ll_readdirplus,
    .releasedir = ll_releasedir,
    .statfs = ll_statfs,
    .getxattr = ll_getxattr,
    .listxattr = ll_listxattr,
};

// ---- control ----------------------------------------------------------------------------------------------------

static void print_hist(const char *key, typeof(read_sizes) *hist) {
  printf("\"%s\":{", key);
  for (int i = 0, first = 1; i < NSIZES && (*hist)[i].n; i++, first = 0)
    printf("%s\"%zu\":%lu", first ? "" : ",", (*hist)[i].size, (*hist)[i].n);
  printf("}");
}

static void print_stats(void) {
  pthread_mutex_lock(&stats_lock);
  printf("{\"stats\":{\"ops\":{");
  for (int i = 0, first = 1; i < NOPS; i++) {
    if (!op_count[i]) continue;
    printf("%s\"%s\":%lu", first ? "" : ",", op_names[i], op_count[i]);
    first = 0;
  }
  printf("},");
  print_hist("readSizes", &read_sizes);
  printf(",");
  print_hist("writeSizes", &write_sizes);
  printf(",\"xattrNames\":{");
  for (int i = 0; i < 16 && xattr_names[i].n; i++) printf("%s\"%s\":%lu", i ? "," : "", xattr_names[i].name, xattr_names[i].n);
  printf("}}}\n");
  fflush(stdout);
  pthread_mutex_unlock(&stats_lock);
}

static void *control_main(void *arg) {
  (void)arg;
  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    if (!strncmp(line, "stats", 5)) print_stats();
    else if (!strncmp(line, "reset", 5)) {
      pthread_mutex_lock(&stats_lock);
      memset(op_count, 0, sizeof op_count);
      memset(read_sizes, 0, sizeof read_sizes);
      memset(write_sizes, 0, sizeof write_sizes);
      memset(xattr_names, 0, sizeof xattr_names);
      pthread_mutex_unlock(&stats_lock);
      printf("{\"reset\":true}\n");
      fflush(stdout);
    } else if (!strncmp(line, "stop", 4)) break;
  }
  // End the session loop: the signal handler libfuse installed makes it exit; the main thread then unmounts.
  pthread_kill(main_thread, SIGTERM);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s MOUNTPOINT ENTRIES SMALL_BYTES LARGE_BYTES [writeback]\n", argv[0]);
    return 2;
  }
  entries = (unsigned)strtoul(argv[2], NULL, 10);
  small_bytes = strtoll(argv[3], NULL, 10);
  large_bytes = strtoll(argv[4], NULL, 10);
  writeback = argc > 5 && !strcmp(argv[5], "writeback");
  for (size_t i = 0; i < MiB; i++) pattern[i] = pattern[i + MiB] = (unsigned char)((i * 2654435761u) >> 24);
  main_thread = pthread_self();

  char *fargv[] = {argv[0], "-o", "fsname=blobhsm-null,subtype=blobhsm-null,default_permissions,max_read=1048576", NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  if (!se) return 1;
  if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) {
    fuse_session_destroy(se);
    return 1;
  }
  pthread_t control;
  pthread_create(&control, NULL, control_main, NULL);
  int rc = fuse_session_loop(se); // one thread, as blobhsm's session loop
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  fprintf(stderr, "null-ll: session ended (%d)\n", rc);
  _exit(rc < 0 ? 1 : 0);
}
