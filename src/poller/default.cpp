// The backend this build uses. CMake passes ASYNC_IO_POLLER_EPOLL or ASYNC_IO_POLLER_POLL when
// a backend is forced (-DASYNC_IO_POLLER=epoll|poll), and ASYNC_IO_POLLER_NOTIFIER_PIPE for
// -DASYNC_IO_POLLER_NOTIFIER=pipe; otherwise: epoll on Linux/Android, poll() elsewhere (until
// the kqueue, event ports and IOCP backends exist).
#include "poller.hpp"

#if defined(ASYNC_IO_POLLER_EPOLL) && defined(ASYNC_IO_POLLER_POLL)
#  error "ASYNC_IO_POLLER_EPOLL and ASYNC_IO_POLLER_POLL are mutually exclusive"
#endif
#if defined(ASYNC_IO_POLLER_EPOLL) && !defined(__linux__)
#  error "the epoll backend exists only on Linux and Android"
#endif

namespace async_io::detail {

std::unique_ptr<Poller> make_default_poller() {
#if defined(ASYNC_IO_POLLER_NOTIFIER_PIPE)
    constexpr NotifierKind notifier = NotifierKind::pipe;
#else
    constexpr NotifierKind notifier = NotifierKind::automatic;
#endif
#if defined(ASYNC_IO_POLLER_EPOLL) || (!defined(ASYNC_IO_POLLER_POLL) && defined(__linux__))
    return make_epoll_poller(notifier);
#else
    return make_poll_poller(notifier);
#endif
}

}  // namespace async_io::detail
