// Plain networking types, the C++ counterpart of Rust's std::net and std::os::unix::net: socket
// addresses, TCP, UDP and Unix-domain sockets, and blocking name resolution. They are usable
// alone (blocking by default, as in Rust) and are what `Async<T>` wraps for asynchronous use.
//
// Common to every socket type here:
//  - it owns its fd (move-only, closed on destruction) and exposes native_handle(), release(),
//    static from_raw_fd(int), set_nonblocking(bool) and take_error();
//  - every socket it creates is close-on-exec; none raises SIGPIPE (writes to a closed peer
//    throw std::errc::broken_pipe or connection_reset);
//  - errors are std::system_error carrying the OS errno (compare with std::errc), with a message
//    naming the operation and, where there is one, the address ("connect 127.0.0.1:1: ...");
//  - in non-blocking mode an operation that would block throws std::system_error equal to
//    std::errc::operation_would_block (the form `Async::read_with` callbacks expect);
//  - EINTR is retried inside, never reported;
//  - a moved-from object owns nothing; its operations fail with std::errc::bad_file_descriptor.
// Threads: the operations keep no state besides the fd, so any of them may run concurrently on
// one object (e.g. a reader thread and a writer thread), except moving, release() and
// destruction, which must not overlap any other use of that object.
#pragma once

#include <async_io/detail/export.hpp>
#include <async_io/detail/sys.hpp>
#include <async_io/fd.hpp>

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace async_io::net {

// ---- addresses ----------------------------------------------------------------------------

/// An IPv4 or IPv6 socket address: IP address and port, plus flow info and scope id for IPv6.
/// Holds the OS's sockaddr_in / sockaddr_in6 bytes (so data()/size() go straight to the socket
/// calls); a value type, cheap to copy, totally ordered and hashable. Ordering follows Rust's:
/// every IPv4 address sorts before every IPv6 one, then by IP, port, flow info, scope id.
class ASYNC_IO_API SocketAddr {
public:
    /// Bytes of the raw storage: sizeof(sockaddr_in6).
    static constexpr std::size_t storage_size = 28;

    /// 0.0.0.0:0.
    SocketAddr() noexcept;

    /// The IPv4 address `ip` (in the order written: {127, 0, 0, 1}) with `port`.
    static SocketAddr v4(std::array<std::uint8_t, 4> ip, std::uint16_t port) noexcept;
    /// The IPv6 address with the eight 16-bit `segments` (as written: {0,0,0,0,0,0,0,1} is ::1),
    /// `port`, `flowinfo` and `scope_id` (the interface index of a link-local address), in the
    /// order of Rust's SocketAddrV6::new.
    static SocketAddr v6(std::array<std::uint16_t, 8> segments, std::uint16_t port,
                         std::uint32_t flowinfo = 0, std::uint32_t scope_id = 0) noexcept;
    /// The IPv6 address with the sixteen bytes `octets` (network order).
    static SocketAddr v6_from_octets(std::array<std::uint8_t, 16> octets, std::uint16_t port,
                                     std::uint32_t flowinfo = 0,
                                     std::uint32_t scope_id = 0) noexcept;
    /// 127.0.0.1:port.
    static SocketAddr loopback_v4(std::uint16_t port) noexcept { return v4({127, 0, 0, 1}, port); }
    /// [::1]:port.
    static SocketAddr loopback_v6(std::uint16_t port) noexcept {
        return v6({0, 0, 0, 0, 0, 0, 0, 1}, port);
    }
    /// 0.0.0.0:port (bind to every IPv4 interface).
    static SocketAddr unspecified_v4(std::uint16_t port) noexcept { return v4({0, 0, 0, 0}, port); }
    /// [::]:port (bind to every IPv6 interface).
    static SocketAddr unspecified_v6(std::uint16_t port) noexcept {
        return v6({0, 0, 0, 0, 0, 0, 0, 0}, port);
    }

    /// Parses "a.b.c.d:port" or "[ipv6]:port", the latter with an optional zone after '%': a
    /// numeric scope id ("[fe80::1%2]:80") or an interface name ("[fe80::1%lo]:80", looked up
    /// with if_nametoindex). No host names, no whitespace, port 0..65535 in decimal.
    /// Throws std::invalid_argument whose message quotes `text` and says what is wrong, e.g. for
    /// "127.0.0.1" (no port), ":80", "1.2.3.4:99999", "[::1", "::1:80" (IPv6 needs brackets).
    static SocketAddr parse(std::string_view text);
    /// As parse(), but returns std::nullopt instead of throwing.
    static std::optional<SocketAddr> try_parse(std::string_view text) noexcept;

    /// Builds a SocketAddr from a raw sockaddr of `len` bytes (as filled in by accept,
    /// recvfrom, getsockname, getaddrinfo); std::nullopt unless it is a complete AF_INET or
    /// AF_INET6 address.
    static std::optional<SocketAddr> from_raw(const void* sockaddr, std::size_t len) noexcept;

    /// Whether this is an IPv4 address (exactly one of is_ipv4() and is_ipv6() is true).
    bool is_ipv4() const noexcept { return family_ == Family::v4; }
    /// Whether this is an IPv6 address.
    bool is_ipv6() const noexcept { return family_ == Family::v6; }

    /// The port, in host byte order.
    std::uint16_t port() const noexcept;
    /// Replaces the port; the address and family stay.
    void set_port(std::uint16_t port) noexcept;

    /// The IPv4 address's bytes; {0,0,0,0} for an IPv6 address.
    std::array<std::uint8_t, 4> ipv4_octets() const noexcept;
    /// The IPv6 address's bytes; for an IPv4 address, its IPv4-mapped form ::ffff:a.b.c.d.
    std::array<std::uint8_t, 16> ipv6_octets() const noexcept;
    /// IPv6 flow info; 0 for IPv4.
    std::uint32_t flowinfo() const noexcept;
    /// IPv6 scope id (interface index); 0 for IPv4.
    std::uint32_t scope_id() const noexcept;
    /// True for 127.0.0.0/8 and ::1.
    bool is_loopback() const noexcept;
    /// True for 0.0.0.0 and ::.
    bool is_unspecified() const noexcept;

    /// The IP address alone: "127.0.0.1", "::1", "fe80::1" (RFC 5952 form, no scope id).
    std::string ip_string() const;
    /// "127.0.0.1:8080", "[::1]:80", "[fe80::1%2]:80" (scope id as a number, when non-zero);
    /// parse(to_string()) gives back an equal address (flow info aside).
    std::string to_string() const;

    /// The raw sockaddr bytes (sockaddr_in or sockaddr_in6, port and address in network
    /// order), for the socket calls; valid as long as this object.
    const void* data() const noexcept { return storage_; }
    /// The length of data(): sizeof(sockaddr_in) or sizeof(sockaddr_in6).
    std::size_t size() const noexcept;

    /// Equal when family, IP, port and (IPv6) flow info and scope id are equal.
    bool operator==(const SocketAddr& other) const noexcept;
    /// The total order described above; ==, <, <= ... follow from it.
    std::strong_ordering operator<=>(const SocketAddr& other) const noexcept;
    /// A hash consistent with ==.
    std::size_t hash() const noexcept;

private:
    enum class Family : std::uint8_t { v4, v6 };

    alignas(8) unsigned char storage_[storage_size];
    Family family_;
};

/// Writes addr.to_string().
ASYNC_IO_API std::ostream& operator<<(std::ostream& os, const SocketAddr& addr);

/// A Unix-domain socket address: a filesystem path, an abstract name (Linux and Android: a name
/// in a namespace of its own, not in the filesystem), or unnamed (the peer of an accepted
/// connection or of pair(), an unbound socket). Holds the OS's sockaddr_un bytes; a value type.
class ASYNC_IO_API UnixSocketAddr {
public:
    /// Bytes of the raw storage: at least sizeof(sockaddr_un) on every supported OS.
    static constexpr std::size_t storage_size = 110;

    /// The unnamed address.
    UnixSocketAddr() noexcept;

    /// The longest path (and the longest abstract name) this OS accepts, in bytes: the size of
    /// sockaddr_un's sun_path less one (107 on Linux, 103 on macOS and the BSDs).
    static std::size_t max_path_length() noexcept;

    /// A filesystem path. Throws std::invalid_argument if `path` is empty, contains a NUL byte,
    /// or is longer than max_path_length() (the message quotes the path and names the limit).
    static UnixSocketAddr from_pathname(std::string_view path);
    /// An abstract name (any bytes, NUL included; may be empty), as Rust's
    /// SocketAddr::from_abstract_name. Throws std::invalid_argument if longer than
    /// max_path_length(); on systems without abstract names throws std::system_error equal to
    /// std::errc::operation_not_supported.
    static UnixSocketAddr from_abstract_name(std::string_view name);

    /// Builds a UnixSocketAddr from a raw sockaddr_un of `len` bytes (as filled in by accept,
    /// recvfrom, getsockname); std::nullopt if it is not AF_UNIX or `len` is out of range. A
    /// length that covers no name gives the unnamed address.
    static std::optional<UnixSocketAddr> from_raw(const void* sockaddr, std::size_t len) noexcept;

    /// Whether the address is unnamed (no path, no abstract name).
    bool is_unnamed() const noexcept;
    /// Whether the address is an abstract name (never true where the OS has none).
    bool is_abstract() const noexcept;
    /// The path, for a pathname address (viewing into this object); std::nullopt otherwise.
    std::optional<std::string_view> as_pathname() const noexcept;
    /// The name without its leading NUL, for an abstract address; std::nullopt otherwise.
    std::optional<std::string_view> as_abstract_name() const noexcept;

    /// The path as is; "@name" for an abstract name (as ss(8) prints it); "(unnamed)".
    std::string to_string() const;

    /// The raw sockaddr_un bytes, for the socket calls; valid as long as this object.
    const void* data() const noexcept { return storage_; }
    /// The length of data() that is meaningful (the socklen_t the socket calls take).
    std::size_t size() const noexcept { return len_; }

    /// Equal when of the same kind with the same path or name.
    bool operator==(const UnixSocketAddr& other) const noexcept;

private:
    alignas(8) unsigned char storage_[storage_size];
    std::uint8_t len_;
};

/// Writes addr.to_string().
ASYNC_IO_API std::ostream& operator<<(std::ostream& os, const UnixSocketAddr& addr);

/// Which directions shutdown() closes.
enum class Shutdown : std::uint8_t {
    Read,   ///< further reads return 0 (EOF)
    Write,  ///< the peer reads EOF once it has read everything sent before
    Both,
};

}  // namespace async_io::net

namespace async_io::detail {

/// The members every owning socket type shares (see the header comment). Not a public type of
/// its own: use it through TcpStream, UdpSocket and the others.
class ASYNC_IO_API SocketBase {
public:
    /// The socket's fd, still owned by this object; -1 if it owns nothing.
    native_handle_type native_handle() const noexcept { return fd_.native_handle(); }
    /// Gives up ownership without closing: returns the fd (or -1) and leaves this object empty.
    [[nodiscard]] native_handle_type release() noexcept { return fd_.release(); }
    /// True if this object owns a socket.
    explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

    /// Sets or clears O_NONBLOCK. In non-blocking mode operations that would block throw
    /// std::system_error equal to std::errc::operation_would_block. Throws std::system_error
    /// ("set_nonblocking").
    void set_nonblocking(bool nonblocking);
    /// Reads and clears the socket's pending error (SO_ERROR): an empty std::error_code if there
    /// is none, e.g. std::errc::connection_refused after a failed non-blocking connect. Throws
    /// std::system_error ("getsockopt(SO_ERROR)") if the query itself fails.
    std::error_code take_error();

protected:
    SocketBase() noexcept = default;
    explicit SocketBase(OwnedFd fd) noexcept : fd_(std::move(fd)) {}

    OwnedFd fd_;
};

}  // namespace async_io::detail

namespace async_io::net {

// ---- TCP ----------------------------------------------------------------------------------

/// A TCP connection (Rust's std::net::TcpStream).
class ASYNC_IO_API TcpStream : public detail::SocketBase {
public:
    /// Adopts `fd`, which must be a connected (or connecting) TCP socket; changes nothing about it.
    explicit TcpStream(OwnedFd fd) noexcept : SocketBase(std::move(fd)) {}
    /// Adopts `fd` (as OwnedFd::from_raw_fd: throws std::invalid_argument if negative).
    static TcpStream from_raw_fd(native_handle_type fd);

    /// Connects to `addr`, blocking until connected; the stream is in blocking mode. Throws
    /// std::system_error ("connect <addr>"), e.g. std::errc::connection_refused.
    static TcpStream connect(const SocketAddr& addr);
    /// Starts a connection to `addr` without waiting: returns a non-blocking stream whose
    /// connection may still be in progress. The stream becomes writable when the attempt is
    /// over; take_error() then tells whether it failed. Throws std::system_error ("connect
    /// <addr>") only for errors known at once (no socket, bad address, ...).
    static TcpStream connect_nonblocking(const SocketAddr& addr);

    /// Reads up to buf.size() bytes; returns how many, 0 at end of stream (or, at once, for an
    /// empty buffer). Blocks until data is available in blocking mode. Throws std::system_error
    /// ("read"), e.g. std::errc::connection_reset.
    std::size_t read(std::span<std::byte> buf);
    /// Writes up to buf.size() bytes (possibly fewer); returns how many. Blocks until there is
    /// space in blocking mode. Never raises SIGPIPE: a closed peer gives std::system_error
    /// ("write") equal to std::errc::broken_pipe or std::errc::connection_reset.
    std::size_t write(std::span<const std::byte> buf);
    /// As read(), but leaves the data in the socket (MSG_PEEK): the next read returns it again.
    std::size_t peek(std::span<std::byte> buf);

    /// Shuts down one or both directions. Throws std::system_error ("shutdown"), e.g.
    /// std::errc::not_connected.
    void shutdown(Shutdown how);

    /// The remote address. Throws std::system_error ("getpeername"), e.g. not_connected.
    SocketAddr peer_addr() const;
    /// The local address. Throws std::system_error ("getsockname").
    SocketAddr local_addr() const;

    /// Sets TCP_NODELAY (disables Nagle's algorithm when true). Throws std::system_error.
    void set_nodelay(bool nodelay);
    /// Whether TCP_NODELAY is set. Throws std::system_error.
    bool nodelay() const;
    /// Sets IP_TTL (IPv4) or IPV6_UNICAST_HOPS (IPv6). Throws std::invalid_argument above 255,
    /// std::system_error ("setsockopt(IP_TTL, 0)") for what the OS refuses (0 on IPv4).
    void set_ttl(std::uint32_t ttl);
    /// The IP_TTL / IPV6_UNICAST_HOPS value. Throws std::system_error.
    std::uint32_t ttl() const;
};

/// A listening TCP socket (Rust's std::net::TcpListener).
class ASYNC_IO_API TcpListener : public detail::SocketBase {
public:
    /// Adopts `fd`, which must be a listening TCP socket; changes nothing about it.
    explicit TcpListener(OwnedFd fd) noexcept : SocketBase(std::move(fd)) {}
    /// Adopts `fd` (as OwnedFd::from_raw_fd: throws std::invalid_argument if negative).
    static TcpListener from_raw_fd(native_handle_type fd);

    /// Creates a socket bound to `addr` (port 0 picks a free port: see local_addr()) and
    /// listening, with SO_REUSEADDR as Rust's std sets it, in blocking mode. An IPv6 address
    /// keeps the OS default for IPV6_V6ONLY. Throws std::system_error ("bind <addr>"), e.g.
    /// std::errc::address_in_use, std::errc::address_not_available.
    static TcpListener bind(const SocketAddr& addr);

    /// Accepts a connection: returns the new stream (blocking mode, close-on-exec) and the
    /// peer's address. Blocks until a connection arrives in blocking mode. Throws
    /// std::system_error ("accept"); as Rust's std, transient errors such as
    /// std::errc::connection_aborted are reported, not skipped.
    std::pair<TcpStream, SocketAddr> accept();
    /// As accept(), but returns std::nullopt where accept() would throw
    /// std::errc::operation_would_block (a non-blocking listener with nothing pending). The new
    /// stream is non-blocking when `nonblocking` is true (set by accept4 itself, no extra call),
    /// blocking otherwise. Other errors throw as accept().
    std::optional<std::pair<TcpStream, SocketAddr>> try_accept(bool nonblocking = false);

    /// The local address (with the real port after binding port 0). Throws std::system_error.
    SocketAddr local_addr() const;
    /// Sets IP_TTL (IPv4) or IPV6_UNICAST_HOPS (IPv6) for accepted streams. Throws as
    /// TcpStream::set_ttl.
    void set_ttl(std::uint32_t ttl);
    /// The IP_TTL / IPV6_UNICAST_HOPS value. Throws std::system_error.
    std::uint32_t ttl() const;
};

// ---- UDP ----------------------------------------------------------------------------------

/// A UDP socket (Rust's std::net::UdpSocket).
class ASYNC_IO_API UdpSocket : public detail::SocketBase {
public:
    /// Adopts `fd`, which must be a UDP socket; changes nothing about it.
    explicit UdpSocket(OwnedFd fd) noexcept : SocketBase(std::move(fd)) {}
    /// Adopts `fd` (as OwnedFd::from_raw_fd: throws std::invalid_argument if negative).
    static UdpSocket from_raw_fd(native_handle_type fd);

    /// Creates a socket bound to `addr` (port 0 picks a free port), blocking mode. Throws
    /// std::system_error ("bind <addr>").
    static UdpSocket bind(const SocketAddr& addr);

    /// Sets the default peer: send()/recv() use it, and datagrams from elsewhere are dropped.
    /// Does not block. Throws std::system_error ("connect <addr>").
    void connect(const SocketAddr& addr);

    /// Sends one datagram with `buf` to `addr`; returns the bytes sent (all of them). Blocks
    /// while the send buffer is full in blocking mode. Throws std::system_error ("send_to
    /// <addr>"), e.g. std::errc::message_size for a datagram too large.
    std::size_t send_to(std::span<const std::byte> buf, const SocketAddr& addr);
    /// Receives one datagram into `buf` (the excess of a larger one is discarded) and returns
    /// its size and sender. Blocks until one arrives in blocking mode. Throws std::system_error
    /// ("recv_from"); after connect(), possibly std::errc::connection_refused reported by ICMP.
    std::pair<std::size_t, SocketAddr> recv_from(std::span<std::byte> buf);
    /// As recv_from(), but leaves the datagram queued (MSG_PEEK).
    std::pair<std::size_t, SocketAddr> peek_from(std::span<std::byte> buf);

    /// Sends one datagram to the connected peer. Throws std::system_error ("send"), e.g.
    /// std::errc::destination_address_required when not connected.
    std::size_t send(std::span<const std::byte> buf);
    /// Receives one datagram from the connected peer; returns its size. Throws
    /// std::system_error ("recv").
    std::size_t recv(std::span<std::byte> buf);
    /// As recv(), but leaves the datagram queued (MSG_PEEK).
    std::size_t peek(std::span<std::byte> buf);

    /// The local address. Throws std::system_error ("getsockname").
    SocketAddr local_addr() const;
    /// The connected peer's address. Throws std::system_error ("getpeername"), not_connected
    /// when connect() was not called.
    SocketAddr peer_addr() const;

    /// Sets SO_BROADCAST (permission to send to broadcast addresses). Throws std::system_error.
    void set_broadcast(bool broadcast);
    /// Whether SO_BROADCAST is set. Throws std::system_error.
    bool broadcast() const;
    /// Sets IP_TTL (IPv4) or IPV6_UNICAST_HOPS (IPv6). Throws std::invalid_argument above 255,
    /// std::system_error ("setsockopt(IP_TTL, 0)") for what the OS refuses (0 on IPv4).
    void set_ttl(std::uint32_t ttl);
    /// The IP_TTL / IPV6_UNICAST_HOPS value. Throws std::system_error.
    std::uint32_t ttl() const;
};

// ---- Unix-domain sockets ------------------------------------------------------------------
// Paths are given as std::string_view (a std::filesystem::path converts with .native()); every
// function taking a path throws std::invalid_argument for a path UnixSocketAddr::from_pathname
// rejects (empty, NUL inside, longer than UnixSocketAddr::max_path_length()).

/// A Unix-domain stream connection (Rust's std::os::unix::net::UnixStream).
class ASYNC_IO_API UnixStream : public detail::SocketBase {
public:
    /// Adopts `fd`, which must be a Unix-domain stream socket; changes nothing about it.
    explicit UnixStream(OwnedFd fd) noexcept : SocketBase(std::move(fd)) {}
    /// Adopts `fd` (as OwnedFd::from_raw_fd: throws std::invalid_argument if negative).
    static UnixStream from_raw_fd(native_handle_type fd);

    /// Connects to the listener at `path`, blocking; the stream is in blocking mode. Throws
    /// std::system_error ("connect <path>"), e.g. std::errc::no_such_file_or_directory,
    /// std::errc::connection_refused.
    static UnixStream connect(std::string_view path);
    /// Connects to `addr` (a path or an abstract name).
    static UnixStream connect(const UnixSocketAddr& addr);
    /// Starts a connection without waiting: returns a non-blocking stream. When the listener's
    /// backlog is full the connection is still pending (EAGAIN, treated as in progress, as
    /// async-io does); it is over when the stream is writable, and then peer_addr() throws
    /// std::errc::not_connected if it failed (Linux may report writable on failure; take_error()
    /// alone is not enough). Throws std::system_error ("connect <addr>") for errors known at once.
    static UnixStream connect_nonblocking(const UnixSocketAddr& addr);
    /// connect_nonblocking(UnixSocketAddr::from_pathname(path)).
    static UnixStream connect_nonblocking(std::string_view path);

    /// A connected pair of streams (socketpair), both blocking and close-on-exec. Throws
    /// std::system_error ("socketpair").
    static std::pair<UnixStream, UnixStream> pair();

    /// As TcpStream::read: up to buf.size() bytes, 0 at end of stream (or for an empty buffer).
    std::size_t read(std::span<std::byte> buf);
    /// As TcpStream::write; never raises SIGPIPE (std::errc::broken_pipe instead).
    std::size_t write(std::span<const std::byte> buf);
    /// As read(), leaving the data queued (MSG_PEEK).
    std::size_t peek(std::span<std::byte> buf);
    /// Shuts down one or both directions. Throws std::system_error ("shutdown").
    void shutdown(Shutdown how);

    /// The local address (unnamed unless bound). Throws std::system_error ("getsockname").
    UnixSocketAddr local_addr() const;
    /// The peer's address. Throws std::system_error ("getpeername").
    UnixSocketAddr peer_addr() const;
};

/// A listening Unix-domain stream socket (Rust's std::os::unix::net::UnixListener).
class ASYNC_IO_API UnixListener : public detail::SocketBase {
public:
    /// Adopts `fd`, which must be a listening Unix-domain stream socket.
    explicit UnixListener(OwnedFd fd) noexcept : SocketBase(std::move(fd)) {}
    /// Adopts `fd` (as OwnedFd::from_raw_fd: throws std::invalid_argument if negative).
    static UnixListener from_raw_fd(native_handle_type fd);

    /// Creates the socket file `path` and listens on it, blocking mode. The file is not removed
    /// on destruction (as in Rust). Throws std::system_error ("bind <path>"), e.g.
    /// std::errc::address_in_use when the file exists.
    static UnixListener bind(std::string_view path);
    /// Binds to `addr` (a path or an abstract name) and listens.
    static UnixListener bind(const UnixSocketAddr& addr);

    /// Accepts a connection: the new stream (blocking, close-on-exec) and the peer's address
    /// (usually unnamed). Blocks in blocking mode. Throws std::system_error ("accept").
    std::pair<UnixStream, UnixSocketAddr> accept();
    /// As TcpListener::try_accept: std::nullopt instead of would-block; the new stream is
    /// non-blocking when `nonblocking` is true.
    std::optional<std::pair<UnixStream, UnixSocketAddr>> try_accept(bool nonblocking = false);

    /// The address it listens on. Throws std::system_error ("getsockname").
    UnixSocketAddr local_addr() const;
};

/// A Unix-domain datagram socket (Rust's std::os::unix::net::UnixDatagram).
class ASYNC_IO_API UnixDatagram : public detail::SocketBase {
public:
    /// Adopts `fd`, which must be a Unix-domain datagram socket.
    explicit UnixDatagram(OwnedFd fd) noexcept : SocketBase(std::move(fd)) {}
    /// Adopts `fd` (as OwnedFd::from_raw_fd: throws std::invalid_argument if negative).
    static UnixDatagram from_raw_fd(native_handle_type fd);

    /// A socket bound to the new socket file `path` (blocking mode). Throws std::system_error
    /// ("bind <path>").
    static UnixDatagram bind(std::string_view path);
    /// A socket bound to `addr` (a path or an abstract name).
    static UnixDatagram bind(const UnixSocketAddr& addr);
    /// A socket bound to no address: it can send_to() but gets no replies unless connected
    /// or paired. Throws std::system_error ("socket").
    static UnixDatagram unbound();
    /// A connected pair (socketpair), both blocking. Throws std::system_error ("socketpair").
    static std::pair<UnixDatagram, UnixDatagram> pair();

    /// Sets the default peer for send()/recv(). Throws std::system_error ("connect <path>"),
    /// e.g. std::errc::connection_refused when nothing is bound there.
    void connect(std::string_view path);
    /// Sets the default peer to `addr`.
    void connect(const UnixSocketAddr& addr);

    /// Sends one datagram to `path`; returns the bytes sent. Blocks while the receiver's queue
    /// is full in blocking mode. Throws std::system_error ("send_to <path>").
    std::size_t send_to(std::span<const std::byte> buf, std::string_view path);
    /// Sends one datagram to `addr`.
    std::size_t send_to(std::span<const std::byte> buf, const UnixSocketAddr& addr);
    /// Receives one datagram (the excess beyond buf.size() is discarded); returns its size and
    /// sender (unnamed if the sender is not bound). Throws std::system_error ("recv_from").
    std::pair<std::size_t, UnixSocketAddr> recv_from(std::span<std::byte> buf);
    /// As recv_from(), leaving the datagram queued (MSG_PEEK).
    std::pair<std::size_t, UnixSocketAddr> peek_from(std::span<std::byte> buf);

    /// Sends one datagram to the connected peer. Throws std::system_error ("send"); never
    /// raises SIGPIPE.
    std::size_t send(std::span<const std::byte> buf);
    /// Receives one datagram; returns its size. Throws std::system_error ("recv").
    std::size_t recv(std::span<std::byte> buf);
    /// As recv(), leaving the datagram queued (MSG_PEEK).
    std::size_t peek(std::span<std::byte> buf);
    /// Shuts down one or both directions. Throws std::system_error ("shutdown").
    void shutdown(Shutdown how);

    /// The local address (unnamed unless bound). Throws std::system_error ("getsockname").
    UnixSocketAddr local_addr() const;
    /// The connected peer's address. Throws std::system_error ("getpeername").
    UnixSocketAddr peer_addr() const;
};

// ---- name resolution ----------------------------------------------------------------------

/// The error category of resolve()'s getaddrinfo failures: values are the EAI_* codes, messages
/// gai_strerror's. (EAI_SYSTEM is not reported in it: the errno is, in std::system_category.)
ASYNC_IO_API const std::error_category& resolve_category() noexcept;

/// Resolves `host` (a name such as "localhost", or a numeric IPv4/IPv6 address) with
/// getaddrinfo and returns every address found, with `port`, in the resolver's order, without
/// duplicates. Blocks (possibly for seconds, on DNS); thread-safe, so it may run on a helper
/// thread. Throws std::system_error with a message naming the call, e.g.
/// `resolve("nonexistent.invalid"): Name or service not known`, whose code is in
/// resolve_category() (or std::system_category() for a system error). Throws
/// std::invalid_argument, before any lookup, for what cannot be a host: an empty string, a NUL
/// byte, "host:port" ("127.0.0.1:80"), an IPv6 address in brackets ("[::1]") or another text
/// with ':' that is not an IPv6 address; the message quotes `host` and says what is wrong.
ASYNC_IO_API std::vector<SocketAddr> resolve(std::string_view host, std::uint16_t port);

}  // namespace async_io::net

template <>
struct std::hash<async_io::net::SocketAddr> {
    std::size_t operator()(const async_io::net::SocketAddr& addr) const noexcept {
        return addr.hash();
    }
};
