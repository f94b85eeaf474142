// The libfuse3 low-level binding: owns the FUSE protocol only. The JS thread reads /dev/fuse itself (a uv_poll
// on the non-blocking device; each readable event reads and processes what is queued, then hands the requests it
// made to JS in order, through napi_make_callback), one thread wakeup per request where a session thread handing
// each request over costs two (rsync -a of 2,000 small files: 28 -> 3-7 voluntary context switches per file).
// But direct writes (below) would then run on the JS thread too, and parallel writers slowed to 0.4-0.7x: so once
// a direct write happens, a session thread reads instead (requests reach JS through a thread-safe function, as
// before), and it hands the device back (OP_HANDOFF, queued behind what it read) when it finds nothing queued and
// wrote nothing directly for 50 ms. One thread reads at any time, so requests reach JS in the kernel's order.
// BLOBHSM_FUSE_LOOP=thread keeps the session thread reading, BLOBHSM_FUSE_LOOP=main the JS thread (comparisons).
// Request ids are externals wrapping fuse_req_t, answered later by the reply* functions, from the JS thread.
// Notifications run on their own pthread: the kernel can block an invalidation while a READ of that inode waits
// for JS. Types, lifetimes and "answer exactly once" live in the TypeScript wrapper (src/fuse/lowlevel.ts);
// nothing here knows the filesystem.
//
// Direct writes: JS may grant an open file handle a descriptor (grantDirectWrite; the addon keeps a dup of it) and
// a byte budget. A WRITE on that handle is then written here, by the thread that read it, straight from libfuse's
// receive buffer into that descriptor (no copy for JS, no thread-pool trip), and JS gets only OP_WRITTEN (fh,
// size, offset, result, grant token) in the same queue as every other request, so it keeps the bookkeeping. A
// WRITE written in full is answered here (the writer does not wait for JS's bookkeeping); JS answers a failed one.
// Without a grant, or with too little budget left, a WRITE goes to JS with its data as before.
#define FUSE_USE_VERSION 34
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

// Operation codes shared with src/fuse/lowlevel.ts (Op).
enum {
  OP_INIT = 0, OP_EXIT, OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR, OP_UNLINK,
  OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE, OP_FLUSH, OP_RELEASE, OP_FSYNC, OP_OPENDIR,
  OP_READDIR, OP_RELEASEDIR, OP_STATFS, OP_SETXATTR, OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR, OP_CREATE,
  OP_READDIRPLUS, OP_WRITTEN,
  OP_HANDOFF, // auto mode, C only: the session thread stopped reading; the JS thread reads from here on
};

// Numbers passed with every request: n[0..3] the caller, n[4..] per operation (see lowlevel.ts).
#define NUMS 16
#define ATTR_FIELDS 15

#define CHECK(call)                                                                                                  \
  do {                                                                                                               \
    if ((call) != napi_ok) {                                                                                         \
      napi_throw_error(env, NULL, "blobhsm_fuse: " #call " failed");                                                 \
      return NULL;                                                                                                   \
    }                                                                                                                \
  } while (0)

// A handle's grant of direct writes. Freed once revoked and no write runs on it.
typedef struct grant {
  struct grant *next;
  uint64_t fh;
  int fd;            // the addon's own dup: JS closing or reusing its descriptor never redirects a write
  double token;      // JS's name for this grant, passed back with each write done through it
  uint64_t budget;   // bytes it may still write
  double issued;     // writes started through it (revokeDirectWrite answers the count)
  int running;       // writes in progress on it
  int revoked;
} grant_t;

#define GRANT_BUCKETS 256

typedef struct session {
  struct fuse_session *se;
  napi_threadsafe_function requests; // session thread -> JS
  napi_threadsafe_function notified; // notify thread -> JS (completions)
  pthread_t loop_thread, notify_thread;
  unsigned max_read, max_write, max_background, congestion;
  int writeback;
  char **served_xattrs; // NULL: every getxattr goes to JS; else the only names it can find (NULL-terminated)
  atomic_int outstanding; // requests handed to JS and not yet answered
  atomic_int loop_done;
  // notification queue
  pthread_mutex_t lock;
  pthread_cond_t wake;
  struct notification *head, *tail;
  int notify_stop;
  // direct writes (grants_lock: taken by the session thread per WRITE and by JS to grant and revoke)
  pthread_mutex_t grants_lock;
  grant_t *grants[GRANT_BUCKETS];
  // main-loop mode: the JS thread reads /dev/fuse itself (uv_poll), no session thread
  int main_loop;
  napi_env env;
  napi_ref js_dispatch;
  napi_async_context async_ctx;
  uv_poll_t poll;
  int poll_closed;
  struct fuse_buf fbuf;
  struct request *pending_head, *pending_tail;
  // auto mode (BLOBHSM_FUSE_LOOP=auto): the JS thread reads until a direct write happens; then the session thread
  // reads, and hands back when it finds nothing queued and wrote nothing directly for 50 ms (see the header)
  int auto_loop;
  pthread_t js_thread;
  pthread_mutex_t reader_lock;
  pthread_cond_t reader_wake;
  int thread_reads;  // the session thread is the reader (reader_lock)
  int thread_stop;   // the session ended: the waiting session thread exits (reader_lock)
  int to_thread;     // JS thread: a direct write happened, hand reading to the session thread
  int64_t last_direct_ms; // session thread: when it last wrote a direct write (CLOCK_MONOTONIC)
  struct fuse_buf tbuf;
} session_t;

typedef struct request {
  struct request *next; // main-loop mode: requests made by one buffer, delivered to JS after it
  int op;
  fuse_req_t req; // NULL for INIT, EXIT and FORGET
  double n[NUMS];
  char *name, *name2;
  char *data; // WRITE payload (ownership passes to a JS Buffer)
  size_t len;
} request_t;

typedef struct notification {
  struct notification *next;
  int kind; // 0 inval_inode, 1 inval_entry, 2 delete
  fuse_ino_t ino, child;
  off_t off, len;
  char *name;
  napi_deferred deferred;
  int result;
} notification_t;

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

// Hands a request to JS: queued on the thread-safe function (session thread), or, in main-loop mode, kept until
// the buffer that made it is processed (then delivered in order). Non-zero when it could not be queued.
static int to_js(session_t *s, request_t *r) {
  if (s->main_loop && pthread_equal(pthread_self(), s->js_thread)) {
    r->next = NULL;
    if (s->pending_tail) s->pending_tail->next = r;
    else s->pending_head = r;
    s->pending_tail = r;
    return 0;
  }
  return napi_call_threadsafe_function(s->requests, r, napi_tsfn_nonblocking) != napi_ok;
}

static void dispatch(request_t *r) {
  session_t *s = fuse_req_userdata(r->req);
  if (r->req) atomic_fetch_add(&s->outstanding, 1);
  if (r->req) {
    const struct fuse_ctx *ctx = fuse_req_ctx(r->req);
    r->n[0] = ctx->uid;
    r->n[1] = ctx->gid;
    r->n[2] = ctx->pid;
    r->n[3] = ctx->umask;
  }
  if (to_js(s, r)) {
    if (r->req) {
      atomic_fetch_sub(&s->outstanding, 1);
      fuse_reply_err(r->req, EIO);
    }
    free(r->name);
    free(r->name2);
    free(r->data);
    free(r);
  }
}

static request_t *new_request(int op, fuse_req_t req, fuse_ino_t ino) {
  request_t *r = calloc(1, sizeof *r);
  r->op = op;
  r->req = req;
  r->n[4] = (double)ino;
  return r;
}

static void send_simple(int op, fuse_req_t req, fuse_ino_t ino, const char *name, double a, double b, double c) {
  request_t *r = new_request(op, req, ino);
  r->name = dup_or_null(name);
  r->n[5] = a;
  r->n[6] = b;
  r->n[7] = c;
  dispatch(r);
}

// A bit the addon adds to the fh of a handle JS opened with "no flush" (open flag 4: read-only, nothing to persist
// at close): its FLUSH is answered here, without a trip to JS (one of the 19 requests rsync sends per file). JS
// never sees the bit: every fh handed to it goes through fh_of. Only read-only handles carry it, so a WRITE (and
// its direct-write grant, keyed by JS's fh) never meets it.
#define FH_NO_FLUSH (1ull << 62)

static double fh_of(struct fuse_file_info *fi) { return fi ? (double)(fi->fh & ~FH_NO_FLUSH) : 0; }

// ---- libfuse callbacks (on the thread that reads the device: the JS thread, or the session thread) ----------

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  session_t *s = userdata;
  conn->max_read = s->max_read;
  conn->max_write = s->max_write;
  if (s->max_background) conn->max_background = s->max_background;
  if (s->congestion) conn->congestion_threshold = s->congestion;
  unsigned want = FUSE_CAP_READDIRPLUS | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_CACHE_SYMLINKS | FUSE_CAP_ASYNC_READ |
                  FUSE_CAP_ATOMIC_O_TRUNC;
  if (s->writeback) want |= FUSE_CAP_WRITEBACK_CACHE;
  conn->want |= want & conn->capable;
  // Pages stay cached while a file is unchanged; blobhsm invalidates them itself (notifyInvalInode).
  conn->want &= ~(FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_SPLICE_READ |
                  FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  request_t *r = calloc(1, sizeof *r);
  r->op = OP_INIT;
  r->n[4] = conn->max_read;
  r->n[5] = conn->max_write;
  r->n[6] = conn->max_background;
  r->n[7] = (conn->want & FUSE_CAP_WRITEBACK_CACHE) != 0;
  r->n[8] = conn->proto_minor;
  r->n[9] = s->auto_loop ? 2 : s->main_loop;
  if (to_js(s, r)) free(r);
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  send_simple(OP_LOOKUP, req, parent, name, 0, 0, 0);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  session_t *s = fuse_req_userdata(req);
  request_t *r = new_request(OP_FORGET, NULL, ino);
  r->n[5] = (double)nlookup;
  fuse_reply_none(req);
  if (to_js(s, r)) free(r);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  session_t *s = fuse_req_userdata(req);
  for (size_t i = 0; i < count; i++) {
    request_t *r = new_request(OP_FORGET, NULL, forgets[i].ino);
    r->n[5] = (double)forgets[i].nlookup;
    if (to_js(s, r)) free(r);
  }
  fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  send_simple(OP_GETATTR, req, ino, NULL, fh_of(fi), 0, 0);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  request_t *r = new_request(OP_SETATTR, req, ino);
  r->n[5] = to_set;
  r->n[6] = attr->st_mode;
  r->n[7] = attr->st_uid;
  r->n[8] = attr->st_gid;
  r->n[9] = (double)attr->st_size;
  r->n[10] = fi ? fh_of(fi) : -1;
  r->n[11] = (double)attr->st_atim.tv_sec;
  r->n[12] = (double)attr->st_atim.tv_nsec;
  r->n[13] = (double)attr->st_mtim.tv_sec;
  r->n[14] = (double)attr->st_mtim.tv_nsec;
  dispatch(r);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) { send_simple(OP_READLINK, req, ino, NULL, 0, 0, 0); }

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  send_simple(OP_MKNOD, req, parent, name, mode, (double)rdev, 0);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  send_simple(OP_MKDIR, req, parent, name, mode, 0, 0);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  send_simple(OP_UNLINK, req, parent, name, 0, 0, 0);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  send_simple(OP_RMDIR, req, parent, name, 0, 0, 0);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  request_t *r = new_request(OP_SYMLINK, req, parent);
  r->name = strdup(name);
  r->name2 = strdup(link);
  dispatch(r);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
                      unsigned int flags) {
  request_t *r = new_request(OP_RENAME, req, parent);
  r->name = strdup(name);
  r->name2 = strdup(newname);
  r->n[5] = (double)newparent;
  r->n[6] = flags;
  dispatch(r);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  send_simple(OP_LINK, req, ino, newname, (double)newparent, 0, 0);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  send_simple(OP_OPEN, req, ino, NULL, fi->flags, 0, 0);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  send_simple(OP_READ, req, ino, NULL, fh_of(fi), (double)size, (double)off);
}

static grant_t **grant_slot(session_t *s, uint64_t fh) {
  grant_t **g = &s->grants[fh % GRANT_BUCKETS];
  while (*g && (*g)->fh != fh) g = &(*g)->next;
  return g;
}

static void free_grant(grant_t *g) {
  close(g->fd);
  free(g);
}

// The handle's grant with room for `size` bytes, counted as running (put_grant ends it); NULL: the WRITE goes to JS.
static grant_t *take_grant(session_t *s, uint64_t fh, size_t size) {
  pthread_mutex_lock(&s->grants_lock);
  grant_t *g = *grant_slot(s, fh);
  if (g && g->budget >= size) {
    g->budget -= size;
    g->issued++;
    g->running++;
  } else g = NULL;
  pthread_mutex_unlock(&s->grants_lock);
  return g;
}

static void put_grant(session_t *s, grant_t *g) {
  pthread_mutex_lock(&s->grants_lock);
  int gone = --g->running == 0 && g->revoked;
  pthread_mutex_unlock(&s->grants_lock);
  if (gone) free_grant(g);
}

static int64_t monotonic_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

// Writes all of buf at off: the bytes written, or -errno.
static double write_all(int fd, const char *buf, size_t size, off_t off) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(fd, buf + done, size - done, off + (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return -EIO;
    done += (size_t)n;
  }
  return (double)done;
}

// A direct write's report to JS. All of it written: answered here at once, after the report is queued (whatever
// the writer asks next is queued behind it, so JS has seen the write by then), and the report carries no request.
// Short or failed: the report carries the request and JS answers (its error mapping, its log).
static void report_written(session_t *s, fuse_req_t req, fuse_ino_t ino, double fh, size_t size, off_t off,
                           double result, double token) {
  int whole = result == (double)size;
  request_t *r = new_request(OP_WRITTEN, whole ? NULL : req, ino);
  r->n[5] = fh;
  r->n[6] = (double)size;
  r->n[7] = (double)off;
  r->n[8] = result;
  r->n[9] = token;
  if (!whole) {
    dispatch(r);
    return;
  }
  if (to_js(s, r)) {
    free(r);
    fuse_reply_err(req, EIO); // JS would never count it: the writer must not believe it landed
    return;
  }
  fuse_reply_write(req, size);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  session_t *s = fuse_req_userdata(req);
  grant_t *g = take_grant(s, fi->fh, size);
  if (g) {
    double result = write_all(g->fd, buf, size, off), token = g->token;
    put_grant(s, g);
    if (s->auto_loop) {
      if (pthread_equal(pthread_self(), s->js_thread)) s->to_thread = 1;
      else s->last_direct_ms = monotonic_ms();
    }
    report_written(s, req, ino, fh_of(fi), size, off, result, token);
    return;
  }
  request_t *r = new_request(OP_WRITE, req, ino);
  r->n[5] = fh_of(fi);
  r->n[6] = (double)size;
  r->n[7] = (double)off;
  r->n[8] = fi->writepage;
  // The session's receive buffer is reused by the next request: copy, and hand the copy to JS without another.
  r->data = malloc(size ? size : 1);
  memcpy(r->data, buf, size);
  r->len = size;
  dispatch(r);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (fi->fh & FH_NO_FLUSH) {
    fuse_reply_err(req, 0);
    return;
  }
  send_simple(OP_FLUSH, req, ino, NULL, fh_of(fi), 0, 0);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  send_simple(OP_RELEASE, req, ino, NULL, fh_of(fi), fi->flags, 0);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  send_simple(OP_FSYNC, req, ino, NULL, fh_of(fi), datasync, 0);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  send_simple(OP_OPENDIR, req, ino, NULL, fi->flags, 0, 0);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  send_simple(OP_READDIR, req, ino, NULL, fh_of(fi), (double)size, (double)off);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  send_simple(OP_READDIRPLUS, req, ino, NULL, fh_of(fi), (double)size, (double)off);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  send_simple(OP_RELEASEDIR, req, ino, NULL, fh_of(fi), 0, 0);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) { send_simple(OP_STATFS, req, ino, NULL, 0, 0, 0); }

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  request_t *r = new_request(OP_SETXATTR, req, ino);
  r->name = strdup(name);
  r->n[5] = flags;
  r->data = malloc(size ? size : 1);
  memcpy(r->data, value, size);
  r->len = size;
  dispatch(r);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  session_t *s = fuse_req_userdata(req);
  if (s->served_xattrs) { // a name the filesystem never has: answered here, without a trip to JS
    char **n = s->served_xattrs;
    while (*n && strcmp(*n, name) != 0) n++;
    if (!*n) {
      fuse_reply_err(req, ENODATA);
      return;
    }
  }
  send_simple(OP_GETXATTR, req, ino, name, (double)size, 0, 0);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  send_simple(OP_LISTXATTR, req, ino, NULL, (double)size, 0, 0);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  send_simple(OP_REMOVEXATTR, req, ino, name, 0, 0, 0);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  send_simple(OP_CREATE, req, parent, name, mode, fi->flags, 0);
}

static const struct fuse_lowlevel_ops ops = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .readlink = ll_readlink,
    .mknod = ll_mknod,
    .mkdir = ll_mkdir,
    .unlink = ll_unlink,
    .rmdir = ll_rmdir,
    .symlink = ll_symlink,
    .rename = ll_rename,
    .link = ll_link,
    .open = ll_open,
    .read = ll_read,
    .write = ll_write,
    .flush = ll_flush,
    .release = ll_release,
    .fsync = ll_fsync,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .readdirplus = ll_readdirplus,
    .releasedir = ll_releasedir,
    .statfs = ll_statfs,
    .setxattr = ll_setxattr,
    .getxattr = ll_getxattr,
    .listxattr = ll_listxattr,
    .removexattr = ll_removexattr,
    .create = ll_create,
};

// A session thread saw the session end: JS hears OP_EXIT behind every request, and the thread lets go of the queue.
static void session_thread_ended(session_t *s) {
  atomic_store(&s->loop_done, 1);
  request_t *r = calloc(1, sizeof *r);
  r->op = OP_EXIT;
  if (napi_call_threadsafe_function(s->requests, r, napi_tsfn_nonblocking) != napi_ok) free(r);
  napi_release_threadsafe_function(s->requests, napi_tsfn_release);
}

static void *loop_main(void *arg) {
  session_t *s = arg;
  fuse_session_loop(s->se);
  session_thread_ended(s);
  return NULL;
}

// ---- JS thread: requests to JS ---------------------------------------------------------------------------------

static void free_buffer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void call_js_with(napi_env env, napi_value js_dispatch, request_t *r, napi_async_context async_ctx);

static void on_device(uv_poll_t *handle, int status, int events);

static void call_js(napi_env env, napi_value js_dispatch, void *context, void *data) {
  session_t *s = context;
  request_t *r = data;
  if (r->op == OP_HANDOFF) { // behind every request the session thread read: the JS thread reads from now on
    free(r);
    if (env && !s->poll_closed) {
      napi_unref_threadsafe_function(env, s->requests); // the poll handle keeps the loop alive again
      uv_poll_start(&s->poll, UV_READABLE, on_device);
    }
    return;
  }
  if (r->op == OP_EXIT && s->auto_loop && !s->poll_closed) { // the session thread saw the end
    s->poll_closed = 1;
    uv_close((uv_handle_t *)&s->poll, NULL);
  }
  call_js_with(env, js_dispatch, r, NULL);
}

// Calls JS's dispatch with one request: from the thread-safe function's callback, or (main-loop mode, async_ctx
// set) from the device's poll callback, through napi_make_callback so that promise jobs run after it.
static void call_js_with(napi_env env, napi_value js_dispatch, request_t *r, napi_async_context async_ctx) {
  if (env == NULL) { // tearing down: nothing can answer any more
    if (r->req) fuse_reply_err(r->req, EIO);
    free(r->name);
    free(r->name2);
    free(r->data);
    free(r);
    return;
  }
  napi_value argv[6], undefined, ab;
  void *nums;
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, r->op, &argv[0]);
  if (r->req) napi_create_external(env, r->req, NULL, NULL, &argv[1]);
  else argv[1] = undefined;
  napi_create_arraybuffer(env, sizeof r->n, &nums, &ab);
  memcpy(nums, r->n, sizeof r->n);
  napi_create_typedarray(env, napi_float64_array, NUMS, ab, 0, &argv[2]);
  if (r->name) napi_create_string_utf8(env, r->name, NAPI_AUTO_LENGTH, &argv[3]);
  else argv[3] = undefined;
  if (r->name2) napi_create_string_utf8(env, r->name2, NAPI_AUTO_LENGTH, &argv[4]);
  else argv[4] = undefined;
  if (r->data) {
    napi_create_external_buffer(env, r->len, r->data, free_buffer, NULL, &argv[5]);
    r->data = NULL;
  } else argv[5] = undefined;
  if (async_ctx) {
    napi_value global; // napi_make_callback wants an object as the receiver
    napi_get_global(env, &global);
    if (napi_make_callback(env, async_ctx, global, js_dispatch, 6, argv, NULL) == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  } else {
    napi_call_function(env, undefined, js_dispatch, 6, argv, NULL);
  }
  free(r->name);
  free(r->name2);
  free(r);
}

// ---- main-loop mode: the JS thread reads the device (no session thread, one wakeup less per request) -----------

static void deliver_pending(session_t *s) {
  if (!s->pending_head) return;
  napi_env env = s->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn;
  napi_get_reference_value(env, s->js_dispatch, &fn);
  while (s->pending_head) {
    request_t *r = s->pending_head;
    s->pending_head = r->next;
    if (!s->pending_head) s->pending_tail = NULL;
    call_js_with(env, fn, r, s->async_ctx);
  }
  napi_close_handle_scope(env, scope);
}

static void main_loop_end(session_t *s) {
  uv_poll_stop(&s->poll);
  s->poll_closed = 1;
  uv_close((uv_handle_t *)&s->poll, NULL);
  if (s->auto_loop) { // the waiting session thread exits (js_close joins it)
    pthread_mutex_lock(&s->reader_lock);
    s->thread_stop = 1;
    pthread_cond_signal(&s->reader_wake);
    pthread_mutex_unlock(&s->reader_lock);
  }
  free(s->fbuf.mem);
  s->fbuf.mem = NULL;
  atomic_store(&s->loop_done, 1);
  request_t *r = calloc(1, sizeof *r);
  r->op = OP_EXIT;
  to_js(s, r);
  deliver_pending(s);
  napi_release_threadsafe_function(s->requests, napi_tsfn_release);
}

// The device is readable: read and process what is there (at most 64 requests, then the loop's other work).
static void on_device(uv_poll_t *handle, int status, int events) {
  (void)status;
  (void)events;
  session_t *s = handle->data;
  for (int i = 0; i < 64; i++) {
    int res = fuse_session_receive_buf(s->se, &s->fbuf);
    if (res == -EINTR) continue;
    if (res == -EAGAIN) break;
    if (res <= 0 || fuse_session_exited(s->se)) {
      main_loop_end(s);
      return;
    }
    fuse_session_process_buf(s->se, &s->fbuf);
    deliver_pending(s);
    if (s->to_thread) { // auto mode: a direct write happened; the session thread reads from here on
      s->to_thread = 0;
      uv_poll_stop(&s->poll);
      napi_ref_threadsafe_function(s->env, s->requests); // while the poll handle is stopped
      pthread_mutex_lock(&s->reader_lock);
      s->thread_reads = 1;
      pthread_cond_signal(&s->reader_wake);
      pthread_mutex_unlock(&s->reader_lock);
      return;
    }
  }
}

// Auto mode's session thread: waits until the JS thread hands it the device (after a direct write), reads, and
// hands the device back (OP_HANDOFF, queued behind what it read) once it finds nothing queued and wrote nothing
// directly for 50 ms. Only one thread reads at any time, so requests reach JS in the order the kernel sent them.
static void *auto_thread_main(void *arg) {
  session_t *s = arg;
  int fd = fuse_session_fd(s->se);
  for (;;) {
    pthread_mutex_lock(&s->reader_lock);
    while (!s->thread_reads && !s->thread_stop) pthread_cond_wait(&s->reader_wake, &s->reader_lock);
    int stop = s->thread_stop;
    pthread_mutex_unlock(&s->reader_lock);
    if (stop) break;
    s->last_direct_ms = monotonic_ms(); // handed over just after a direct write
    for (;;) {
      int res = fuse_session_receive_buf(s->se, &s->tbuf);
      if (res == -EINTR) continue;
      if (res == -EAGAIN) {
        // Nothing queued and no direct write for 50 ms (rsync's one WRITE per small file never writes directly):
        // the JS thread reads again.
        if (monotonic_ms() - s->last_direct_ms > 50) {
          pthread_mutex_lock(&s->reader_lock);
          s->thread_reads = 0;
          pthread_mutex_unlock(&s->reader_lock);
          request_t *r = calloc(1, sizeof *r);
          r->op = OP_HANDOFF;
          if (napi_call_threadsafe_function(s->requests, r, napi_tsfn_nonblocking) != napi_ok) free(r);
          break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 20);
        continue;
      }
      if (res <= 0 || fuse_session_exited(s->se)) {
        free(s->tbuf.mem);
        s->tbuf.mem = NULL;
        session_thread_ended(s);
        return NULL;
      }
      fuse_session_process_buf(s->se, &s->tbuf);
    }
  }
  free(s->tbuf.mem);
  return NULL;
}

// ---- notifications (own thread) ---------------------------------------------------------------------------------

static void *notify_main(void *arg) {
  session_t *s = arg;
  pthread_mutex_lock(&s->lock);
  for (;;) {
    while (!s->head && !s->notify_stop) pthread_cond_wait(&s->wake, &s->lock);
    notification_t *n = s->head;
    if (!n) break;
    s->head = n->next;
    if (!s->head) s->tail = NULL;
    pthread_mutex_unlock(&s->lock);
    if (atomic_load(&s->loop_done)) n->result = -ENOTCONN;
    else if (n->kind == 0) n->result = fuse_lowlevel_notify_inval_inode(s->se, n->ino, n->off, n->len);
    else if (n->kind == 1) n->result = fuse_lowlevel_notify_inval_entry(s->se, n->ino, n->name, strlen(n->name));
    else n->result = fuse_lowlevel_notify_delete(s->se, n->ino, n->child, n->name, strlen(n->name));
    if (napi_call_threadsafe_function(s->notified, n, napi_tsfn_blocking) != napi_ok) {
      free(n->name);
      free(n);
    }
    pthread_mutex_lock(&s->lock);
  }
  pthread_mutex_unlock(&s->lock);
  napi_release_threadsafe_function(s->notified, napi_tsfn_release);
  return NULL;
}

static void notified_js(napi_env env, napi_value fn, void *context, void *data) {
  (void)fn;
  (void)context;
  notification_t *n = data;
  if (env) {
    napi_value result;
    napi_create_int32(env, n->result, &result);
    napi_resolve_deferred(env, n->deferred, result);
  }
  free(n->name);
  free(n);
}

// ---- exported functions -----------------------------------------------------------------------------------------

static session_t *session_arg(napi_env env, napi_value v) {
  session_t *s = NULL;
  if (napi_get_value_external(env, v, (void **)&s) != napi_ok || !s) napi_throw_type_error(env, NULL, "not a session");
  return s;
}

static fuse_req_t req_arg(napi_env env, napi_value v) {
  fuse_req_t req = NULL;
  if (napi_get_value_external(env, v, (void **)&req) != napi_ok || !req) napi_throw_type_error(env, NULL, "not a request");
  return req;
}

static double num_arg(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static char *string_arg(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a string");
    return NULL;
  }
  char *s = malloc(len + 1);
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

static void answered(fuse_req_t req) {
  session_t *s = fuse_req_userdata(req);
  atomic_fetch_sub(&s->outstanding, 1);
}

// mount(mountpoint, args: string[], tuning: Float64Array [maxRead, maxWrite, maxBackground, congestion, writeback],
//       dispatch(op, req, nums, name, name2, data), servedXattrs: string[] | null) -> session
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], name;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *mountpoint = string_arg(env, argv[0]);
  if (!mountpoint) return NULL;
  uint32_t nargs = 0;
  CHECK(napi_get_array_length(env, argv[1], &nargs));
  char **args = calloc(nargs + 2, sizeof(char *));
  args[0] = strdup("blobhsm");
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value item;
    napi_get_element(env, argv[1], i, &item);
    args[i + 1] = string_arg(env, item);
  }
  double *tuning;
  size_t tlen;
  CHECK(napi_get_typedarray_info(env, argv[2], NULL, &tlen, (void **)&tuning, NULL, NULL));
  session_t *s = calloc(1, sizeof *s);
  s->max_read = (unsigned)tuning[0];
  s->max_write = (unsigned)tuning[1];
  s->max_background = (unsigned)tuning[2];
  s->congestion = (unsigned)tuning[3];
  s->writeback = tuning[4] != 0;
  bool served_list = false;
  if (argc >= 5) CHECK(napi_is_array(env, argv[4], &served_list));
  if (served_list) {
    uint32_t count = 0;
    CHECK(napi_get_array_length(env, argv[4], &count));
    s->served_xattrs = calloc(count + 1, sizeof(char *));
    for (uint32_t i = 0; i < count; i++) {
      napi_value item;
      napi_get_element(env, argv[4], i, &item);
      s->served_xattrs[i] = string_arg(env, item);
      if (!s->served_xattrs[i]) return NULL;
    }
  }
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->wake, NULL);
  pthread_mutex_init(&s->grants_lock, NULL);
  struct fuse_args fargs = FUSE_ARGS_INIT((int)nargs + 1, args);
  s->se = fuse_session_new(&fargs, &ops, sizeof ops, s);
  const char *failure = NULL;
  if (!s->se) failure = "fuse_session_new failed (bad mount options?)";
  else if (fuse_session_mount(s->se, mountpoint) != 0) failure = "fuse_session_mount failed";
  fuse_opt_free_args(&fargs);
  for (uint32_t i = 0; i <= nargs; i++) free(args[i]);
  free(args);
  free(mountpoint);
  if (failure) {
    if (s->se) fuse_session_destroy(s->se);
    for (char **n = s->served_xattrs; n && *n; n++) free(*n);
    free(s->served_xattrs);
    free(s);
    napi_throw_error(env, "EFUSEMOUNT", failure);
    return NULL;
  }
  CHECK(napi_create_string_utf8(env, "blobhsm-fuse", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, NULL, NULL, s, call_js, &s->requests));
  CHECK(napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, notified_js, &s->notified));
  napi_unref_threadsafe_function(env, s->notified);
  pthread_create(&s->notify_thread, NULL, notify_main, s);
  const char *loop_mode = getenv("BLOBHSM_FUSE_LOOP");
  int thread_only = loop_mode && strcmp(loop_mode, "thread") == 0;
  s->auto_loop = !thread_only && !(loop_mode && strcmp(loop_mode, "main") == 0);
  s->main_loop = !thread_only;
  s->js_thread = pthread_self();
  if (s->main_loop) {
    uv_loop_t *loop;
    int fd = fuse_session_fd(s->se);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    s->env = env;
    CHECK(napi_create_reference(env, argv[3], 1, &s->js_dispatch));
    CHECK(napi_async_init(env, NULL, name, &s->async_ctx));
    CHECK(napi_get_uv_event_loop(env, &loop));
    napi_unref_threadsafe_function(env, s->requests);
    uv_poll_init(loop, &s->poll, fd);
    s->poll.data = s;
    uv_poll_start(&s->poll, UV_READABLE, on_device);
    if (s->auto_loop) {
      pthread_mutex_init(&s->reader_lock, NULL);
      pthread_cond_init(&s->reader_wake, NULL);
      pthread_create(&s->loop_thread, NULL, auto_thread_main, s);
    }
  } else {
    pthread_create(&s->loop_thread, NULL, loop_main, s);
  }
  napi_value result;
  CHECK(napi_create_external(env, s, NULL, NULL, &result));
  return result;
}

// closeSession(session): after EXIT, joins the threads and frees the session once every request was answered.
// Returns the number of requests still unanswered (call again after answering them).
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session_t *s = session_arg(env, argv[0]);
  if (!s) return NULL;
  int left = atomic_load(&s->outstanding);
  if (s->se && left == 0 && atomic_load(&s->loop_done)) {
    if (!s->main_loop || s->auto_loop) pthread_join(s->loop_thread, NULL);
    pthread_mutex_lock(&s->lock);
    s->notify_stop = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->notify_thread, NULL);
    fuse_session_unmount(s->se); // already unmounted: closes the device and frees the mountpoint
    fuse_session_destroy(s->se);
    s->se = NULL;
    for (int i = 0; i < GRANT_BUCKETS; i++) { // no write runs any more: every grant goes
      while (s->grants[i]) {
        grant_t *g = s->grants[i];
        s->grants[i] = g->next;
        free_grant(g);
      }
    }
  }
  CHECK(napi_create_int32(env, left, &result));
  return result;
}

static napi_value notify(napi_env env, napi_callback_info info, int kind) {
  size_t argc = 4;
  napi_value argv[4], promise;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session_t *s = session_arg(env, argv[0]);
  if (!s) return NULL;
  notification_t *n = calloc(1, sizeof *n);
  n->kind = kind;
  n->ino = (fuse_ino_t)num_arg(env, argv[1]);
  if (kind == 0) {
    n->off = (off_t)num_arg(env, argv[2]);
    n->len = (off_t)num_arg(env, argv[3]);
  } else if (kind == 1) {
    n->name = string_arg(env, argv[2]);
  } else {
    n->child = (fuse_ino_t)num_arg(env, argv[2]);
    n->name = string_arg(env, argv[3]);
  }
  if (kind != 0 && !n->name) {
    free(n);
    return NULL;
  }
  CHECK(napi_create_promise(env, &n->deferred, &promise));
  pthread_mutex_lock(&s->lock);
  if (s->notify_stop || !s->se) {
    pthread_mutex_unlock(&s->lock);
    napi_value r;
    napi_create_int32(env, -ENOTCONN, &r);
    napi_resolve_deferred(env, n->deferred, r);
    free(n->name);
    free(n);
    return promise;
  }
  if (s->tail) s->tail->next = n;
  else s->head = n;
  s->tail = n;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->lock);
  return promise;
}

static napi_value js_inval_inode(napi_env env, napi_callback_info info) { return notify(env, info, 0); }
static napi_value js_inval_entry(napi_env env, napi_callback_info info) { return notify(env, info, 1); }
static napi_value js_delete(napi_env env, napi_callback_info info) { return notify(env, info, 2); }

static void fill_stat(struct stat *st, const double *a) {
  memset(st, 0, sizeof *st);
  st->st_ino = (ino_t)a[0];
  st->st_mode = (mode_t)a[1];
  st->st_nlink = (nlink_t)a[2];
  st->st_uid = (uid_t)a[3];
  st->st_gid = (gid_t)a[4];
  st->st_rdev = (dev_t)a[5];
  st->st_size = (off_t)a[6];
  st->st_blocks = (blkcnt_t)a[7];
  st->st_blksize = (blksize_t)a[8];
  st->st_atim.tv_sec = (time_t)a[9];
  st->st_atim.tv_nsec = (long)a[10];
  st->st_mtim.tv_sec = (time_t)a[11];
  st->st_mtim.tv_nsec = (long)a[12];
  st->st_ctim.tv_sec = (time_t)a[13];
  st->st_ctim.tv_nsec = (long)a[14];
}

// The doubles of a Float64Array of at least `min` elements; NULL (with a JS exception) otherwise. An empty array
// may have no storage at all: it reads as a valid zero-length array.
static const double *attr_arg(napi_env env, napi_value v, size_t min) {
  static const double none[1] = {0};
  double *a = NULL;
  size_t len = 0;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, v, &type, &len, (void **)&a, NULL, NULL) != napi_ok || type != napi_float64_array ||
      len < min) {
    napi_throw_type_error(env, NULL, "expected a Float64Array of attributes");
    return NULL;
  }
  return a ? a : none;
}

// replyErr(req, errno)
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req = req_arg(env, argv[0]);
  if (!req) return NULL;
  answered(req);
  fuse_reply_err(req, (int)num_arg(env, argv[1]));
  return NULL;
}

static void fill_entry(struct fuse_entry_param *e, const double *a, double entry_timeout, double attr_timeout) {
  memset(e, 0, sizeof *e);
  fill_stat(&e->attr, a);
  e->ino = (fuse_ino_t)a[0];
  e->generation = 1;
  e->entry_timeout = entry_timeout;
  e->attr_timeout = attr_timeout;
}

// replyEntry(req, attr, entryTimeout, attrTimeout): attr[0] == 0 is a negative entry cached for entryTimeout.
static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req = req_arg(env, argv[0]);
  const double *a = attr_arg(env, argv[1], ATTR_FIELDS);
  if (!req || !a) return NULL;
  struct fuse_entry_param e;
  fill_entry(&e, a, num_arg(env, argv[2]), num_arg(env, argv[3]));
  answered(req);
  fuse_reply_entry(req, &e);
  return NULL;
}

// Open flags answered to the kernel (OpenFlag in lowlevel.ts).
static void fill_open(struct fuse_file_info *fi, double fh, int flags) {
  memset(fi, 0, sizeof *fi);
  fi->fh = (uint64_t)fh | ((flags & 4) ? FH_NO_FLUSH : 0);
  fi->keep_cache = (flags & 1) != 0;
  fi->direct_io = (flags & 2) != 0;
}

// replyCreate(req, attr, entryTimeout, attrTimeout, fh, openFlags)
static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req = req_arg(env, argv[0]);
  const double *a = attr_arg(env, argv[1], ATTR_FIELDS);
  if (!req || !a) return NULL;
  struct fuse_entry_param e;
  struct fuse_file_info fi;
  fill_entry(&e, a, num_arg(env, argv[2]), num_arg(env, argv[3]));
  fill_open(&fi, num_arg(env, argv[4]), (int)num_arg(env, argv[5]));
  answered(req);
  fuse_reply_create(req, &e, &fi);
  return NULL;
}

// replyAttr(req, attr, attrTimeout)
static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req = req_arg(env, argv[0]);
  const double *a = attr_arg(env, argv[1], ATTR_FIELDS);
  if (!req || !a) return NULL;
  struct stat st;
  fill_stat(&st, a);
  answered(req);
  fuse_reply_attr(req, &st, num_arg(env, argv[2]));
  return NULL;
}

// replyOpen(req, fh, openFlags)
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req = req_arg(env, argv[0]);
  if (!req) return NULL;
  struct fuse_file_info fi;
  fill_open(&fi, num_arg(env, argv[1]), (int)num_arg(env, argv[2]));
  answered(req);
  fuse_reply_open(req, &fi);
  return NULL;
}

// replyWrite(req, count) / replyXattrSize(req, size)
static napi_value js_reply_count(napi_env env, napi_callback_info info, int xattr) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req = req_arg(env, argv[0]);
  if (!req) return NULL;
  size_t n = (size_t)num_arg(env, argv[1]);
  answered(req);
  if (xattr) fuse_reply_xattr(req, n);
  else fuse_reply_write(req, n);
  return NULL;
}
static napi_value js_reply_write(napi_env env, napi_callback_info info) { return js_reply_count(env, info, 0); }
static napi_value js_reply_xattr(napi_env env, napi_callback_info info) { return js_reply_count(env, info, 1); }

// replyBuf(req, buffer, length): READ data, getxattr/listxattr values, readlink targets (without the NUL).
static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req = req_arg(env, argv[0]);
  if (!req) return NULL;
  void *data = NULL;
  size_t len = 0;
  CHECK(napi_get_buffer_info(env, argv[1], &data, &len));
  size_t n = (size_t)num_arg(env, argv[2]);
  if (n > len) n = len;
  answered(req);
  fuse_reply_buf(req, data, n);
  return NULL;
}

// replyReadlink(req, target)
static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req = req_arg(env, argv[0]);
  char *target = string_arg(env, argv[1]);
  if (!req || !target) return NULL;
  answered(req);
  fuse_reply_readlink(req, target);
  free(target);
  return NULL;
}

// replyStatfs(req, Float64Array [bsize, frsize, blocks, bfree, bavail, files, ffree, favail, namemax])
static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req = req_arg(env, argv[0]);
  const double *a = attr_arg(env, argv[1], 9);
  if (!req || !a) return NULL;
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = (unsigned long)a[0];
  st.f_frsize = (unsigned long)a[1];
  st.f_blocks = (fsblkcnt_t)a[2];
  st.f_bfree = (fsblkcnt_t)a[3];
  st.f_bavail = (fsblkcnt_t)a[4];
  st.f_files = (fsfilcnt_t)a[5];
  st.f_ffree = (fsfilcnt_t)a[6];
  st.f_favail = (fsfilcnt_t)a[7];
  st.f_namemax = (unsigned long)a[8];
  answered(req);
  fuse_reply_statfs(req, &st);
  return NULL;
}

// replyDir(req, size, plus, names: string[], attrs: Float64Array (15 per name), firstOffset, entryTimeout,
//          attrTimeout) -> how many entries fit (with plus, each one counts as a lookup of its inode).
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req = req_arg(env, argv[0]);
  if (!req) return NULL;
  size_t size = (size_t)num_arg(env, argv[1]);
  bool plus = false;
  CHECK(napi_get_value_bool(env, argv[2], &plus));
  uint32_t count = 0;
  CHECK(napi_get_array_length(env, argv[3], &count));
  const double *attrs = attr_arg(env, argv[4], (size_t)count * ATTR_FIELDS);
  if (!attrs) return NULL;
  double first = num_arg(env, argv[5]), entry_timeout = num_arg(env, argv[6]), attr_timeout = num_arg(env, argv[7]);
  char *buf = malloc(size ? size : 1);
  size_t used = 0;
  uint32_t fitted = 0;
  for (; fitted < count; fitted++) {
    napi_value item;
    char name[1024];
    size_t nlen = 0;
    napi_get_element(env, argv[3], fitted, &item);
    napi_get_value_string_utf8(env, item, name, sizeof name, &nlen);
    const double *a = attrs + (size_t)fitted * ATTR_FIELDS;
    off_t next = (off_t)(first + fitted + 1);
    size_t need;
    if (plus) {
      struct fuse_entry_param e;
      fill_entry(&e, a, entry_timeout, attr_timeout);
      need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, next);
    } else {
      struct stat st;
      fill_stat(&st, a);
      need = fuse_add_direntry(req, buf + used, size - used, name, &st, next);
    }
    if (need > size - used) break;
    used += need;
  }
  answered(req);
  fuse_reply_buf(req, buf, used);
  free(buf);
  CHECK(napi_create_uint32(env, fitted, &result));
  return result;
}

// peerCred(fd) -> [pid, uid, gid] of the process at the other end of a connected Unix socket (SO_PEERCRED).
static napi_value js_peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, v;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd = -1;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    napi_throw_error(env, "EPEERCRED", strerror(errno));
    return NULL;
  }
  CHECK(napi_create_array_with_length(env, 3, &result));
  napi_create_int64(env, cred.pid, &v);
  napi_set_element(env, result, 0, v);
  napi_create_int64(env, cred.uid, &v);
  napi_set_element(env, result, 1, v);
  napi_create_int64(env, cred.gid, &v);
  napi_set_element(env, result, 2, v);
  return result;
}

// releaseBuffer(data): detaches a WRITE's data buffer once it was written. Its memory goes back at once instead of
// when a garbage collection finds the Buffer: 1 MiB of external memory per WRITE made V8 run a full mark-compact
// every few dozen MiB written (measured: 41 % of the daemon's CPU under 8 parallel writers). JS holding the Buffer
// afterwards sees it empty, never freed memory.
static napi_value js_release_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ab;
  napi_typedarray_type type;
  size_t length, offset;
  void *data;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, &ab, &offset));
  CHECK(napi_detach_arraybuffer(env, ab));
  return NULL;
}

// grantDirectWrite(session, fh, fd, token, budget): WRITEs of handle fh go into (a dup of) fd from now on, as long
// as the budget lasts (a WRITE bigger than what is left goes to JS). The handle must have no grant (revoke first).
static napi_value js_grant_direct_write(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session_t *s = session_arg(env, argv[0]);
  if (!s) return NULL;
  if (!s->se) {
    napi_throw_error(env, "ENOTCONN", "the session has ended");
    return NULL;
  }
  uint64_t fh = (uint64_t)num_arg(env, argv[1]);
  int32_t fd = -1;
  CHECK(napi_get_value_int32(env, argv[2], &fd));
  grant_t *g = calloc(1, sizeof *g);
  g->fh = fh;
  g->token = num_arg(env, argv[3]);
  g->budget = (uint64_t)num_arg(env, argv[4]);
  g->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (g->fd < 0) {
    free(g);
    napi_throw_error(env, "EDIRECTWRITE", strerror(errno));
    return NULL;
  }
  pthread_mutex_lock(&s->grants_lock);
  grant_t **slot = grant_slot(s, fh);
  int taken = *slot != NULL;
  if (!taken) *slot = g;
  pthread_mutex_unlock(&s->grants_lock);
  if (taken) {
    free_grant(g);
    napi_throw_error(env, "EDIRECTWRITE", "this handle already has a grant of direct writes (revoke it first)");
  }
  return NULL;
}

// revokeDirectWrite(session, fh) -> the writes started through the handle's grant (-1: it had none). None starts
// after this returns; those started are reported (OP_WRITTEN) in the request queue as usual.
static napi_value js_revoke_direct_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  session_t *s = session_arg(env, argv[0]);
  if (!s) return NULL;
  uint64_t fh = (uint64_t)num_arg(env, argv[1]);
  pthread_mutex_lock(&s->grants_lock);
  grant_t **slot = grant_slot(s, fh), *g = *slot;
  double issued = -1;
  int gone = 0;
  if (g) {
    *slot = g->next;
    issued = g->issued;
    g->revoked = 1;
    gone = g->running == 0;
  }
  pthread_mutex_unlock(&s->grants_lock);
  if (gone) free_grant(g);
  CHECK(napi_create_double(env, issued, &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mount", 0, js_mount, 0, 0, 0, napi_default, 0},
      {"closeSession", 0, js_close, 0, 0, 0, napi_default, 0},
      {"notifyInvalInode", 0, js_inval_inode, 0, 0, 0, napi_default, 0},
      {"notifyInvalEntry", 0, js_inval_entry, 0, 0, 0, napi_default, 0},
      {"notifyDelete", 0, js_delete, 0, 0, 0, napi_default, 0},
      {"replyErr", 0, js_reply_err, 0, 0, 0, napi_default, 0},
      {"replyEntry", 0, js_reply_entry, 0, 0, 0, napi_default, 0},
      {"replyCreate", 0, js_reply_create, 0, 0, 0, napi_default, 0},
      {"replyAttr", 0, js_reply_attr, 0, 0, 0, napi_default, 0},
      {"replyOpen", 0, js_reply_open, 0, 0, 0, napi_default, 0},
      {"replyWrite", 0, js_reply_write, 0, 0, 0, napi_default, 0},
      {"replyXattr", 0, js_reply_xattr, 0, 0, 0, napi_default, 0},
      {"replyBuf", 0, js_reply_buf, 0, 0, 0, napi_default, 0},
      {"replyReadlink", 0, js_reply_readlink, 0, 0, 0, napi_default, 0},
      {"replyStatfs", 0, js_reply_statfs, 0, 0, 0, napi_default, 0},
      {"replyDir", 0, js_reply_dir, 0, 0, 0, napi_default, 0},
      {"peerCred", 0, js_peer_cred, 0, 0, 0, napi_default, 0},
      {"releaseBuffer", 0, js_release_buffer, 0, 0, 0, napi_default, 0},
      {"grantDirectWrite", 0, js_grant_direct_write, 0, 0, 0, napi_default, 0},
      {"revokeDirectWrite", 0, js_revoke_direct_write, 0, 0, 0, napi_default, 0},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
