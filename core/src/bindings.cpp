// Bind, Unbind and Close's unbinding (bindings.h).
#include "bindings.h"

#include <new>

#include "os.h"

namespace iocm::detail {

using namespace hosting;

HRESULT bindings::bind(HANDLE port, HANDLE handle) noexcept {
  const int fd = fd_of(handle);
  os::handle_kind kind{};
  if (fd < 0 || !os::query_handle(fd, kind)) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
  std::lock_guard lock(ports_.mutex());
  if (port == nullptr) {
    std::uint16_t s;
    std::uint64_t st;
    if (default_port_ == nullptr || !ports_.decode_open(default_port_, s, st))
      default_port_ = ports_.open_locked();
    if (default_port_ == nullptr) return HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
    port = default_port_;
  }
  std::uint16_t slot;
  std::uint64_t st;
  if (!ports_.decode_open(port, slot, st)) return E_INVALIDARG;
  try {
    auto& entry = handles_.slot(fd);
    // Binding twice fails, as CreateIoCompletionPort does on Windows.
    if (entry.load(std::memory_order_relaxed) != 0)
      return HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER);
    binding b;
    b.port_slot = slot;
    b.poller = static_cast<std::uint16_t>(next_poller_.fetch_add(1, std::memory_order_relaxed) %
                                          pollers_.size());
    b.kind = kind;
    b.port_generation = static_cast<std::uint32_t>(st >> 2);
    // epoll: the descriptor becomes non-blocking and joins the poller's
    // epoll set here, before any operation on it can be submitted.
    if (const HRESULT hr = pollers_[b.poller]->prepare_handle(fd, b); FAILED(hr)) return hr;
    if (const HRESULT hr = hand_carried_locked(fd, *pollers_[b.poller]); FAILED(hr)) return hr;
    // Registered before the binding is published, so before any operation.
    // No room in the inbox (a pumped engine binding from inside its pump,
    // say): the descriptor is used unregistered, as with a full table.
    if (const inbox_item item = pollers_[b.poller]->registration(fd); item != 0)
      (void)pollers_[b.poller]->submit(item);
    entry.store(binding::pack(b), std::memory_order_release);  // pairs with lookup()
  } catch (const std::bad_alloc&) {
    return E_OUTOFMEMORY;
  }
  return S_OK;
}

HRESULT bindings::unbind(HANDLE handle) noexcept {
  const int fd = fd_of(handle);
  poller_request request;
  request.fd = fd;
  binding b;
  for (room_wait wait;;) {
    {
      std::lock_guard lock(ports_.mutex());
      const std::uint64_t word = handles_.lookup(fd);
      if (word == 0) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
      auto& entry = handles_.slot(fd);            // the chunk exists: no allocation
      entry.store(0, std::memory_order_release);  // no new operation from here on
      b = binding::unpack(word);
      poller& p = *pollers_[b.poller];
      // Queued after every operation already accepted on fd: the poller
      // takes them first.
      if (p.submit(reinterpret_cast<inbox_item>(&request) | inbox_unbind)) {
        p.forget_handle(fd, b);
        break;
      }
      entry.store(word, std::memory_order_release);  // nothing was cancelled: still bound
    }
    // The inbox is full: wait for room without the bind lock, which a
    // pump's OnComplete may want (a pumped engine's pump empties it).
    if (!wait.again()) return HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
    waits_.wait_for_inbox();
  }
  // Wait until the kernel has the cancel: it finds the descriptor by number
  // when it gets it, so the host must not close fd before. Microseconds;
  // from inside OnComplete this thread delivers meanwhile (the poller may
  // wait for room in the queue).
  waits_.wait_delivering([&] { return request.answered(); });
  if (b.made_nonblocking || request.carried != nullptr) {
    std::lock_guard lock(ports_.mutex());
    if (b.made_nonblocking) restore_blocking_locked(fd);
    if (request.carried != nullptr) keep_carried_locked(fd, std::move(request.carried));
  }
  return S_OK;
}

void bindings::keep_carried_locked(int fd, std::unique_ptr<carried_bytes> carried) noexcept {
  carried->fd = fd;
  carried->cookie = os::socket_cookie(fd);
  try {
    carried_.insert_or_assign(fd, std::move(carried));
  } catch (const std::bad_alloc&) {
    log_.say(IOCM_LOG_ERROR,
             "Unbind: no memory to keep the bytes received ahead on a socket; they are lost");
  }
}

HRESULT bindings::hand_carried_locked(int fd, poller& p) noexcept {
  if (carried_.empty()) return S_OK;
  const auto it = carried_.find(fd);
  if (it == carried_.end()) return S_OK;
  // Another socket under the same number: the bytes were the old one's,
  // whose host closed it without binding it again.
  if (it->second->cookie == 0 || it->second->cookie != os::socket_cookie(fd)) {
    carried_.erase(it);
    return S_OK;
  }
  // Queued before the binding is published, so before any Recv on fd. No
  // room: Bind fails (still unbound, the bytes still kept here) rather than
  // wait under the lock the pump's callbacks may want.
  const auto item = reinterpret_cast<inbox_item>(it->second.get()) | inbox_carry;
  if (!p.submit(item)) return HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
  (void)it->second.release();  // the poller's now
  carried_.erase(it);
  return S_OK;
}

void bindings::restore_blocking_locked(int fd) noexcept {
  const std::uint64_t word = handles_.lookup(fd);
  if (word == 0) {
    os::clear_nonblocking(fd);  // blocking again, as the host gave it
    return;
  }
  // Bound anew meanwhile (it found O_NONBLOCK set): its own Unbind restores.
  binding b = binding::unpack(word);
  b.made_nonblocking = true;
  handles_.slot(fd).store(binding::pack(b), std::memory_order_release);
}

void bindings::unbind_port(std::uint16_t slot, std::vector<int>& made_nonblocking) noexcept {
  // Operations still in an inbox are aborted by the poller (port_open). No
  // new binding can join the port now. An inbox without room is waited for
  // without the lock: in a pumped engine only the pump empties it, and the
  // pump's OnComplete may want that lock (a Bind after an Accept).
  for (int next = 0; next < handle_table::max_fd;) {
    {
      std::lock_guard lock(ports_.mutex());
      next = handles_.for_each_bound(next, [&](int fd, std::atomic<std::uint64_t>& entry) {
        const binding b = binding::unpack(entry.load(std::memory_order_relaxed));
        if (b.port_slot != slot) return true;
        poller& p = *pollers_[b.poller];
        if (!p.submit(cancel_fd_item(fd))) return false;  // this one and the rest after a wait
        entry.store(0, std::memory_order_release);
        p.forget_handle(fd, b);
        // Not blocking again yet: the operations the cancel aborts may still
        // be tried before it, and must not block the poller.
        if (b.made_nonblocking) {
          try {
            made_nonblocking.push_back(fd);
          } catch (const std::bad_alloc&) {  // left non-blocking; nothing else is lost
          }
        }
        return true;
      });
    }
    if (next < handle_table::max_fd) waits_.wait_for_inbox();
  }
}

HRESULT bindings::set_completion_modes(HANDLE handle, DWORD modes) noexcept {
  if ((modes & ~DWORD{IOCM_SKIP_COMPLETION_ON_SUCCESS | IOCM_RECEIVE_AHEAD | IOCM_ACCEPT_AHEAD}) !=
      0)
    return E_INVALIDARG;
  const int fd = fd_of(handle);
  // Under the lock Bind and Unbind take: the binding cannot change meanwhile.
  std::lock_guard lock(ports_.mutex());
  const std::uint64_t word = handles_.lookup(fd);
  if (word == 0) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
  binding b = binding::unpack(word);
  b.skip_on_success = (modes & IOCM_SKIP_COMPLETION_ON_SUCCESS) != 0;
  // Other handles have nothing to receive ahead: the mode does nothing there.
  b.receive_ahead = (modes & IOCM_RECEIVE_AHEAD) != 0 && b.kind == os::handle_kind::socket;
  b.accept_ahead = (modes & IOCM_ACCEPT_AHEAD) != 0 && b.kind == os::handle_kind::socket;
  // Release pairs with lookup's acquire, as Bind's store does.
  handles_.slot(fd).store(binding::pack(b), std::memory_order_release);
  return S_OK;
}

}  // namespace iocm::detail
