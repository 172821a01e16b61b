// Bad input, table-driven: every public entry point that takes input from outside the program
// (addresses, paths, host names, durations and deadlines, fds, buffer sizes, socket options)
// is called with bad or borderline values. The contract each row guards (DESIGN.md "Errors"):
//
//  - the call ends with a defined result, never a crash or a hang: either a std::invalid_argument
//    (input rejected before any system call) or a std::system_error whose code compares equal to
//    the std::errc of the OS's verdict, or, for borderline input the library defines (a
//    zero-length read, a negative duration), that defined value;
//  - the message names the problem: the operation, and the bad input (address, path, fd, value)
//    or what is wrong with it; it stays short however long the input was;
//  - try_parse agrees with parse (nullopt exactly where parse throws);
//  - nothing else is disturbed: after every row, on the same reactor and the same executor, a
//    Timer fires (never early) and a TCP round trip with an echo server task works, while an
//    interval timer task keeps ticking through the whole table.
//
// The table is printed (entry point, input, result) as the test runs. Rows whose answer depends
// on the backend (epoll refuses regular files, poll() accepts them) say so.
//
// Two behaviours have test cases of their own at the end: zero-length stream operations when the
// readiness cache says "not ready", and (hidden until include/async_io/timer.hpp is fixed) an
// interval timer that starts before the clock's epoch.
#include "catch.hpp"
#include "support.hpp"

#include <async_io/async.hpp>

#include "poller/poller.hpp"  // the default backend's name: only epoll refuses regular files

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

using namespace async_io;
using namespace async_io::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// ---- fixtures ----------------------------------------------------------------------------------

/// A fresh directory for socket files, removed with its contents at the end of the scope.

/// What every row may use. Lives for the whole table.
struct Env {
    TempDir dir;
    std::string backend;  // the default poller's name
    int next_file = 0;    // for fresh file names
    std::string fresh(std::string_view stem) {
        return dir.file(std::string(stem) + std::to_string(next_file++));
    }
};

net::SocketAddr localhost() { return net::SocketAddr::parse("127.0.0.1:0"); }

/// An address nothing listens on: a port that was just bound and released.
net::SocketAddr refused_addr() {
    auto listener = net::TcpListener::bind(localhost());
    return listener.local_addr();
}

/// A connected TCP pair on the current reactor: {accepted end, connecting end}.
Task<std::pair<Async<net::TcpStream>, Async<net::TcpStream>>> tcp_pair() {
    auto listener = Async<net::TcpListener>::bind(localhost());
    auto both =
        co_await when_all(listener.accept(), Async<net::TcpStream>::connect(listener.get_ref().local_addr()));
    co_return std::pair{std::move(std::get<0>(both).first), std::move(std::get<1>(both))};
}

/// An fd number far above the ones in use, closed (it was open a moment ago).
int closed_fd() {
    auto ends = async_io::pipe();
    const int fd = ::fcntl(ends.first.native_handle(), F_DUPFD_CLOEXEC, 900);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "fcntl(F_DUPFD)");
    ::close(fd);
    return fd;
}

OwnedFd open_fd(const std::string& path, int flags) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
    return OwnedFd::from_raw_fd(fd);
}

std::span<const std::byte> bytes(std::string_view s) { return as_bytes(s); }

/// Printable form of a row's input: control and non-ASCII bytes as \xHH, long text cut short.
std::string printable(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (char c : s.substr(0, 60)) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f) {
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        } else {
            out += c;
        }
    }
    if (s.size() > 60) out += "...(" + std::to_string(s.size()) + " bytes)";
    return out;
}

// ---- the table ---------------------------------------------------------------------------------

enum class Expect : std::uint8_t { invalid_argument, system_error, value };

struct Row;
/// A row's call: performs the entry point on `row.input` and yields a description of the value
/// it returned (compared with Row::value), or throws.
using Call = std::function<Task<std::string>(const Row&, Env&)>;

struct Row {
    std::string entry;  // the entry point as a user calls it
    std::string input;  // the input under test (bytes, possibly binary)
    Expect expect;
    std::error_condition errc{};        // Expect::system_error: what the code compares equal to
    std::vector<std::string> mentions;  // substrings the message must contain
    std::string value;                  // Expect::value: the described result
    Call call;
};

Row rejects(std::string entry, std::string input, std::vector<std::string> mentions, Call call) {
    return Row{std::move(entry), std::move(input), Expect::invalid_argument, {}, std::move(mentions), {},
               std::move(call)};
}

Row fails(std::string entry, std::string input, std::errc errc, std::vector<std::string> mentions,
          Call call) {
    return Row{std::move(entry),     std::move(input),
               Expect::system_error, std::make_error_condition(errc),
               std::move(mentions),  {},
               std::move(call)};
}

Row gives(std::string entry, std::string input, std::string value, Call call) {
    return Row{std::move(entry), std::move(input), Expect::value, {}, {}, std::move(value), std::move(call)};
}

/// SocketAddr::parse of `text`: rejected with a message quoting it (as \xHH where needed) and
/// naming the reason; try_parse agrees.
Row parse_rejects(std::string text, std::vector<std::string> mentions) {
    mentions.insert(mentions.begin(), "SocketAddr::parse(");
    return rejects("net::SocketAddr::parse", std::move(text), std::move(mentions),
                   [](const Row& row, Env&) -> Task<std::string> {
                       if (net::SocketAddr::try_parse(row.input)) co_return "try_parse accepted it";
                       co_return net::SocketAddr::parse(row.input).to_string();
                   });
}

/// Whether this host lets a socket bind an address it does not have (net.ipv4.ip_nonlocal_bind).
bool nonlocal_bind_allowed() {
    std::FILE* f = std::fopen("/proc/sys/net/ipv4/ip_nonlocal_bind", "r");
    if (f == nullptr) return false;
    const int c = std::fgetc(f);
    std::fclose(f);
    return c == '1';
}

/// A zero-size buffer for the reads.
std::span<std::byte> no_bytes() { return {}; }

std::vector<Row> make_table(const Env& env) {
    const bool epoll = env.backend == "epoll";
    const std::string long_text(100'000, '1');
    std::vector<Row> t;

    // -- SocketAddr::parse / try_parse --------------------------------------------------------
    t.push_back(parse_rejects("", {"empty"}));
    t.push_back(parse_rejects("127.0.0.1", {"\"127.0.0.1\"", "port"}));
    t.push_back(parse_rejects("1.2.3.4:65536", {"\"1.2.3.4:65536\"", "port out of range"}));
    t.push_back(parse_rejects("1.2.3.4:-1", {"port is not a decimal number"}));
    t.push_back(parse_rejects("1.2.3.4:", {"missing port number"}));
    t.push_back(parse_rejects("::1:80", {"brackets"}));
    t.push_back(parse_rejects("[::1", {"']'"}));
    t.push_back(parse_rejects("[]:80", {"missing IPv6 address"}));
    t.push_back(parse_rejects("[1.2.3.4]:80", {"invalid IPv6 address"}));
    t.push_back(parse_rejects("[fe80::1%4294967296]:80", {"scope id out of range"}));
    t.push_back(parse_rejects("[fe80::1%no_such_if0]:80", {"unknown network interface"}));
    t.push_back(
        parse_rejects("[fe80::1%" + std::string(40, 'i') + "]:80", {"invalid network interface name"}));
    t.push_back(parse_rejects("[fe80::1%]:80", {"empty zone"}));
    t.push_back(parse_rejects("localhost:80", {"host names need resolve()"}));
    t.push_back(parse_rejects(long_text + ":80", {"(100003 bytes)"}));
    t.push_back(parse_rejects(std::string("1.2.3.4\0:80", 11), {"\\x00"}));
    t.push_back(parse_rejects("1.2.3.4:80\n", {"\\x0a"}));

    // -- UnixSocketAddr -----------------------------------------------------------------------
    t.push_back(rejects("net::UnixSocketAddr::from_pathname", "", {"path is empty"},
                        [](const Row& row, Env&) -> Task<std::string> {
                            co_return net::UnixSocketAddr::from_pathname(row.input).to_string();
                        }));
    t.push_back(rejects("net::UnixSocketAddr::from_pathname", std::string(108, 'p'),
                        {"108 bytes long", "limit is 107"}, [](const Row& row, Env&) -> Task<std::string> {
                            co_return net::UnixSocketAddr::from_pathname(row.input).to_string();
                        }));
    t.push_back(rejects("net::UnixSocketAddr::from_pathname", std::string(1 << 20, 'p'),
                        {"(1048576 bytes)", "limit is 107"}, [](const Row& row, Env&) -> Task<std::string> {
                            co_return net::UnixSocketAddr::from_pathname(row.input).to_string();
                        }));
    t.push_back(rejects("net::UnixSocketAddr::from_pathname", std::string("/tmp/a\0b", 8), {"NUL", "\\x00"},
                        [](const Row& row, Env&) -> Task<std::string> {
                            co_return net::UnixSocketAddr::from_pathname(row.input).to_string();
                        }));
    t.push_back(rejects("net::UnixSocketAddr::from_abstract_name", std::string(108, 'a'),
                        {"abstract", "108 bytes long"}, [](const Row& row, Env&) -> Task<std::string> {
                            co_return net::UnixSocketAddr::from_abstract_name(row.input).to_string();
                        }));
#if defined(__linux__)
    t.push_back(gives("net::UnixSocketAddr::from_abstract_name", "", "abstract \"@\"",
                      [](const Row& row, Env&) -> Task<std::string> {
                          const auto a = net::UnixSocketAddr::from_abstract_name(row.input);
                          co_return std::string(a.is_abstract() ? "abstract " : "not abstract ") + '"' +
                              a.to_string() + '"';
                      }));
#endif

    // -- Unix-domain sockets ------------------------------------------------------------------
    t.push_back(rejects("Async<net::UnixListener>::bind", "", {"path is empty"},
                        [](const Row& row, Env&) -> Task<std::string> {
                            (void)Async<net::UnixListener>::bind(row.input);
                            co_return "bound";
                        }));
    t.push_back(fails("Async<net::UnixListener>::bind", "<dir>/missing/sock",
                      std::errc::no_such_file_or_directory, {"bind ", "/missing/sock"},
                      [](const Row&, Env& env) -> Task<std::string> {
                          (void)Async<net::UnixListener>::bind(env.dir.file("missing/sock"));
                          co_return "bound";
                      }));
    t.push_back(fails("Async<net::UnixListener>::bind", "<a path already bound>", std::errc::address_in_use,
                      {"bind ", "taken"}, [](const Row&, Env& env) -> Task<std::string> {
                          const std::string path = env.fresh("taken");
                          auto first = Async<net::UnixListener>::bind(path);
                          (void)Async<net::UnixListener>::bind(path);
                          co_return "bound twice";
                      }));
    t.push_back(fails("Async<net::UnixStream>::connect", "<dir>/nobody", std::errc::no_such_file_or_directory,
                      {"connect ", "/nobody"}, [](const Row&, Env& env) -> Task<std::string> {
                          (void)co_await Async<net::UnixStream>::connect(env.dir.file("nobody"));
                          co_return "connected";
                      }));
    t.push_back(fails("Async<net::UnixStream>::connect", "<a regular file>", std::errc::connection_refused,
                      {"connect ", "plain_file"}, [](const Row&, Env& env) -> Task<std::string> {
                          const std::string path = env.fresh("plain_file");
                          open_fd(path, O_RDWR | O_CREAT);
                          (void)co_await Async<net::UnixStream>::connect(path);
                          co_return "connected";
                      }));
    t.push_back(rejects("Async<net::UnixStream>::connect", std::string("/tmp/x\0y", 8), {"NUL"},
                        [](const Row& row, Env&) -> Task<std::string> {
                            (void)co_await Async<net::UnixStream>::connect(row.input);
                            co_return "connected";
                        }));
    t.push_back(rejects("Async<net::UnixStream>::connect", "/tmp/" + std::string(200, 'l'), {"limit is 107"},
                        [](const Row& row, Env&) -> Task<std::string> {
                            (void)co_await Async<net::UnixStream>::connect(row.input);
                            co_return "connected";
                        }));
    t.push_back(fails("Async<net::UnixDatagram>::send_to", "<dir>/nobody",
                      std::errc::no_such_file_or_directory, {"send_to ", "/nobody"},
                      [](const Row&, Env& env) -> Task<std::string> {
                          auto sock = Async<net::UnixDatagram>::unbound();
                          const auto to = net::UnixSocketAddr::from_pathname(env.dir.file("nobody"));
                          const std::size_t n = co_await sock.send_to(bytes("hi"), to);
                          co_return std::to_string(n);
                      }));
    t.push_back(fails("Async<net::UnixDatagram>::send", "a 4 MiB datagram", std::errc::message_size, {"send"},
                      [](const Row&, Env&) -> Task<std::string> {
                          auto ends = Async<net::UnixDatagram>::pair();
                          const std::vector<std::byte> huge(4 << 20);
                          const std::size_t n = co_await ends.first.send(huge);
                          co_return std::to_string(n);
                      }));
    t.push_back(fails("net::UnixDatagram::connect", "<dir>/nobody", std::errc::no_such_file_or_directory,
                      {"connect ", "/nobody"}, [](const Row&, Env& env) -> Task<std::string> {
                          auto sock = net::UnixDatagram::unbound();
                          sock.connect(env.dir.file("nobody"));
                          co_return "connected";
                      }));
    t.push_back(rejects("net::UnixDatagram::send_to", "", {"path is empty"},
                        [](const Row& row, Env&) -> Task<std::string> {
                            auto sock = net::UnixDatagram::unbound();
                            co_return std::to_string(sock.send_to(bytes("hi"), row.input));
                        }));

    // -- TCP ----------------------------------------------------------------------------------
    t.push_back(fails("Async<net::TcpListener>::bind", "<a port in use>", std::errc::address_in_use,
                      {"bind 127.0.0.1:"}, [](const Row&, Env&) -> Task<std::string> {
                          auto first = Async<net::TcpListener>::bind(localhost());
                          (void)Async<net::TcpListener>::bind(first.get_ref().local_addr());
                          co_return "bound twice";
                      }));
    if (!nonlocal_bind_allowed()) {
        t.push_back(fails("Async<net::TcpListener>::bind", "192.0.2.1:0", std::errc::address_not_available,
                          {"bind 192.0.2.1:0"}, [](const Row& row, Env&) -> Task<std::string> {
                              (void)Async<net::TcpListener>::bind(net::SocketAddr::parse(row.input));
                              co_return "bound";
                          }));
    }
    t.push_back(fails("Async<net::TcpStream>::connect", "<a closed port>", std::errc::connection_refused,
                      {"connect 127.0.0.1:"}, [](const Row&, Env&) -> Task<std::string> {
                          (void)co_await Async<net::TcpStream>::connect(refused_addr());
                          co_return "connected";
                      }));
    t.push_back(fails("Async<net::TcpStream>::connect", "127.0.0.1:0", std::errc::connection_refused,
                      {"connect 127.0.0.1:0"}, [](const Row& row, Env&) -> Task<std::string> {
                          (void)co_await Async<net::TcpStream>::connect(net::SocketAddr::parse(row.input));
                          co_return "connected";
                      }));
    t.push_back(fails("Async<net::TcpStream>::connect", "255.255.255.255:80", std::errc::network_unreachable,
                      {"connect 255.255.255.255:80"}, [](const Row& row, Env&) -> Task<std::string> {
                          (void)co_await Async<net::TcpStream>::connect(net::SocketAddr::parse(row.input));
                          co_return "connected";
                      }));
    t.push_back(fails("net::TcpStream::connect", "<a closed port>", std::errc::connection_refused,
                      {"connect 127.0.0.1:"}, [](const Row&, Env&) -> Task<std::string> {
                          (void)net::TcpStream::connect(refused_addr());
                          co_return "connected";
                      }));
    t.push_back(fails("net::TcpStream::set_ttl", "0", std::errc::invalid_argument, {"setsockopt(IP_TTL, 0)"},
                      [](const Row&, Env&) -> Task<std::string> {
                          auto ends = co_await tcp_pair();
                          ends.second.get_ref().set_ttl(0);
                          co_return "ttl " + std::to_string(ends.second.get_ref().ttl());
                      }));
    t.push_back(rejects("net::TcpStream::set_ttl", "256", {"set_ttl(256)", "at most 255"},
                        [](const Row&, Env&) -> Task<std::string> {
                            auto ends = co_await tcp_pair();
                            ends.second.get_ref().set_ttl(256);
                            co_return "ttl " + std::to_string(ends.second.get_ref().ttl());
                        }));
    t.push_back(rejects("net::TcpListener::set_ttl", "4294967295", {"set_ttl(4294967295)", "at most 255"},
                        [](const Row&, Env&) -> Task<std::string> {
                            auto listener = net::TcpListener::bind(localhost());
                            listener.set_ttl(std::numeric_limits<std::uint32_t>::max());
                            co_return "ttl " + std::to_string(listener.ttl());
                        }));
    t.push_back(fails("net::TcpStream::set_nodelay", "<a pipe's fd>", std::errc::not_a_socket,
                      {"TCP_NODELAY"}, [](const Row&, Env&) -> Task<std::string> {
                          auto ends = async_io::pipe();
                          net::TcpStream not_a_socket(std::move(ends.first));
                          not_a_socket.set_nodelay(true);
                          co_return "set";
                      }));
    t.push_back(fails("net::TcpStream::peer_addr", "<an empty stream>", std::errc::bad_file_descriptor,
                      {"getpeername"}, [](const Row&, Env&) -> Task<std::string> {
                          const net::TcpStream empty{OwnedFd{}};
                          co_return empty.peer_addr().to_string();
                      }));
    t.push_back(fails("net::TcpListener::accept", "<a UDP socket's fd>", std::errc::operation_not_supported,
                      {"accept"}, [](const Row&, Env&) -> Task<std::string> {
                          auto udp = net::UdpSocket::bind(localhost());
                          net::TcpListener listener(OwnedFd::from_raw_fd(udp.release()));
                          (void)listener.accept();
                          co_return "accepted";
                      }));

    // -- UDP ----------------------------------------------------------------------------------
    t.push_back(fails("Async<net::UdpSocket>::send_to", "a 70000-byte datagram", std::errc::message_size,
                      {"send_to 127.0.0.1:"}, [](const Row&, Env&) -> Task<std::string> {
                          auto sock = Async<net::UdpSocket>::bind(localhost());
                          const std::vector<std::byte> huge(70'000);
                          const auto to = sock.get_ref().local_addr();
                          const std::size_t n = co_await sock.send_to(huge, to);
                          co_return std::to_string(n);
                      }));
    t.push_back(fails("Async<net::UdpSocket>::send_to", "127.0.0.1:0", std::errc::invalid_argument,
                      {"send_to 127.0.0.1:0"}, [](const Row& row, Env&) -> Task<std::string> {
                          auto sock = Async<net::UdpSocket>::bind(localhost());
                          const auto to = net::SocketAddr::parse(row.input);
                          const std::size_t n = co_await sock.send_to(bytes("hi"), to);
                          co_return std::to_string(n);
                      }));
    t.push_back(fails("Async<net::UdpSocket>::send_to", "[::1]:9 from an IPv4 socket",
                      std::errc::address_family_not_supported, {"send_to [::1]:9"},
                      [](const Row&, Env&) -> Task<std::string> {
                          auto sock = Async<net::UdpSocket>::bind(localhost());
                          const auto to = net::SocketAddr::parse("[::1]:9");
                          const std::size_t n = co_await sock.send_to(bytes("hi"), to);
                          co_return std::to_string(n);
                      }));
    t.push_back(fails("Async<net::UdpSocket>::send", "<not connected>",
                      std::errc::destination_address_required, {"send"},
                      [](const Row&, Env&) -> Task<std::string> {
                          auto sock = Async<net::UdpSocket>::bind(localhost());
                          const std::size_t n = co_await sock.send(bytes("hi"));
                          co_return std::to_string(n);
                      }));
    t.push_back(fails("Async<net::UdpSocket>::bind", "<a port in use>", std::errc::address_in_use,
                      {"bind 127.0.0.1:"}, [](const Row&, Env&) -> Task<std::string> {
                          auto first = Async<net::UdpSocket>::bind(localhost());
                          (void)Async<net::UdpSocket>::bind(first.get_ref().local_addr());
                          co_return "bound twice";
                      }));
    t.push_back(fails("net::UdpSocket::peer_addr", "<not connected>", std::errc::not_connected,
                      {"getpeername"}, [](const Row&, Env&) -> Task<std::string> {
                          auto sock = net::UdpSocket::bind(localhost());
                          co_return sock.peer_addr().to_string();
                      }));

    // -- file descriptors ---------------------------------------------------------------------
    t.push_back(rejects("OwnedFd::from_raw_fd", "-1", {"invalid file descriptor -1"},
                        [](const Row&, Env&) -> Task<std::string> {
                            (void)OwnedFd::from_raw_fd(-1).release();
                            co_return "adopted";
                        }));
    t.push_back(
        rejects("net::TcpStream::from_raw_fd", "-5", {"-5"}, [](const Row&, Env&) -> Task<std::string> {
            (void)net::TcpStream::from_raw_fd(-5).release();
            co_return "adopted";
        }));
    t.push_back(fails("Async<OwnedFd>", "<an empty OwnedFd>", std::errc::bad_file_descriptor,
                      {"Async", "owns no file descriptor"}, [](const Row&, Env&) -> Task<std::string> {
                          Async<OwnedFd> a{OwnedFd{}};
                          co_return "registered";
                      }));
    t.push_back(fails("Async<net::TcpStream>", "<a moved-from stream>", std::errc::bad_file_descriptor,
                      {"Async", "owns no file descriptor"}, [](const Row&, Env&) -> Task<std::string> {
                          auto ends = co_await tcp_pair();
                          net::TcpStream taken = std::move(ends.first).into_inner();
                          net::TcpStream moved = std::move(taken);
                          Async<net::TcpStream> a{std::move(taken)};  // NOLINT(bugprone-use-after-move)
                          co_return "registered";
                      }));
    t.push_back(fails("Async<OwnedFd>", "<a closed fd>", std::errc::bad_file_descriptor,
                      {"Async", "fd 9", "not an open file descriptor"},
                      [](const Row&, Env&) -> Task<std::string> {
                          Async<OwnedFd> a{OwnedFd::from_raw_fd(closed_fd())};
                          co_return "registered";
                      }));
    if (epoll) {
        t.push_back(fails("Async<OwnedFd>", "<a regular file>", std::errc::operation_not_permitted,
                          {"Async", "regular files cannot be polled"},
                          [](const Row&, Env& env) -> Task<std::string> {
                              Async<OwnedFd> a{open_fd(env.fresh("regular"), O_RDWR | O_CREAT)};
                              co_return "registered";
                          }));
        t.push_back(fails("Async<OwnedFd>", "<a directory>", std::errc::operation_not_permitted,
                          {"Async", "a directory cannot be polled"},
                          [](const Row&, Env& env) -> Task<std::string> {
                              Async<OwnedFd> a{open_fd(env.dir.file(""), O_RDONLY | O_DIRECTORY)};
                              co_return "registered";
                          }));
        t.push_back(fails("Async<OwnedFd>", "/dev/null", std::errc::operation_not_permitted,
                          {"Async", "character device cannot be polled"},
                          [](const Row& row, Env&) -> Task<std::string> {
                              Async<OwnedFd> a{open_fd(row.input, O_RDWR)};
                              co_return "registered";
                          }));
    } else {
        // poll() (and the polling crate's other backends) accept regular files: always ready.
        t.push_back(gives("Async<OwnedFd>", "<a regular file>", "read \"data\"",
                          [](const Row&, Env& env) -> Task<std::string> {
                              const std::string path = env.fresh("regular");
                              {
                                  auto w = open_fd(path, O_RDWR | O_CREAT);
                                  (void)w.write(bytes("data"));
                              }
                              Async<OwnedFd> a{open_fd(path, O_RDONLY)};
                              std::string got;
                              (void)co_await a.read_to_end(got);
                              co_return "read \"" + got + '"';
                          }));
    }
    t.push_back(fails("Async<OwnedFd>", "<an fd another Async holds>", std::errc::file_exists,
                      {"Async", "already registered"}, [](const Row&, Env&) -> Task<std::string> {
                          auto ends = async_io::pipe();
                          Async<OwnedFd> first(std::move(ends.first));
                          const int fd = first.get_ref().native_handle();
                          std::exception_ptr refused;
                          try {
                              Async<OwnedFd> second{OwnedFd::from_raw_fd(fd)};
                          } catch (const std::system_error&) {
                              refused = std::current_exception();
                          }
                          if (!refused) co_return "registered twice";
                          // The first still owns the fd and is still registered: it reads.
                          if (::fcntl(fd, F_GETFD) == -1) co_return "the fd was closed";
                          Async<OwnedFd> writer(std::move(ends.second));
                          co_await writer.write_all(bytes("x"));
                          std::array<std::byte, 4> buf{};
                          const std::size_t n = co_await first.read(buf);
                          if (n != 1) co_return "the first Async read " + std::to_string(n) + " bytes";
                          std::rethrow_exception(refused);
                      }));
    t.push_back(fails("OwnedFd::close", "<an fd closed behind its back>", std::errc::bad_file_descriptor,
                      {"close"}, [](const Row&, Env&) -> Task<std::string> {
                          auto owned = OwnedFd::from_raw_fd(closed_fd());
                          owned.close();
                          co_return "closed";
                      }));

    // -- buffer sizes: zero-length operations have a defined result at once --------------------
    t.push_back(gives("Async<net::TcpStream>::read", "an empty buffer", "0",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto ends = co_await tcp_pair();
                          const std::size_t n = co_await ends.first.read(no_bytes());
                          co_return std::to_string(n);
                      }));
    t.push_back(gives("Async<net::TcpStream>::write", "an empty buffer", "0",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto ends = co_await tcp_pair();
                          const std::size_t n = co_await ends.first.write(std::span<const std::byte>{});
                          co_return std::to_string(n);
                      }));
    t.push_back(gives("Async<net::TcpStream>::read_exact + write_all", "empty buffers", "done",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto ends = co_await tcp_pair();
                          co_await ends.first.write_all(std::span<const std::byte>{});
                          co_await ends.second.read_exact(no_bytes());
                          co_return "done";
                      }));
    t.push_back(gives("Async<net::TcpStream>::peek", "an empty buffer", "0",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto ends = co_await tcp_pair();
                          const std::size_t n = co_await ends.first.peek(no_bytes());
                          co_return std::to_string(n);
                      }));
    t.push_back(gives("net::TcpStream::read (blocking)", "an empty buffer", "0",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto listener = net::TcpListener::bind(localhost());
                          auto client = net::TcpStream::connect(listener.local_addr());
                          co_return std::to_string(client.read(no_bytes()));
                      }));
    t.push_back(gives("net::UnixStream::peek (blocking)", "an empty buffer", "0",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto ends = net::UnixStream::pair();
                          co_return std::to_string(ends.first.peek(no_bytes()));
                      }));
    t.push_back(gives("OwnedFd::read (blocking socket)", "an empty buffer", "0",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto ends = net::UnixStream::pair();
                          auto fd = OwnedFd::from_raw_fd(ends.first.release());
                          co_return std::to_string(fd.read(no_bytes()));
                      }));
    t.push_back(gives("Async<OwnedFd>::read (pipe)", "an empty buffer", "0",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto ends = async_io::pipe();
                          Async<OwnedFd> reader(std::move(ends.first));
                          const std::size_t n = co_await reader.read(no_bytes());
                          co_return std::to_string(n);
                      }));
    t.push_back(gives("Async<net::UdpSocket>::send_to", "an empty datagram", "sent 0, received 0",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto sock = Async<net::UdpSocket>::bind(localhost());
                          const auto self = sock.get_ref().local_addr();
                          const std::size_t sent = co_await sock.send_to(std::span<const std::byte>{}, self);
                          std::array<std::byte, 8> buf{};
                          const auto got = co_await sock.recv_from(buf);
                          co_return "sent " + std::to_string(sent) + ", received " +
                              std::to_string(got.first);
                      }));
    t.push_back(gives("Async<net::UdpSocket>::recv_from", "an empty buffer (5-byte datagram)", "0, consumed",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto sock = Async<net::UdpSocket>::bind(localhost());
                          const auto self = sock.get_ref().local_addr();
                          (void)co_await sock.send_to(bytes("hello"), self);
                          (void)co_await sock.send_to(bytes("next"), self);
                          const auto first = co_await sock.recv_from(no_bytes());
                          std::array<std::byte, 8> buf{};
                          const auto second = co_await sock.recv_from(buf);
                          co_return std::to_string(first.first) +
                              (second.first == 4 ? ", consumed" : ", kept");
                      }));

    // -- durations and deadlines --------------------------------------------------------------
    t.push_back(gives("Timer::after", "-1s", "fired at once", [](const Row&, Env&) -> Task<std::string> {
        const auto before = Clock::now();
        const auto fired = co_await Timer::after(-1s);
        co_return fired <= Clock::now() && fired >= before - 1ms ? "fired at once"
                                                                 : "fired at a strange time";
    }));
    t.push_back(
        gives("Timer::after", "duration::min()", "fired at once", [](const Row&, Env&) -> Task<std::string> {
            const auto fired = co_await Timer::after(Timer::duration::min());
            co_return fired <= Clock::now() ? "fired at once" : "fired late";
        }));
    t.push_back(gives("Timer::after", "hours::max()", "never", [](const Row&, Env&) -> Task<std::string> {
        const auto timer = Timer::after(std::chrono::hours::max());
        co_return timer.will_fire() ? "will fire" : "never";
    }));
    t.push_back(gives("Timer::after", "duration::max()", "never", [](const Row&, Env&) -> Task<std::string> {
        const auto timer = Timer::after(Timer::duration::max());
        co_return timer.will_fire() ? "will fire" : "never";
    }));
    t.push_back(gives("Timer::at", "time_point::min()", "fired at once, at min()",
                      [](const Row&, Env&) -> Task<std::string> {
                          const auto fired = co_await Timer::at(Timer::time_point::min());
                          co_return fired == Timer::time_point::min() ? "fired at once, at min()" : "other";
                      }));
    t.push_back(gives("Timer::at", "time_point::max()", "pending", [](const Row&, Env&) -> Task<std::string> {
        auto outcome = co_await race(Timer::at(Timer::time_point::max()), Timer::after(20ms));
        co_return outcome.index() == 1 ? "pending" : "fired";
    }));
    t.push_back(gives("Timer::interval", "0s", "3 ticks at once, no time between",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto timer = Timer::interval(0s);
                          const auto a = co_await timer;
                          const auto b = co_await timer;
                          const auto c = co_await timer;
                          co_return a == b&& b == c ? "3 ticks at once, no time between" : "ticks moved";
                      }));
    t.push_back(gives("Timer::interval", "-5s", "period 0", [](const Row&, Env&) -> Task<std::string> {
        const auto timer = Timer::interval(-5s);
        co_return timer.period() == Timer::duration::zero() ? "period 0" : "other period";
    }));
    t.push_back(
        gives("Timer::interval", "duration::max()", "never", [](const Row&, Env&) -> Task<std::string> {
            const auto timer = Timer::interval(Timer::duration::max());
            co_return timer.will_fire() ? "will fire" : "never";
        }));
    t.push_back(gives("Timer::interval_at", "now, period duration::max() - 1ns", "one tick, then never",
                      [](const Row&, Env&) -> Task<std::string> {
                          auto timer = Timer::interval_at(Clock::now(), Timer::duration::max() - 1ns);
                          (void)co_await timer;
                          co_return timer.will_fire() ? "ticks again" : "one tick, then never";
                      }));
    t.push_back(
        fails("timeout", "-1s", std::errc::timed_out, {"timeout"}, [](const Row&, Env&) -> Task<std::string> {
            co_await timeout(-1s, Timer::never());
            co_return "completed";
        }));
    t.push_back(fails("timeout", "duration::min()", std::errc::timed_out, {"timeout"},
                      [](const Row&, Env&) -> Task<std::string> {
                          co_await timeout(Timer::duration::min(), Timer::never());
                          co_return "completed";
                      }));
    t.push_back(gives("timeout", "hours::max()", "completed", [](const Row&, Env&) -> Task<std::string> {
        co_await timeout(std::chrono::hours::max(), Timer::after(1ms));
        co_return "completed";
    }));

    // -- name resolution ----------------------------------------------------------------------
    const auto resolve_rejects = [&t](std::string host, std::vector<std::string> mentions) {
        mentions.insert(mentions.begin(), "resolve(");
        t.push_back(rejects("net::resolve", std::move(host), std::move(mentions),
                            [](const Row& row, Env&) -> Task<std::string> {
                                co_return std::to_string(net::resolve(row.input, 80).size()) + " addresses";
                            }));
    };
    resolve_rejects("", {"empty host name"});
    resolve_rejects("127.0.0.1:80", {"\"127.0.0.1:80\"", "host:port"});
    resolve_rejects("[::1]", {"\"[::1]\"", "brackets"});
    resolve_rejects("fe80::zz", {"invalid IPv6 address"});
    resolve_rejects(std::string("local\0host", 10), {"\\x00", "NUL"});
    t.push_back(rejects("net::resolve_async", "example.com:443", {"host:port"},
                        [](const Row& row, Env&) -> Task<std::string> {
                            auto addrs = co_await net::resolve_async(row.input, 0);
                            co_return std::to_string(addrs.size()) + " addresses";
                        }));
    t.push_back(gives("net::resolve", "::1", "[::1]:7", [](const Row& row, Env&) -> Task<std::string> {
        const auto addrs = net::resolve(row.input, 7);
        co_return addrs.size() == 1 ? addrs[0].to_string() : std::to_string(addrs.size()) + " addresses";
    }));
    return t;
}

// ---- running the table -------------------------------------------------------------------------

struct Outcome {
    enum class Kind : std::uint8_t { value, invalid_argument, system_error, other, hang } kind{};
    std::error_code code;
    std::string text;  // the value's description, or the exception's what()
};

const char* kind_name(Outcome::Kind k) {
    switch (k) {
        case Outcome::Kind::value:
            return "value";
        case Outcome::Kind::invalid_argument:
            return "invalid_argument";
        case Outcome::Kind::system_error:
            return "system_error";
        case Outcome::Kind::other:
            return "other exception";
        case Outcome::Kind::hang:
            return "HANG";
    }
    return "?";
}

/// Runs one row's call and reports how it ended (never throws).
Task<Outcome> attempt(const Row& row, Env& env) {
    Outcome o;
    try {
        o.text = co_await row.call(row, env);
        o.kind = Outcome::Kind::value;
    } catch (const std::invalid_argument& e) {
        o.kind = Outcome::Kind::invalid_argument;
        o.text = e.what();
    } catch (const std::system_error& e) {
        o.kind = Outcome::Kind::system_error;
        o.code = e.code();
        o.text = e.what();
    } catch (const std::exception& e) {
        o.kind = Outcome::Kind::other;
        o.text = e.what();
    }
    co_return o;
}

/// What is wrong with `o` as the answer to `row`; empty when it is right.
std::string judge(const Row& row, const Outcome& o) {
    std::string problems;
    const auto expected_kind = row.expect == Expect::invalid_argument ? Outcome::Kind::invalid_argument
                               : row.expect == Expect::system_error   ? Outcome::Kind::system_error
                                                                      : Outcome::Kind::value;
    if (o.kind != expected_kind) {
        problems +=
            std::string("ended with ") + kind_name(o.kind) + ", expected " + kind_name(expected_kind) + "; ";
    } else if (row.expect == Expect::system_error && o.code != row.errc) {
        problems += "code " + o.code.message() + ", expected " + row.errc.message() + "; ";
    } else if (row.expect == Expect::value && o.text != row.value) {
        problems += "value \"" + o.text + "\", expected \"" + row.value + "\"; ";
    }
    if (row.expect != Expect::value) {
        for (const auto& m : row.mentions) {
            if (o.text.find(m) == std::string::npos) problems += "message lacks \"" + m + "\"; ";
        }
        // However long the input, the message stays readable.
        if (o.text.size() > 1024) problems += "message of " + std::to_string(o.text.size()) + " bytes; ";
    }
    if (problems.empty()) return {};
    return row.entry + "(" + printable(row.input) + "): " + problems + "got: " + printable(o.text);
}

// ---- the other tasks that must keep being served ------------------------------------------------

/// Echoes every connection back to its client until the client's EOF; one client at a time.
Task<void> echo_server(Async<net::TcpListener>& listener) {
    for (;;) {
        auto accepted = co_await listener.accept();
        std::array<std::byte, 256> buf{};
        for (;;) {
            const std::size_t n = co_await accepted.first.read(buf);
            if (n == 0) break;
            co_await accepted.first.write_all(std::span(buf).first(n));
        }
    }
}

/// Counts the ticks of a 2 ms interval timer until cancelled.
Task<void> ticker(std::size_t& ticks) {
    auto timer = Timer::interval(2ms);
    for (;;) {
        (void)co_await timer;
        ++ticks;
    }
}

/// A timer fires, not early, and a round trip with the echo server works; "" or what failed.
Task<std::string> still_serving(net::SocketAddr echo, std::string payload) {
    const auto before = Clock::now();
    const auto fired = co_await Timer::after(1ms);
    if (fired < before + 1ms || Clock::now() < before + 1ms) co_return "a 1 ms timer fired early";
    auto client = co_await Async<net::TcpStream>::connect(echo);
    co_await client.write_all(bytes(payload));
    client.get_ref().shutdown(net::Shutdown::Write);
    std::string back;
    (void)co_await client.read_to_end(back);
    if (back != payload) co_return "the echo server sent back \"" + back + "\"";
    co_return "";
}

/// Waits for `ticks` to move on by `n` (the ticker task is being run).
Task<void> ticks_advance(const std::size_t& ticks, std::size_t n) {
    const std::size_t start = ticks;
    while (ticks < start + n) co_await Timer::after(1ms);
}

Task<void> run_table(LocalExecutor& ex) {
    Env env;
    env.backend = detail::make_default_poller()->name();
    const std::vector<Row> table = make_table(env);

    auto listener = Async<net::TcpListener>::bind(localhost());
    const auto echo = listener.get_ref().local_addr();
    std::size_t ticks = 0;
    auto server = ex.spawn(echo_server(listener));
    auto tick_task = ex.spawn(ticker(ticks));

    std::printf("bad_input: %zu rows on the %s backend\n", table.size(), env.backend.c_str());
    std::size_t right = 0;
    for (std::size_t i = 0; i < table.size(); ++i) {
        const Row& row = table[i];
        Outcome o;
        try {
            o = co_await timeout(10s, attempt(row, env));
        } catch (const std::system_error&) {
            o.kind = Outcome::Kind::hang;  // attempt() catches everything: this is the 10 s limit
            o.text = "no answer within 10 s";
        }
        const std::string problem = judge(row, o);
        CHECK(problem == "");
        if (problem.empty()) ++right;
        std::printf("  %-4s %-44s %-34s -> %s%s%s\n", problem.empty() ? "ok" : "BAD", row.entry.c_str(),
                    printable(row.input).substr(0, 34).c_str(), kind_name(o.kind),
                    o.kind == Outcome::Kind::system_error ? (" " + o.code.message()).c_str() : "",
                    (": " + printable(o.text).substr(0, 90)).c_str());

        std::string served;
        try {
            served = co_await timeout(10s, still_serving(echo, "row " + std::to_string(i)));
        } catch (const std::exception& e) {
            served = std::string("threw: ") + e.what();
        }
        CHECK(served == "");
    }
    std::printf("bad_input: %zu of %zu rows answered as expected; the ticker ticked %zu times meanwhile\n",
                right, table.size(), ticks);

    // The interval timer task kept running through the table, and still does.
    CHECK(ticks > 0);
    bool advanced = true;
    try {
        co_await timeout(10s, ticks_advance(ticks, 3));
    } catch (const std::system_error&) {
        advanced = false;
    }
    CHECK(advanced);
}

}  // namespace

TEST_CASE("every entry point taking outside input answers bad input clearly and the reactor keeps serving",
          "[bad_input]") {
    LocalExecutor ex;
    block_on(timeout(100s, ex.run(run_table(ex))));
}

// ---- beyond the table ------------------------------------------------------------------------------

namespace {

/// A zero-length read on a stream whose readiness cache says "not ready" (the last read drained
/// the socket, and a read that found nothing turned speculation off) still yields 0 at once,
/// and so does a zero-length write on a full pipe. (recv(2) of 0 bytes on a TCP socket would
/// wait for data: the library answers empty buffers itself.)
Task<std::string> zero_length_after_drain() {
    std::string problems;
    auto ends = co_await tcp_pair();
    std::array<std::byte, 16> buf{};
    co_await ends.second.write_all(bytes("abc"));
    (void)co_await ends.first.read(buf);  // short read: drained, the ready bit is cleared
    try {
        (void)co_await timeout(20ms, ends.first.read(buf));  // nothing: speculation off for good
    } catch (const std::system_error&) {
    }
    co_await ends.second.write_all(bytes("def"));
    (void)co_await ends.first.read(buf);  // drained again
    try {
        (void)co_await timeout(2s, ends.first.read(no_bytes()));
    } catch (const std::system_error&) {
        problems += "a zero-length TCP read waited for data; ";
    }
    try {
        (void)co_await timeout(2s, ends.first.peek(no_bytes()));
    } catch (const std::system_error&) {
        problems += "a zero-length TCP peek waited for data; ";
    }

    auto pipe_ends = async_io::pipe();
    Async<OwnedFd> writer(std::move(pipe_ends.second));
    const std::vector<std::byte> big(1 << 20);
    try {
        co_await timeout(100ms, writer.write_all(big));  // fills the pipe: the write bit is cleared
    } catch (const std::system_error&) {
    }
    try {
        (void)co_await timeout(2s, writer.write(std::span<const std::byte>{}));
    } catch (const std::system_error&) {
        problems += "a zero-length write to a full pipe waited for room; ";
    }
    co_return problems;
}

/// An interval timer that starts before the clock's epoch (any negative time_point): the next
/// deadline is computed as time_point::max() - start, which overflows (undefined behaviour;
/// UBSan: "signed integer overflow" in Timer::add, include/async_io/timer.hpp). Without UBSan
/// the wrapped value makes the timer stop after its first tick. Both ticks are in the past (the
/// second at the epoch itself: steady_clock's epoch is the boot, so a period of an hour would
/// make the test wait for the machine's first hour of uptime to end).
Task<std::string> interval_from_a_negative_start() {
    const auto start = Timer::time_point{} - 1s;
    auto timer = Timer::interval_at(start, 1s);
    const auto first = co_await timer;
    if (first != start) co_return "first tick not at the start";
    if (!timer.will_fire()) co_return "stopped after one tick";
    const auto second = co_await timer;
    if (second != start + 1s) co_return "second tick not one period later";
    co_return "";
}

}  // namespace

TEST_CASE("zero-length reads and writes complete at once whatever the readiness cache says", "[bad_input]") {
    const std::string problems = block_on(timeout(30s, zero_length_after_drain()));
    CHECK(problems == "");
}

// Timer::add once computed time_point::max() - base, which overflows for a base before the
// clock's epoch (UBSan aborted; without it the timer silently stopped after its first tick).
TEST_CASE("an interval timer may start before the clock's epoch", "[bad_input][timer_negative_start]") {
    const std::string problem = block_on(timeout(10s, interval_from_a_negative_start()));
    CHECK(problem == "");
}
