// iocm/host_io.h — creating iocm's IHostIoCompletionManager, and the
// operations interface a COM-shaped host submits I/O through.
//
// Linux has no kernel object that completes I/O "for a handle": the engine
// owns submission too. A host gets IIocmHostIo from the manager with
// QueryInterface(IID_IIocmHostIo) and submits Win32-style overlapped
// operations on bound handles. Every method is thread-safe.
//
// Handles are file descriptors: HANDLE h = (HANDLE)(intptr_t)fd. Ports are
// opaque HANDLE values from CreateIoCompletionPort.
//
// An operation either is accepted, and then OnComplete runs exactly once for
// its OVERLAPPED, or is refused, and then it never does:
//   accepted  -> returns IOCM_E_IO_PENDING (= HRESULT_FROM_WIN32(ERROR_IO_PENDING))
//   refused   -> returns another HRESULT, listed with each method.
// Refusals every operation shares:
//   E_POINTER                  the OVERLAPPED (or another required pointer) is null
//   E_INVALIDARG               the OVERLAPPED is not 8-byte aligned
//   HOST_E_CLRNOTAVAILABLE     SetCLRIoCompletionManager has not been called
//   HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE)     the handle is not bound (or its port was closed)
//   HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER)  InitializeHostOverlapped was not called on it
//   HRESULT_FROM_WIN32(ERROR_BUSY)               that OVERLAPPED is still in flight
//   HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES) the submission inbox stayed full
//
// Every OVERLAPPED passed here must have GetHostOverlappedSize() bytes after
// it (the runtime allocates them) that InitializeHostOverlapped prepared.
// Before OnComplete runs, iocm stores the Win32 error in OVERLAPPED::Internal
// and the byte count in OVERLAPPED::InternalHigh (as GetOverlappedResult reads
// them on Windows, though Internal holds a Win32 code, not an NTSTATUS).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "iocm/hosting.h"

// What differs between the languages in the declarations below.
#ifdef __cplusplus
#define IOCM_NOEXCEPT noexcept
#define IOCM_HOSTING iocm::hosting::
#else
#define IOCM_NOEXCEPT
#define IOCM_HOSTING
#endif

/// Options of one engine. C layout; fill it with iocm_config_init() and
/// change what you need. struct_size lets later versions add fields.
typedef struct iocm_config {
  uint32_t struct_size;     ///< sizeof(iocm_config), set by iocm_config_init
  uint32_t pollers;         ///< completion pollers; 0 = IOCM_POLLERS, else one per usable core
  uint32_t min_threads;     ///< notifier floor (SetMinThreads); 0 = 1
  uint32_t max_threads;     ///< notifier ceiling (SetMaxThreads); 0 = 2 x usable CPUs
  uint32_t ring_entries;    ///< io_uring submission entries per poller (power of 2, 2..32768)
  uint32_t queue_capacity;  ///< completion records per queue lane (power of 2, >= 64)
  uint32_t inbox_capacity;  ///< submissions waiting per poller (power of 2, >= 64)
  uint32_t notifier_spin;   ///< empty polls an idle notifier makes before it parks
  uint32_t max_ports;       ///< completion ports that can be open at once (1..1024)
  uint32_t ring_setup;      ///< an iocm_ring_setup value
  uint32_t flags;           ///< iocm_config_flags, or-ed
  // --- added in 0.2.0 (placement); a struct_size of IOCM_CONFIG_SIZE_V1 omits them ---
  /// CPUs the engine may use, as a list like "0-3,8": a subset of the CPUs
  /// the process may run on. Null: the IOCM_CPUS environment variable, or
  /// every allowed CPU. The string is read during creation only.
  const char* cpus;
  /// An iocm_placement value. IOCM_PLACEMENT_DEFAULT: the IOCM_PLACEMENT
  /// environment variable ("compact" or "spread"), or spread.
  uint32_t placement;
  /// An iocm_backend value. IOCM_BACKEND_AUTO: the IOCM_BACKEND environment
  /// variable ("auto", "uring", "epoll"), or io_uring when a probe really
  /// creates a ring and epoll otherwise (saying why, once, at IOCM_LOG_INFO).
  uint32_t backend;
  /// The machine description placement plans on. Null: the IOCM_TOPOLOGY
  /// environment variable, or this machine as hwloc discovers it. Else
  /// "synthetic:<hwloc synthetic description>" (e.g. "synthetic:pack:2
  /// numa:2 core:4 pu:2") or "xml:<path of an lstopo XML export>". CPUs and
  /// nodes a described machine has but this one lacks are not pinned or
  /// bound; creation says so in one warning and goes on.
  const char* topology;
  /// Where the engine reports what it cannot do as asked (level
  /// IOCM_LOG_WARNING), why a creation was refused (IOCM_LOG_ERROR), and,
  /// from a poller thread and once per kind, an answer of the kernel it does
  /// not expect (e.g. io_uring saying it dropped completions, EBADR). Null:
  /// one line on stderr, prefixed "iocm: ". Never called on the hot path;
  /// must be thread-safe.
  void (*log)(void* context, uint32_t level, const char* message);
  void* log_context;
} iocm_config;

/// The size of the first iocm_config layout (up to flags); still accepted.
#define IOCM_CONFIG_SIZE_V1 ((uint32_t)(11 * sizeof(uint32_t)))

/// Where pollers go when there are fewer of them than cores (docs/NUMA.md).
enum iocm_placement {
  IOCM_PLACEMENT_DEFAULT = 0,  ///< IOCM_PLACEMENT from the environment, else spread
  IOCM_PLACEMENT_COMPACT = 1,  ///< fill one NUMA node's cores before the next
  IOCM_PLACEMENT_SPREAD = 2,   ///< round-robin over packages, then over their NUMA nodes
};

enum iocm_log_level {
  IOCM_LOG_ERROR = 1,
  IOCM_LOG_WARNING = 2,
  IOCM_LOG_INFO = 3,
};

/// Which kernel interface the pollers use (docs/ENGINE.md).
enum iocm_backend {
  IOCM_BACKEND_AUTO = 0,   ///< IOCM_BACKEND, else io_uring if it works, else epoll
  IOCM_BACKEND_URING = 1,  ///< io_uring only; creation fails if it is refused
  IOCM_BACKEND_EPOLL = 2,  ///< epoll (edge-triggered), regular files on the poller
};

/// How pollers set up their io_uring. The probe tries each level in turn.
enum iocm_ring_setup {
  /// With IOCM_HANDOFF: SINGLE_ISSUER|DEFER_TASKRUN, then COOP_TASKRUN,
  /// then none; otherwise (and for a pumped engine) none, the one setup any
  /// thread may drive
  IOCM_RING_PROBE = 0,
  IOCM_RING_DEFER_TASKRUN = 1,  ///< only SINGLE_ISSUER|DEFER_TASKRUN; fail if refused
  IOCM_RING_COOP_TASKRUN = 2,   ///< only COOP_TASKRUN|TASKRUN_FLAG; fail if refused
  IOCM_RING_PLAIN = 3,          ///< no setup flags
};

enum iocm_config_flags {
  IOCM_NO_PINNING = 1u << 0,  ///< leave pollers and notifiers unpinned
  /// Start no thread: one poller, no notifiers; completions are delivered
  /// only inside IIocmPump::Pump (iocm::engine::pump), on the thread that
  /// pumps (docs/ENGINE.md, "Pumped engines"). pollers must be 0 or 1 and
  /// ring_setup IOCM_RING_PROBE or IOCM_RING_PLAIN.
  IOCM_PUMPED = 1u << 1,
  /// Deliver on notifier threads only, as iocm did before 0.3: pollers hand
  /// every record to the queue and never run OnComplete. Without it, a
  /// poller delivers the first completion it harvests itself, on the thread
  /// where it landed (docs/ENGINE.md, "Delivery where the completion
  /// lands"); io_uring then runs without setup flags unless ring_setup asks
  /// for COOP_TASKRUN, and asking for DEFER_TASKRUN implies this flag.
  IOCM_HANDOFF = 1u << 2,
  /// io_uring: every bound descriptor below the poller's table size (the
  /// process's RLIMIT_NOFILE, at most 65536) is registered in its poller's
  /// file table at Bind and removed at Unbind, and its operations name it
  /// by that index: no file reference taken and dropped per operation
  /// (docs/ENGINE.md, "Registered files"). Ignored by epoll.
  IOCM_FIXED_FILES = 1u << 3,
  /// A poller's thread delivers every completion it harvests itself, however
  /// many at once and whether or not a notifier is awake: one thread per
  /// core runs submission, completion and callbacks, as a thread-per-core
  /// server does (docs/ENGINE.md, "Delivery where the completion lands").
  /// Notifiers still deliver Posts, records a spinning notifier takes first,
  /// and whatever the ring monitor moves while a callback blocks. Not with
  /// IOCM_HANDOFF; a pumped engine delivers on the pump anyway.
  IOCM_INLINE_ALL = 1u << 4,
};

/// Indexes of iocm_metrics::accepted and iocm_metrics::completed: the kind
/// of operation, or a Post. For completed, IOCM_KIND_ABORTED counts the
/// operations the engine completed with ERROR_OPERATION_ABORTED (a cancel,
/// a closing port, an interrupted call), whatever their kind, and the others
/// only what did not; a Post counts as a Post, whatever error it carries.
/// Nothing is accepted as IOCM_KIND_ABORTED.
enum iocm_metric_kind {
  IOCM_KIND_READ = 0,
  IOCM_KIND_WRITE = 1,
  IOCM_KIND_RECV = 2,
  IOCM_KIND_SEND = 3,
  IOCM_KIND_ACCEPT = 4,
  IOCM_KIND_CONNECT = 5,
  IOCM_KIND_NOP = 6,
  IOCM_KIND_POST = 7,
  IOCM_KIND_ABORTED = 8,
  IOCM_METRIC_KINDS = 9,
};

/// Indexes of iocm_metrics::kernel_refusals: what the kernel said instead of
/// doing what a poller asked.
enum iocm_refusal_kind {
  /// io_uring_enter: EAGAIN, EBUSY or ENOMEM (retried after a pause)
  IOCM_REFUSED_BUSY = 0,
  /// io_uring_enter: EBADR, the kernel dropped completions it could not keep
  IOCM_REFUSED_DROPPED = 1,
  /// a receive ahead found the poller's buffers all in use (ENOBUFS; re-armed)
  IOCM_REFUSED_NO_BUFFERS = 2,
  /// another refusal: io_uring_enter's other errors, epoll_wait failing,
  /// a file table or buffer ring registration refused
  IOCM_REFUSED_OTHER = 3,
  IOCM_REFUSAL_KINDS = 4,
};

/// Buckets of iocm_metrics::harvest_sizes: harvests of 1, 2-3, 4-7, 8-15,
/// 16-31, 32-63, 64-127 and 128 or more completions.
enum { IOCM_HARVEST_BUCKETS = 8 };

/// What an engine counts about itself since it was created
/// (IIocmMetrics::GetMetrics, iocm::engine::metrics; docs/ENGINE.md,
/// "Metrics"). Each counter is kept by the one thread that changes it and
/// summed when read: a snapshot whose counters are each exact but not all
/// taken at the same instant. C layout; struct_size lets later versions add
/// fields at the end.
typedef struct iocm_metrics {
  uint32_t struct_size;  ///< set by the caller: sizeof(iocm_metrics)
  uint32_t pollers;      ///< poller threads (or the pumped engine's one poller)
  uint32_t notifiers;    ///< notifier threads alive now
  uint32_t parked;       ///< notifiers asleep now
  uint64_t
      accepted[IOCM_METRIC_KINDS];  ///< operations and Posts answered IOCM_E_IO_PENDING, by kind
  uint64_t
      completed[IOCM_METRIC_KINDS];  ///< OnComplete calls, by kind (IOCM_KIND_ABORTED: aborted)
  uint64_t delivered_inline;         ///< OnComplete calls on a poller's own thread
  uint64_t delivered_by_notifiers;   ///< OnComplete calls on notifiers, through the queue
  uint64_t delivered_by_pump;        ///< OnComplete calls inside IIocmPump::Pump
  uint64_t harvests;                 ///< batches of completions pollers took from the kernel
  uint64_t harvest_sizes[IOCM_HARVEST_BUCKETS];  ///< harvests by size (IOCM_HARVEST_BUCKETS)
  uint64_t queue_high_water;  ///< most records a poller saw in its queue lane after publishing
                              ///< with no notifier asleep (every 16th time sampled)
  uint64_t wakeups_sent;      ///< sleeping notifiers woken
  uint64_t wakeups_avoided;   ///< times a poller published records for the notifiers and none
                              ///< slept (a pumped engine has none to wake: 0)
  uint64_t kernel_refusals[IOCM_REFUSAL_KINDS];  ///< by iocm_refusal_kind
  uint64_t
      ring_takeovers;  ///< times another thread drove a poller's ring while it was in OnComplete
} iocm_metrics;

#ifdef __cplusplus
/// The accepted answer of every operation: HRESULT_FROM_WIN32(ERROR_IO_PENDING).
inline constexpr iocm::hosting::HRESULT IOCM_E_IO_PENDING =
    iocm::hosting::HRESULT_FROM_WIN32(iocm::hosting::ERROR_IO_PENDING);

/// IIocmPump::Pump's timeout that never runs out (Windows' INFINITE).
inline constexpr iocm::hosting::DWORD IOCM_INFINITE = 0xFFFFFFFFu;

/// IIocmHostIo2::SetCompletionModes: a transfer the kernel finishes at once
/// returns S_OK on the calling thread and is not delivered (docs/ENGINE.md).
inline constexpr iocm::hosting::DWORD IOCM_SKIP_COMPLETION_ON_SUCCESS = 1;
/// IIocmHostIo2::SetCompletionModes, for a socket: the engine may receive
/// ahead of the host's Recvs (io_uring: one multishot receive into the
/// poller's buffers, armed once; docs/ENGINE.md, "Receiving ahead").
inline constexpr iocm::hosting::DWORD IOCM_RECEIVE_AHEAD = 2;
/// IIocmHostIo2::SetCompletionModes, for a listening socket: the engine may
/// accept connections ahead of the host's Accepts (io_uring: one multishot
/// accept, armed once; docs/ENGINE.md, "Accepting ahead").
inline constexpr iocm::hosting::DWORD IOCM_ACCEPT_AHEAD = 4;

/// The bytes iocm keeps after each OVERLAPPED (GetHostOverlappedSize).
inline constexpr uint32_t IOCM_HOST_OVERLAPPED_SIZE = 64;
#else
#define IOCM_E_IO_PENDING HRESULT_FROM_WIN32(ERROR_IO_PENDING)
#define IOCM_INFINITE 0xFFFFFFFFu
enum iocm_completion_modes {
  IOCM_SKIP_COMPLETION_ON_SUCCESS = 1,
  IOCM_RECEIVE_AHEAD = 2,
  IOCM_ACCEPT_AHEAD = 4,
};
#define IOCM_HOST_OVERLAPPED_SIZE 64u
#endif

#ifdef __cplusplus
namespace iocm::hosting {
#endif

// {5E0C1A77-3B9D-4F2A-9C41-6D8E2B7F0A13}
IOCM_DEFINE_IID(IID_IIocmHostIo, 0x5E0C1A77, 0x3B9D, 0x4F2A, 0x9C, 0x41, 0x6D, 0x8E, 0x2B, 0x7F,
                0x0A, 0x13);
// {7B3E9D14-C2A8-4E61-B5F0-19D4A6C83E27}
IOCM_DEFINE_IID(IID_IIocmHostIo2, 0x7B3E9D14, 0xC2A8, 0x4E61, 0xB5, 0xF0, 0x19, 0xD4, 0xA6, 0xC8,
                0x3E, 0x27);
// {A41D7C52-90E3-4B6F-8E15-3C2F6A9B0D84}
IOCM_DEFINE_IID(IID_IIocmPump, 0xA41D7C52, 0x90E3, 0x4B6F, 0x8E, 0x15, 0x3C, 0x2F, 0x6A, 0x9B, 0x0D,
                0x84);

// {C3F1A6E2-5B7D-4E09-A8C4-2D6F9B1E7A35}
IOCM_DEFINE_IID(IID_IIocmMetrics, 0xC3F1A6E2, 0x5B7D, 0x4E09, 0xA8, 0xC4, 0x2D, 0x6F, 0x9B, 0x1E,
                0x7A, 0x35);

#ifdef __cplusplus
struct IIocmHostIo;
struct IIocmHostIo2;
struct IIocmPump;
struct IIocmMetrics;
#else
typedef struct IIocmHostIo IIocmHostIo;
typedef struct IIocmHostIo2 IIocmHostIo2;
typedef struct IIocmPump IIocmPump;
typedef struct IIocmMetrics IIocmMetrics;
#endif

// (clang-format would break the function-pointer members apart.)
// clang-format off
/// IIocmHostIo's own slots (3..12), for interface T.
#define IOCM_HOST_IO_SLOTS(T)                                                                 \
  HRESULT (*Unbind)(T * This, HANDLE hHandle);                                                \
  HRESULT (*Read)                                                                             \
  (T * This, HANDLE hHandle, void* pBuffer, DWORD cbLength, OVERLAPPED* pOverlapped);         \
  HRESULT (*Write)                                                                            \
  (T * This, HANDLE hHandle, const void* pBuffer, DWORD cbLength, OVERLAPPED* pOverlapped);   \
  HRESULT (*Recv)                                                                             \
  (T * This, HANDLE hSocket, void* pBuffer, DWORD cbLength, OVERLAPPED* pOverlapped);         \
  HRESULT (*Send)                                                                             \
  (T * This, HANDLE hSocket, const void* pBuffer, DWORD cbLength, OVERLAPPED* pOverlapped);   \
  HRESULT (*Accept)(T * This, HANDLE hListen, HANDLE * phAccepted, OVERLAPPED * pOverlapped); \
  HRESULT (*Connect)                                                                          \
  (T * This, HANDLE hSocket, const void* pAddress, DWORD cbAddress, OVERLAPPED* pOverlapped); \
  HRESULT (*Post)                                                                             \
  (T * This, HANDLE hPort, DWORD dwErrorCode, DWORD dwBytes, OVERLAPPED * pOverlapped);       \
  HRESULT (*Cancel)(T * This, HANDLE hHandle, OVERLAPPED * pOverlapped);                      \
  HRESULT (*Nop)(T * This, HANDLE hHandle, OVERLAPPED * pOverlapped);
// clang-format on

/// The vtables as C lays them out (iocm/hosting.h).
typedef struct IIocmHostIoVtbl {
  IOCM_IUNKNOWN_SLOTS(IIocmHostIo)
  IOCM_HOST_IO_SLOTS(IIocmHostIo)
} IIocmHostIoVtbl;

typedef struct IIocmHostIo2Vtbl {
  IOCM_IUNKNOWN_SLOTS(IIocmHostIo2)
  IOCM_HOST_IO_SLOTS(IIocmHostIo2)
  HRESULT (*SetCompletionModes)(IIocmHostIo2* This, HANDLE hHandle, DWORD dwModes);
} IIocmHostIo2Vtbl;

typedef struct IIocmPumpVtbl {
  IOCM_IUNKNOWN_SLOTS(IIocmPump)
  HRESULT (*Pump)(IIocmPump* This, DWORD dwMilliseconds, DWORD* pdwDelivered);
} IIocmPumpVtbl;

typedef struct IIocmMetricsVtbl {
  IOCM_IUNKNOWN_SLOTS(IIocmMetrics)
  HRESULT (*GetMetrics)(IIocmMetrics* This, iocm_metrics* pMetrics);
} IIocmMetricsVtbl;

IOCM_ASSERT_SLOT(IIocmHostIoVtbl, Unbind, 3);
IOCM_ASSERT_SLOT(IIocmHostIoVtbl, Post, 10);
IOCM_ASSERT_SLOT(IIocmHostIoVtbl, Nop, 12);
IOCM_ASSERT_SLOT(IIocmHostIo2Vtbl, Nop, 12);
IOCM_ASSERT_SLOT(IIocmHostIo2Vtbl, SetCompletionModes, 13);
IOCM_ASSERT_SLOT(IIocmPumpVtbl, Pump, 3);
IOCM_ASSERT_SLOT(IIocmMetricsVtbl, GetMetrics, 3);

#ifdef __cplusplus
/// The operations of iocm's engine, obtained from its IHostIoCompletionManager
/// by QueryInterface(IID_IIocmHostIo). All methods are thread-safe and may be
/// called from inside OnComplete.
struct IIocmHostIo : IUnknown {
  /// Forgets a bound handle and cancels its operations still in flight, as
  /// closing a handle does on Windows: they complete with
  /// ERROR_OPERATION_ABORTED (one the kernel already finished keeps its
  /// result). Returns once the kernel has the cancel, so the descriptor may
  /// be closed at once; call it before closing, so that the number can be
  /// bound again. With the epoll backend the descriptor is blocking again
  /// if Bind made it non-blocking. ERROR_INVALID_HANDLE if it is not bound;
  /// ERROR_NO_SYSTEM_RESOURCES (still bound) if its poller's inbox stayed
  /// full.
  virtual HRESULT Unbind(HANDLE hHandle) = 0;  // slot 3
  /// read(2) at the 64-bit offset in Offset/OffsetHigh (ignored by pipes and
  /// sockets; on a file, an offset with the top bit set is refused with
  /// ERROR_INVALID_PARAMETER). End of file: ERROR_HANDLE_EOF with 0 bytes; a pipe whose
  /// writers are gone: ERROR_BROKEN_PIPE; a socket's orderly close: success,
  /// 0 bytes. A short read is a success with the bytes read.
  virtual HRESULT Read(HANDLE hHandle, void* pBuffer, DWORD cbLength,
                       OVERLAPPED* pOverlapped) = 0;  // slot 4
  /// write(2) at the offset in Offset/OffsetHigh (ignored by pipes, sockets).
  /// On a file, 0xFFFFFFFF:0xFFFFFFFF writes at the end of the file, as on
  /// Windows; any other offset with the top bit set is refused with
  /// ERROR_INVALID_PARAMETER. The descriptor's file position is never used.
  virtual HRESULT Write(HANDLE hHandle, const void* pBuffer, DWORD cbLength,
                        OVERLAPPED* pOverlapped) = 0;  // slot 5
  /// recv(2) on a socket: orderly close is success with 0 bytes.
  virtual HRESULT Recv(HANDLE hSocket, void* pBuffer, DWORD cbLength,
                       OVERLAPPED* pOverlapped) = 0;  // slot 6
  /// send(2) on a socket, never raising SIGPIPE.
  virtual HRESULT Send(HANDLE hSocket, const void* pBuffer, DWORD cbLength,
                       OVERLAPPED* pOverlapped) = 0;  // slot 7
  /// accept4(2) on a listening socket. On success *phAccepted receives the
  /// new socket (close-on-exec, not bound) before OnComplete runs, with 0
  /// bytes; phAccepted must stay valid until then.
  virtual HRESULT Accept(HANDLE hListen, HANDLE* phAccepted,
                         OVERLAPPED* pOverlapped) = 0;  // slot 8
  /// connect(2) to a sockaddr of cbAddress bytes, which must stay valid until
  /// OnComplete. Refused with E_INVALIDARG if cbAddress is 0 or above 128.
  virtual HRESULT Connect(HANDLE hSocket, const void* pAddress, DWORD cbAddress,
                          OVERLAPPED* pOverlapped) = 0;  // slot 9
  /// PostQueuedCompletionStatus: OnComplete(dwErrorCode, dwBytes,
  /// pOverlapped) runs on a notifier. Unknown or closed port: E_INVALIDARG.
  virtual HRESULT Post(HANDLE hPort, DWORD dwErrorCode, DWORD dwBytes,
                       OVERLAPPED* pOverlapped) = 0;  // slot 10
  /// CancelIoEx: with pOverlapped, cancels that operation on hHandle; with
  /// null, every operation on hHandle. pOverlapped is only a key: it is never
  /// read or written, so it may have completed and been freed already.
  /// Returns once the handle's poller has looked: S_OK when it found
  /// something to cancel, which then completes with ERROR_OPERATION_ABORTED
  /// (unless the kernel finished it first: it keeps its result);
  /// HRESULT_FROM_WIN32(ERROR_NOT_FOUND) when nothing matched (with
  /// pOverlapped: it is not in flight on hHandle's poller).
  virtual HRESULT Cancel(HANDLE hHandle, OVERLAPPED* pOverlapped) = 0;  // slot 11
  /// Completes with 0, 0 through the handle's poller, for measuring: a kernel
  /// no-op with io_uring; the epoll poller completes it without a syscall.
  virtual HRESULT Nop(HANDLE hHandle, OVERLAPPED* pOverlapped) = 0;  // slot 12

 protected:
  ~IIocmHostIo() = default;
};

/// IIocmHostIo and one more method, from QueryInterface(IID_IIocmHostIo2);
/// the same object answers both.
struct IIocmHostIo2 : IIocmHostIo {
  /// SetFileCompletionNotificationModes for a bound handle. With
  /// IOCM_SKIP_COMPLETION_ON_SUCCESS (like FILE_SKIP_COMPLETION_PORT_ON_SUCCESS),
  /// a Read, Write, Recv or Send on it first tries the transfer on the
  /// calling thread without waiting (preadv2/pwritev2 with RWF_NOWAIT,
  /// recv/send with MSG_DONTWAIT). If the kernel finishes it at once, the
  /// call returns S_OK with the byte count in InternalHigh (and 0 in
  /// Internal), and no OnComplete follows; if the kernel fails it at once,
  /// the call returns that error as an HRESULT (ERROR_HANDLE_EOF at the end
  /// of a file), and no OnComplete follows either. Only when the transfer
  /// would wait does it go to the poller and answer IOCM_E_IO_PENDING.
  ///
  /// With IOCM_RECEIVE_AHEAD, on a socket, the engine keeps one multishot
  /// receive in the kernel instead of one receive per Recv (io_uring; epoll
  /// receives as before): bytes land in the poller's buffers and are copied
  /// into the host's Recvs in order, also bytes that came before the Recv
  /// was posted. A Read on such a socket is a Recv; its Recvs never
  /// complete at once. Unbind keeps the bytes received ahead and gives them
  /// to the first Recvs after the same socket is bound again (docs/ENGINE.md,
  /// "Receiving ahead").
  ///
  /// With IOCM_ACCEPT_AHEAD, on a listening socket, the engine keeps one
  /// multishot accept in the kernel (io_uring; epoll accepts as before): the
  /// host's Accepts get the connections in the order they were accepted,
  /// also those accepted before the Accept was posted (at most 64 wait per
  /// listener; then accepting pauses until Accepts come). Unbind keeps the
  /// connections no Accept took for the same socket's next Bind; closing the
  /// port closes them (docs/ENGINE.md, "Accepting ahead").
  ///
  /// 0 turns the modes off again; Unbind forgets them. ERROR_INVALID_HANDLE
  /// when the handle is not bound; E_INVALIDARG for another mode bit.
  virtual HRESULT SetCompletionModes(HANDLE hHandle, DWORD dwModes) = 0;  // slot 13

 protected:
  ~IIocmHostIo2() = default;
};

/// Delivery on the host's own thread, for an engine created with
/// IOCM_PUMPED (QueryInterface for it fails with E_NOINTERFACE otherwise).
/// Such an engine starts no thread: whatever completes waits until a thread
/// pumps, and one pump, on one thread, runs the poller and calls OnComplete
/// for every record it takes, in the order the queue gives them. Submitting
/// from other threads stays safe and wakes a pump that waits.
struct IIocmPump : IUnknown {
  /// Moves submissions to the kernel, harvests completions and calls
  /// OnComplete for each on this thread (at most the config's
  /// queue_capacity per call), for as long as anything moves. When nothing
  /// was delivered it waits up to dwMilliseconds for something to deliver
  /// (0: not at all; IOCM_INFINITE: without limit).
  ///   S_OK        *pdwDelivered (may be null) completions were delivered:
  ///               0 when the time ran out
  ///   HRESULT_FROM_WIN32(ERROR_BUSY)  another thread is pumping, or this
  ///               one is inside OnComplete (a pump does not nest)
  virtual HRESULT Pump(DWORD dwMilliseconds, DWORD* pdwDelivered) = 0;  // slot 3

 protected:
  ~IIocmPump() = default;
};

/// What the engine counts about itself, from QueryInterface(IID_IIocmMetrics)
/// on its IHostIoCompletionManager. Thread-safe; any thread, any time.
struct IIocmMetrics : IUnknown {
  /// Fills *pMetrics (its first struct_size bytes, at most
  /// sizeof(iocm_metrics) of this version). E_POINTER: null; E_INVALIDARG:
  /// struct_size is smaller than the first version's iocm_metrics.
  virtual HRESULT GetMetrics(iocm_metrics* pMetrics) = 0;  // slot 3

 protected:
  ~IIocmMetrics() = default;
};

}  // namespace iocm::hosting
#else
struct IIocmHostIo {
  const IIocmHostIoVtbl* lpVtbl;
};
struct IIocmHostIo2 {
  const IIocmHostIo2Vtbl* lpVtbl;
};
struct IIocmPump {
  const IIocmPumpVtbl* lpVtbl;
};
struct IIocmMetrics {
  const IIocmMetricsVtbl* lpVtbl;
};
#endif

#ifdef __cplusplus
extern "C" {
#endif

/// Fills the first `size` bytes of *config with the defaults and sets
/// struct_size to `size`, for the layouts iocm knows (IOCM_CONFIG_SIZE_V1
/// and sizeof(iocm_config)). Writes nothing for another size or a null
/// config. Call it through iocm_config_init.
void iocm_config_init_sized(iocm_config* config, uint32_t size) IOCM_NOEXCEPT;

/// Creates an engine and returns its IHostIoCompletionManager with one
/// reference; Release() destroys it (closing every port first and joining
/// every thread). config may be null (defaults).
///   E_POINTER      manager is null
///   E_INVALIDARG   a config field or placement variable (IOCM_CPUS,
///                  IOCM_POLLERS, IOCM_PLACEMENT, IOCM_TOPOLOGY) is out of
///                  range or malformed, or struct_size is unknown; the log
///                  callback (or stderr) gets a message naming the value
///   E_OUTOFMEMORY  memory or threads could not be had
///   HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)  io_uring is unavailable or
///                  refused the requested ring setup
IOCM_HOSTING HRESULT iocm_create_host_io_completion_manager(
    const iocm_config* config, IOCM_HOSTING IHostIoCompletionManager** manager) IOCM_NOEXCEPT;

/// The placement an engine created with `config` would use (docs/NUMA.md):
/// which thread runs where and which memory sits on which node, as lines of
/// text, without creating the engine. Writes at most `size` bytes of text
/// (NUL-terminated) and the size it needs into *needed (may be null).
///   S_OK                                          the text fits
///   HRESULT_FROM_WIN32(ERROR_INSUFFICIENT_BUFFER)  it was cut; see *needed
///   E_POINTER                                     text is null with size != 0
///   E_INVALIDARG                                  the config or environment is
///                                                 invalid; the text says why
IOCM_HOSTING HRESULT iocm_describe_placement(const iocm_config* config, char* text, size_t size,
                                             size_t* needed) IOCM_NOEXCEPT;

#ifdef __cplusplus
}  // extern "C"
#endif

/// Fills *config with the defaults; does nothing if config is null. A macro,
/// as zlib's deflateInit is: it passes the caller's sizeof(iocm_config), so
/// a program built against an older header never has more bytes written
/// than its struct holds.
#define iocm_config_init(config) iocm_config_init_sized((config), (uint32_t)sizeof(iocm_config))
