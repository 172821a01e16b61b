// Blocking name resolution with getaddrinfo, which is thread-safe, so an awaitable form can run
// this on a helper thread.
#include <async_io/net.hpp>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <stdexcept>
#include <string>

#include <netdb.h>
#include <sys/socket.h>

namespace async_io::net {

namespace {

class ResolveCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "getaddrinfo"; }
    std::string message(int code) const override { return gai_strerror(code); }
    std::error_condition default_error_condition(int code) const noexcept override {
        switch (code) {
#if defined(EAI_MEMORY)
            case EAI_MEMORY: return std::errc::not_enough_memory;
#endif
#if defined(EAI_FAMILY)
            case EAI_FAMILY: return std::errc::address_family_not_supported;
#endif
            default: return {code, *this};
        }
    }
};

}  // namespace

const std::error_category& resolve_category() noexcept {
    static const ResolveCategory category;
    return category;
}

std::vector<SocketAddr> resolve(std::string_view host, std::uint16_t port) {
    const std::string host_z(host);
    const std::string what = "resolve(\"" + host_z + "\")";
    if (host_z.find('\0') != std::string::npos) {
        throw std::invalid_argument(what + ": host name contains a NUL byte");
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    // One entry per address rather than one per socket type.
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    const int rc = ::getaddrinfo(host_z.c_str(), nullptr, &hints, &list);
    if (rc != 0) {
#if defined(EAI_SYSTEM)
        if (rc == EAI_SYSTEM) {
            throw std::system_error(errno != 0 ? errno : EIO, std::system_category(), what);
        }
#endif
        throw std::system_error(rc, resolve_category(), what);
    }
    const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(list, &::freeaddrinfo);

    std::vector<SocketAddr> addrs;
    for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
        auto addr = SocketAddr::from_raw(ai->ai_addr, ai->ai_addrlen);
        if (!addr) continue;
        addr->set_port(port);
        if (std::find(addrs.begin(), addrs.end(), *addr) == addrs.end()) addrs.push_back(*addr);
    }
    return addrs;
}

}  // namespace async_io::net
