// Blocking name resolution with getaddrinfo, which is thread-safe, so an awaitable form can run
// this on a helper thread.
#include <async_io/net.hpp>
#include "net/socket_ops.hpp"

#include <algorithm>
#include <cerrno>
#include <memory>
#include <stdexcept>
#include <string>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
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
    const std::string what = "resolve(" + detail::quoted(host) + ")";
    if (const char* problem = detail::host_problem(host)) {
        throw std::invalid_argument(what + ": " + problem);
    }
    const std::string host_z(host);
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

namespace async_io::detail {

const char* host_problem(std::string_view host) noexcept {
    if (host.empty()) return "empty host name";
    if (host.find('\0') != std::string_view::npos) return "host name contains a NUL byte";
    if (host.front() == '[') {
        return "an IPv6 address is given without brackets (\"::1\"), and the port separately";
    }
    if (host.find(':') == std::string_view::npos) return nullptr;
    // Only an IPv6 address (possibly with a "%zone") has a ':'; anything else is "host:port".
    const std::string_view ip = host.substr(0, host.find('%'));
    char text[INET6_ADDRSTRLEN];
    in6_addr parsed{};
    if (ip.size() < sizeof text) {
        ip.copy(text, ip.size());
        text[ip.size()] = '\0';
        if (::inet_pton(AF_INET6, text, &parsed) == 1) return nullptr;
    }
    if (host.find(':') == host.rfind(':')) {
        return "\"host:port\" given as the host: give the port as resolve's second argument";
    }
    return "invalid IPv6 address (a host name has no ':')";
}

}  // namespace async_io::detail
