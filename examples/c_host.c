/* iocm-c-host: a runtime written in C, driving iocm through the hosting ABI
 * as MSCorEE.h's C face does: interfaces are structs whose lpVtbl is called
 * with the interface pointer first. It implements ICLRIoCompletionManager
 * itself (a static vtable and a reference count), creates an engine, reads
 * a file in 4 KiB pieces at their offsets (ov.Offset, as on Windows), posts
 * one completion of its own, checks every byte and count OnComplete
 * reports and what the engine counted (IIocmMetrics), and closes the port
 * and the engine.
 *
 *   iocm-c-host [pieces]     pieces of 4 KiB to read (default 64, at most 4096)
 *
 * Exit status: 0 when every completion arrived once with what was expected;
 * 1, with a line on stderr saying what differed, otherwise. */
#define _POSIX_C_SOURCE 200809L /* mkstemp, clock_gettime under -std=c11 */

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <iocm/host_io.h>
#include <iocm/version.h>

enum { piece_size = 4096, max_pieces = 4096, post_bytes = 1234 };

/* One request: the OVERLAPPED, the host area the engine keeps right after
 * it, then what this host wants back in OnComplete. */
typedef struct request {
  OVERLAPPED ov;
  _Alignas(8) unsigned char host_area[IOCM_HOST_OVERLAPPED_SIZE];
  unsigned index; /* which piece, or max_pieces for the Post */
  unsigned completions;
  DWORD error;
  DWORD bytes;
  unsigned char data[piece_size];
} request;
_Static_assert(offsetof(request, host_area) == sizeof(OVERLAPPED),
               "the host area starts right after the OVERLAPPED");

/* The runtime's side: ICLRIoCompletionManager in C. OnComplete runs on the
 * engine's threads; it records the result and counts down. */
typedef struct runtime {
  ICLRIoCompletionManager iface; /* first: the interface pointer is the object */
  pthread_mutex_t lock;
  pthread_cond_t done;
  unsigned refs;
  unsigned outstanding;
} runtime;

static runtime* runtime_of(ICLRIoCompletionManager* self) { return (runtime*)self; }

static int same_iid(const IID* a, const IID* b) { return memcmp(a, b, sizeof(IID)) == 0; }

static HRESULT rt_query_interface(ICLRIoCompletionManager* self, const IID* riid, void** out) {
  if (!out) return E_POINTER;
  if (same_iid(riid, &IID_IUnknown) || same_iid(riid, &IID_ICLRIoCompletionManager)) {
    self->lpVtbl->AddRef(self);
    *out = self;
    return S_OK;
  }
  *out = NULL;
  return E_NOINTERFACE;
}

static ULONG rt_add_ref(ICLRIoCompletionManager* self) {
  runtime* rt = runtime_of(self);
  pthread_mutex_lock(&rt->lock);
  ULONG refs = ++rt->refs;
  pthread_mutex_unlock(&rt->lock);
  return refs;
}

static ULONG rt_release(ICLRIoCompletionManager* self) {
  runtime* rt = runtime_of(self);
  pthread_mutex_lock(&rt->lock);
  ULONG refs = --rt->refs; /* it lives on main's stack: nothing to free */
  pthread_mutex_unlock(&rt->lock);
  return refs;
}

static HRESULT rt_on_complete(ICLRIoCompletionManager* self, DWORD error, DWORD bytes, void* pv) {
  runtime* rt = runtime_of(self);
  request* r = (request*)pv; /* the OVERLAPPED is the request's first member */
  pthread_mutex_lock(&rt->lock);
  r->error = error;
  r->bytes = bytes;
  ++r->completions;
  if (--rt->outstanding == 0) pthread_cond_signal(&rt->done);
  pthread_mutex_unlock(&rt->lock);
  return S_OK;
}

static const ICLRIoCompletionManagerVtbl runtime_vtbl = {
    rt_query_interface,
    rt_add_ref,
    rt_release,
    rt_on_complete,
};

static int fail(const char* what, HRESULT hr) {
  fprintf(stderr, "iocm-c-host: %s failed: HRESULT 0x%08X\n", what, (unsigned)hr);
  return 1;
}

/* The byte at offset `at` of the test file. */
static unsigned char pattern(size_t at) { return (unsigned char)(at * 7u + at / piece_size); }

/* A file of `pieces` pieces of pattern(), unlinked at once: its descriptor
 * is all that is left of it. -1 on failure. */
static int make_file(unsigned pieces) {
  char path[] = "/tmp/iocm-c-host-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  unlink(path);
  unsigned char buffer[piece_size];
  for (unsigned p = 0; p < pieces; ++p) {
    for (size_t i = 0; i < piece_size; ++i) buffer[i] = pattern((size_t)p * piece_size + i);
    if (write(fd, buffer, piece_size) != piece_size) {
      close(fd);
      return -1;
    }
  }
  return fd;
}

/* Waits until OnComplete has run for every request outstanding, for at most
 * ten seconds; 0 when they all came. */
static int wait_all(runtime* rt) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 10;
  int rc = 0;
  pthread_mutex_lock(&rt->lock);
  while (rt->outstanding != 0 && rc == 0)
    rc = pthread_cond_timedwait(&rt->done, &rt->lock, &deadline);
  unsigned left = rt->outstanding;
  pthread_mutex_unlock(&rt->lock);
  return left == 0 ? 0 : -1;
}

int main(int argc, char** argv) {
  unsigned pieces = 64;
  if (argc > 2 ||
      (argc == 2 && (sscanf(argv[1], "%u", &pieces) != 1 || pieces == 0 || pieces > max_pieces))) {
    fprintf(stderr, "usage: iocm-c-host [pieces: 1..%d]\n", max_pieces);
    return 2;
  }
  runtime rt = {{&runtime_vtbl}, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1, 0};
  ICLRIoCompletionManager* clr = &rt.iface;

  iocm_config config;
  iocm_config_init(&config);
  config.max_threads = 2;
  IHostIoCompletionManager* manager = NULL;
  HRESULT hr = iocm_create_host_io_completion_manager(&config, &manager);
  if (FAILED(hr)) return fail("iocm_create_host_io_completion_manager", hr);
  IIocmHostIo* io = NULL;
  hr = manager->lpVtbl->QueryInterface(manager, &IID_IIocmHostIo, (void**)&io);
  if (FAILED(hr)) return fail("QueryInterface(IID_IIocmHostIo)", hr);
  DWORD host_size = 0;
  hr = manager->lpVtbl->GetHostOverlappedSize(manager, &host_size);
  if (FAILED(hr) || host_size > IOCM_HOST_OVERLAPPED_SIZE) return fail("GetHostOverlappedSize", hr);
  hr = manager->lpVtbl->SetCLRIoCompletionManager(manager, clr);
  if (FAILED(hr)) return fail("SetCLRIoCompletionManager", hr);
  HANDLE port = NULL;
  hr = manager->lpVtbl->CreateIoCompletionPort(manager, &port);
  if (FAILED(hr)) return fail("CreateIoCompletionPort", hr);

  int fd = make_file(pieces);
  if (fd < 0) {
    fprintf(stderr, "iocm-c-host: cannot make a scratch file: %s\n", strerror(errno));
    return 1;
  }
  HANDLE file = (HANDLE)(intptr_t)fd;
  hr = manager->lpVtbl->Bind(manager, port, file);
  if (FAILED(hr)) return fail("Bind", hr);

  /* Every piece read at once, in reverse order, plus one Post. */
  request* requests = calloc(pieces + 1, sizeof(request));
  if (!requests) return fail("calloc", E_OUTOFMEMORY);
  rt.outstanding = pieces + 1;
  for (unsigned i = 0; i <= pieces; ++i) {
    request* r = &requests[i];
    r->index = i < pieces ? pieces - 1 - i : max_pieces;
    hr = manager->lpVtbl->InitializeHostOverlapped(manager, &r->ov);
    if (FAILED(hr)) return fail("InitializeHostOverlapped", hr);
    if (i < pieces) {
      uint64_t offset = (uint64_t)r->index * piece_size;
      r->ov.Offset = (DWORD)offset;
      r->ov.OffsetHigh = (DWORD)(offset >> 32);
      hr = io->lpVtbl->Read(io, file, r->data, piece_size, &r->ov);
      if (hr != IOCM_E_IO_PENDING) return fail("Read", hr);
    } else {
      hr = io->lpVtbl->Post(io, port, ERROR_SUCCESS, post_bytes, &r->ov);
      if (hr != IOCM_E_IO_PENDING) return fail("Post", hr);
    }
  }
  if (wait_all(&rt) != 0) {
    fprintf(stderr, "iocm-c-host: %u completions did not come in 10 s\n", rt.outstanding);
    return 1;
  }
  for (unsigned i = 0; i <= pieces; ++i) {
    const request* r = &requests[i];
    DWORD want = i < pieces ? piece_size : post_bytes;
    if (r->completions != 1 || r->error != ERROR_SUCCESS || r->bytes != want) {
      fprintf(stderr,
              "iocm-c-host: request %u: %u completions, error %u, %u bytes (wanted 1, 0, %u)\n", i,
              r->completions, (unsigned)r->error, (unsigned)r->bytes, (unsigned)want);
      return 1;
    }
    for (size_t b = 0; i < pieces && b < piece_size; ++b)
      if (r->data[b] != pattern((size_t)r->index * piece_size + b)) {
        fprintf(stderr, "iocm-c-host: piece %u differs at byte %zu\n", r->index, b);
        return 1;
      }
  }

  /* What the engine counted (IIocmMetrics): every read and the Post, once
   * their OnComplete calls have returned (counted right after each). */
  IIocmMetrics* metrics = NULL;
  hr = manager->lpVtbl->QueryInterface(manager, &IID_IIocmMetrics, (void**)&metrics);
  if (FAILED(hr)) return fail("QueryInterface(IID_IIocmMetrics)", hr);
  iocm_metrics m;
  for (int tries = 0;; ++tries) {
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    hr = metrics->lpVtbl->GetMetrics(metrics, &m);
    if (FAILED(hr)) return fail("GetMetrics", hr);
    if (m.completed[IOCM_KIND_READ] + m.completed[IOCM_KIND_POST] == pieces + 1u || tries == 10000)
      break;
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  metrics->lpVtbl->Release(metrics);
  if (m.accepted[IOCM_KIND_READ] != pieces || m.accepted[IOCM_KIND_POST] != 1 ||
      m.completed[IOCM_KIND_READ] != pieces || m.completed[IOCM_KIND_POST] != 1) {
    fprintf(stderr,
            "iocm-c-host: metrics: reads accepted %llu and completed %llu, posts accepted %llu "
            "and completed %llu (wanted %u, %u, 1, 1)\n",
            (unsigned long long)m.accepted[IOCM_KIND_READ],
            (unsigned long long)m.completed[IOCM_KIND_READ],
            (unsigned long long)m.accepted[IOCM_KIND_POST],
            (unsigned long long)m.completed[IOCM_KIND_POST], pieces, pieces);
    return 1;
  }

  /* Unbind before closing the descriptor; then the port and the engine. */
  hr = io->lpVtbl->Unbind(io, file);
  if (FAILED(hr)) return fail("Unbind", hr);
  close(fd);
  hr = manager->lpVtbl->CloseIoCompletionPort(manager, port);
  if (FAILED(hr)) return fail("CloseIoCompletionPort", hr);
  hr = manager->lpVtbl->CloseIoCompletionPort(manager, port);
  if (hr != E_INVALIDARG) return fail("a second CloseIoCompletionPort (wanted E_INVALIDARG)", hr);
  io->lpVtbl->Release(io);
  manager->lpVtbl->Release(manager); /* joins the engine's threads; drops its runtime reference */
  free(requests);
  if (rt.refs != 1) {
    fprintf(stderr, "iocm-c-host: the runtime has %u references left (wanted 1)\n", rt.refs);
    return 1;
  }
  printf("iocm %s from C: %u reads of %d bytes and a Post, each completed once; %llu harvests\n",
         iocm_version(), pieces, piece_size, (unsigned long long)m.harvests);
  return 0;
}
