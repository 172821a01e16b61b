// http_hello: a tiny HTTP/1.1 server that answers every GET with a hello. It reads each request
// head up to the blank line, parses the request line and the headers, discards a request body
// (Content-Length), and answers `200 OK` with a Content-Length; connections are kept alive
// (HTTP/1.1's default, or HTTP/1.0 with "Connection: keep-alive") until the client sends
// "Connection: close", closes, or stays idle for 15 s. Pipelined requests are answered in order.
// Other methods get 405, malformed requests 400. One task per connection on a LocalExecutor.
//
// With no arguments it starts the server on 127.0.0.1 (a free port) and, in the same thread,
// sends it requests with Async<net::TcpStream> (keep-alive, Connection: close, HTTP/1.0,
// pipelining, HEAD, POST, garbage), checking every response; then, if `curl` is on the PATH, it
// runs `curl -i http://127.0.0.1:PORT/from-curl` as a child process, with this thread serving
// meanwhile, and checks its output and exit status ("curl not found, skipped" otherwise). A
// helper thread waits for curl to exit and reports its status through a pipe that the executor
// reads as an Async<OwnedFd>; curl's output comes through another pipe.
//
//   http_hello                 the self-test
//   http_hello serve PORT      serve on 127.0.0.1:PORT until killed, logging each request
//                              (try `curl -v http://127.0.0.1:PORT/`)
#include <async_io/async.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

extern char** environ;

using namespace async_io;
using namespace std::chrono_literals;

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxHead = 16 * 1024;  // a larger request head gets 431
constexpr std::size_t kMaxBody = 1 << 20;     // a larger request body gets 413
constexpr auto kKeepAlive = 15s;              // an idle connection is closed after this
constexpr auto kIoTimeout = 5s;               // the longest any other single wait may take

// ---- HTTP messages ------------------------------------------------------------------------

// An error the server answers with a status code, then closes the connection.
class HttpError : public std::runtime_error {
public:
    HttpError(int status, const std::string& what) : std::runtime_error(what), status_(status) {}
    int status() const noexcept { return status_; }

private:
    int status_;
};

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// RFC 9110 "tchar": what a method or a header name is made of.
bool is_token(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    });
}

// A parsed head: the start line's three parts and the header fields (names in lower case).
struct Head {
    std::string first, second, third;  // method, target, version / version, status, reason
    std::vector<std::pair<std::string, std::string>> fields;

    std::optional<std::string> field(std::string_view name) const {
        for (const auto& [n, v] : fields) {
            if (n == name) return v;
        }
        return std::nullopt;
    }
    // Whether a comma-separated header (Connection) lists `token`, case-insensitively.
    bool field_has_token(std::string_view name, std::string_view token) const {
        for (const auto& [n, v] : fields) {
            if (n != name) continue;
            std::string_view rest = v;
            while (!rest.empty()) {
                const auto comma = rest.find(',');
                if (lower(trim(rest.substr(0, comma))) == token) return true;
                rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
            }
        }
        return false;
    }
    // The Content-Length, if any; throws HttpError(400) for a bad or ambiguous one.
    std::optional<std::size_t> content_length() const {
        std::optional<std::size_t> result;
        for (const auto& [n, v] : fields) {
            if (n != "content-length") continue;
            std::size_t len = 0;
            const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), len);
            if (ec != std::errc{} || end != v.data() + v.size() || v.empty()) throw HttpError(400, "bad Content-Length");
            if (result && *result != len) throw HttpError(400, "conflicting Content-Length fields");
            result = len;
        }
        return result;
    }
};

// Parses "A B C\r\nName: value\r\n..." (no final blank line). For a request the start line is
// "METHOD TARGET VERSION"; for a response "VERSION STATUS REASON" (the reason may hold spaces).
Head parse_head(std::string_view text, bool request) {
    Head h;
    auto next_line = [&text]() {
        const auto eol = text.find("\r\n");
        std::string_view line = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 2);
        return line;
    };
    const std::string_view start = next_line();
    const auto sp1 = start.find(' ');
    const auto sp2 = sp1 == std::string_view::npos ? sp1 : start.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) {
        if (request || sp1 == std::string_view::npos) throw HttpError(400, "malformed start line");
        h.first = start.substr(0, sp1);  // a response without a reason phrase
        h.second = start.substr(sp1 + 1);
    } else {
        h.first = start.substr(0, sp1);
        h.second = start.substr(sp1 + 1, sp2 - sp1 - 1);
        h.third = start.substr(sp2 + 1);
    }
    if (request && (!is_token(h.first) || h.second.empty() || h.third.find(' ') != std::string::npos))
        throw HttpError(400, "malformed request line");
    while (!text.empty()) {
        const std::string_view line = next_line();
        const auto colon = line.find(':');
        if (colon == std::string_view::npos || !is_token(line.substr(0, colon)))
            throw HttpError(400, "malformed header field");
        h.fields.emplace_back(lower(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
    }
    return h;
}

// Reads from `s` into `buf` until `buf` holds a whole head (up to "\r\n\r\n"), removes it from
// `buf` and returns it without the blank line. std::nullopt if the peer closed before sending
// anything. Each read waits at most `limit`.
Task<std::optional<std::string>> read_head(Async<net::TcpStream>& s, std::string& buf, Clock::duration limit) {
    std::size_t scanned = 0;
    for (;;) {
        // A client may send empty lines between requests (RFC 9112 2.2): skip them.
        while (buf.starts_with("\r\n")) buf.erase(0, 2);
        if (const auto end = buf.find("\r\n\r\n", scanned); end != std::string::npos) {
            std::string head = buf.substr(0, end);
            buf.erase(0, end + 4);
            co_return head;
        }
        scanned = buf.size() < 3 ? 0 : buf.size() - 3;
        if (buf.size() > kMaxHead) throw HttpError(431, "request head larger than 16 KiB");
        char chunk[4096];
        const std::size_t n = co_await timeout(limit, s.read(std::as_writable_bytes(std::span(chunk))));
        if (n == 0) {
            if (buf.empty()) co_return std::nullopt;
            throw HttpError(400, "connection closed in the middle of a head");
        }
        buf.append(chunk, n);
    }
}

// Reads `n` bytes of body, taking first what `buf` already holds.
Task<std::string> read_body(Async<net::TcpStream>& s, std::string& buf, std::size_t n) {
    while (buf.size() < n) {
        char chunk[16384];
        const std::size_t got = co_await timeout(kIoTimeout, s.read(std::as_writable_bytes(std::span(chunk))));
        if (got == 0) throw HttpError(400, "connection closed in the middle of a body");
        buf.append(chunk, got);
    }
    std::string body = buf.substr(0, n);
    buf.erase(0, n);
    co_return body;
}

// ---- the server ---------------------------------------------------------------------------

struct Stats {
    std::size_t connections = 0;
    std::size_t requests = 0;
};

const char* reason_phrase(int status) {
    switch (status) {
        case 200: return "OK";
        case 400: return "Bad Request";
        case 405: return "Method Not Allowed";
        case 413: return "Content Too Large";
        case 431: return "Request Header Fields Too Large";
        case 501: return "Not Implemented";
        case 505: return "HTTP Version Not Supported";
        default: return "Error";
    }
}

std::string hello_body(std::string_view target) {
    return "Hello from async_io! You asked for " + std::string(target.substr(0, 200)) + "\n";
}

std::string make_response(int status, std::string_view body, bool keep_alive, bool head_only,
                          std::string_view extra_fields = {}) {
    std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
    r += "Server: async_io-http-hello\r\n";
    r += "Content-Type: text/plain; charset=utf-8\r\n";
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    r += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
    r += extra_fields;
    r += "\r\n";
    if (!head_only) r += body;
    return r;
}

// What to do with one request: the response to send, and whether to go on afterwards.
struct Reply {
    int status = 200;
    std::string wire;
    bool keep_alive = false;
    std::size_t discard = 0;  // request body bytes to read (and drop) before answering
    std::string log;          // "GET /x HTTP/1.1"
};

Reply decide(std::string_view head_text) {
    Reply r;
    try {
        const Head req = parse_head(head_text, true);
        r.log = req.first + " " + req.second + " " + req.third;
        if (req.third != "HTTP/1.1" && req.third != "HTTP/1.0") {
            if (req.third.starts_with("HTTP/")) throw HttpError(505, "unsupported HTTP version");
            throw HttpError(400, "not an HTTP request");
        }
        r.keep_alive = req.third == "HTTP/1.1" ? !req.field_has_token("connection", "close")
                                               : req.field_has_token("connection", "keep-alive");
        if (req.field("transfer-encoding")) throw HttpError(501, "chunked request bodies are not supported");
        r.discard = req.content_length().value_or(0);
        if (r.discard > kMaxBody) throw HttpError(413, "request body larger than 1 MiB");
        if (req.first == "GET" || req.first == "HEAD") {
            r.wire = make_response(200, hello_body(req.second), r.keep_alive, req.first == "HEAD");
        } else {
            r.status = 405;
            r.wire = make_response(405, "only GET and HEAD are supported here\n", r.keep_alive, false,
                                   "Allow: GET, HEAD\r\n");
        }
    } catch (const HttpError& e) {
        r.status = e.status();
        r.keep_alive = false;
        r.discard = 0;
        r.wire = make_response(e.status(), std::string(e.what()) + "\n", false, false);
        if (r.log.empty()) r.log = "(malformed request)";
    }
    return r;
}

// Serves one request on `s`; false when the connection is to be closed.
Task<bool> serve_one(Async<net::TcpStream>& s, std::string& buf, const net::SocketAddr& peer, Stats& stats, bool log) {
    std::optional<std::string> head;
    std::optional<Reply> early;  // an error found while reading the head
    try {
        head = co_await read_head(s, buf, kKeepAlive);
    } catch (const HttpError& e) {
        early = Reply{e.status(), make_response(e.status(), std::string(e.what()) + "\n", false, false), false, 0,
                      "(unreadable request)"};
    }
    if (!early && !head) co_return false;  // the client closed the connection
    Reply reply = early ? std::move(*early) : decide(*head);
    if (reply.discard > 0) (void)co_await read_body(s, buf, reply.discard);
    co_await timeout(kIoTimeout, s.write_all(as_bytes(reply.wire)));
    ++stats.requests;
    if (log) std::printf("%s  %s -> %d\n", peer.to_string().c_str(), reply.log.c_str(), reply.status);
    co_return reply.keep_alive;
}

Task<void> serve_connection(Async<net::TcpStream> s, net::SocketAddr peer, Stats& stats, bool log) {
    ++stats.connections;
    std::string buf;
    try {
        while (co_await serve_one(s, buf, peer, stats, log)) {
        }
        // A graceful close: stop sending, then drop whatever the client still sends until it
        // closes (for at most 1 s). Closing a socket with unread data resets the connection,
        // which can destroy the response before the client has read it.
        s.get_ref().shutdown(net::Shutdown::Write);
        std::byte sink[4096];
        while (co_await timeout(1s, s.read(sink)) != 0) {
        }
    } catch (const std::exception& e) {
        if (log) std::printf("%s  closed: %s\n", peer.to_string().c_str(), e.what());
    }
}

Task<void> serve(Async<net::TcpListener>& listener, LocalExecutor& ex, Stats& stats, bool log) {
    for (;;) {
        bool failed = false;
        try {
            auto [stream, peer] = co_await listener.accept();
            ex.spawn(serve_connection(std::move(stream), peer, stats, log)).detach();
        } catch (const std::system_error& e) {
            std::fprintf(stderr, "accept: %s\n", e.what());
            failed = true;
        }
        if (failed) co_await Timer::after(100ms);  // e.g. out of fds: do not spin
    }
}

// ---- the self-test client -----------------------------------------------------------------

struct Response {
    int status = 0;
    Head head;
    std::string body;
};

// Reads one response (for a HEAD request: without a body).
Task<Response> read_response(Async<net::TcpStream>& s, std::string& buf, bool head_request = false) {
    const auto text = co_await read_head(s, buf, kIoTimeout);
    if (!text) throw std::runtime_error("the server closed the connection without answering");
    Response r;
    r.head = parse_head(*text, false);
    if (!r.head.first.starts_with("HTTP/1.")) throw std::runtime_error("not an HTTP response: " + *text);
    r.status = std::stoi(r.head.second);
    const auto len = r.head.content_length();
    if (!len) throw std::runtime_error("response without Content-Length");
    if (!head_request) r.body = co_await read_body(s, buf, *len);
    co_return r;
}

void expect(bool ok, const std::string& what) {
    if (!ok) throw std::runtime_error("check failed: " + what);
}

void expect_hello(const Response& r, std::string_view target) {
    expect(r.status == 200, "status 200, got " + std::to_string(r.status));
    expect(r.body == hello_body(target), "hello body for " + std::string(target) + ", got \"" + r.body + "\"");
}

Task<Async<net::TcpStream>> connect(net::SocketAddr addr) {
    auto s = co_await timeout(kIoTimeout, Async<net::TcpStream>::connect(addr));
    s.get_ref().set_nodelay(true);
    co_return s;
}

Task<void> send(Async<net::TcpStream>& s, std::string_view text) {
    co_await timeout(kIoTimeout, s.write_all(as_bytes(text)));
}

// Checks that the server closes the connection (and sends nothing more).
Task<void> expect_closed(Async<net::TcpStream>& s, const std::string& buf) {
    expect(buf.empty(), "no bytes after the response");
    std::byte extra[64];
    expect(co_await timeout(kIoTimeout, s.read(extra)) == 0, "the server closes the connection");
}

void report(const char* what, const std::string& outcome) { std::printf("  %-44s %s\n", what, outcome.c_str()); }

Task<void> test_keep_alive(net::SocketAddr addr) {
    auto s = co_await connect(addr);
    std::string buf;
    co_await send(s, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    const Response a = co_await read_response(s, buf);
    expect_hello(a, "/");
    expect(a.head.field("connection") == "keep-alive", "Connection: keep-alive");
    co_await send(s, "GET /again HTTP/1.1\r\nHost: localhost\r\n\r\n");
    const Response b = co_await read_response(s, buf);
    expect_hello(b, "/again");
    report("GET / then GET /again on one connection", "200, 200: the connection was kept alive");
}

Task<void> test_close(net::SocketAddr addr) {
    auto s = co_await connect(addr);
    std::string buf;
    co_await send(s, "GET /bye HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    const Response r = co_await read_response(s, buf);
    expect_hello(r, "/bye");
    expect(r.head.field("connection") == "close", "Connection: close");
    co_await expect_closed(s, buf);
    report("GET with \"Connection: close\"", "200, then the server closed the connection");
}

Task<void> test_http10(net::SocketAddr addr) {
    auto s = co_await connect(addr);
    std::string buf;
    co_await send(s, "GET /old HTTP/1.0\r\n\r\n");
    const Response r = co_await read_response(s, buf);
    expect_hello(r, "/old");
    co_await expect_closed(s, buf);
    report("HTTP/1.0 GET (closes by default)", "200, then the server closed the connection");
}

Task<void> test_pipelined(net::SocketAddr addr) {
    auto s = co_await connect(addr);
    std::string buf;
    co_await send(s, "HEAD /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n");
    const Response a = co_await read_response(s, buf, true);
    expect(a.status == 200, "HEAD status 200");
    expect(a.head.content_length() == hello_body("/one").size(), "HEAD gives the GET's Content-Length");
    const Response b = co_await read_response(s, buf);
    expect_hello(b, "/two");
    report("HEAD + GET pipelined in one write", "200 (head only), 200, in order");
}

Task<void> test_post(net::SocketAddr addr) {
    auto s = co_await connect(addr);
    std::string buf;
    co_await send(s, "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello=world");
    const Response a = co_await read_response(s, buf);
    expect(a.status == 405, "POST gets 405, got " + std::to_string(a.status));
    expect(a.head.field("allow") == "GET, HEAD", "Allow: GET, HEAD");
    co_await send(s, "GET /after-post HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_hello(co_await read_response(s, buf), "/after-post");
    report("POST with a body, then GET", "405 Method Not Allowed, then 200 (body skipped)");
}

Task<void> test_garbage(net::SocketAddr addr) {
    auto s = co_await connect(addr);
    std::string buf;
    co_await send(s, "this is not HTTP\r\n\r\n");
    const Response r = co_await read_response(s, buf);
    expect(r.status == 400, "garbage gets 400, got " + std::to_string(r.status));
    co_await expect_closed(s, buf);
    report("a malformed request", "400 Bad Request, then the server closed the connection");
}

// ---- curl ---------------------------------------------------------------------------------

std::optional<std::string> find_in_path(std::string_view name) {
    const char* path = std::getenv("PATH");
    std::string_view rest = path != nullptr ? path : "/usr/bin:/bin";
    while (true) {
        const auto colon = rest.find(':');
        std::string dir(rest.substr(0, colon));
        if (dir.empty()) dir = ".";
        const std::string candidate = dir + "/" + std::string(name);
        struct stat st;
        if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
            return candidate;
        if (colon == std::string_view::npos) return std::nullopt;
        rest.remove_prefix(colon + 1);
    }
}

// How a child process ended: waitid's si_code (CLD_EXITED, CLD_KILLED, ...) and si_status (the
// exit code, or the signal).
struct ExitStatus {
    int code = 0;
    int status = 0;
};

// A child process, killed (if still running) and reaped on destruction. A helper thread waits for
// it to end and writes its ExitStatus to a pipe, whose read end the executor awaits: the wait
// does not block the thread that serves the connections.
class Child {
public:
    Child(const std::string& program, const std::vector<std::string>& args, OwnedFd stdout_to) {
        auto [status_r, status_w] = pipe();
        status_.emplace(std::move(status_r));
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&actions, stdout_to.native_handle(), 1);  // dup2 clears CLOEXEC
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        const int err = ::posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (err != 0) throw std::system_error(err, std::system_category(), "posix_spawn " + program);
        try {
            waiter_ = std::thread([pid = pid_, w = std::move(status_w)]() mutable {
                // WNOWAIT: leaves the child a zombie, so its pid cannot be reused before the
                // destructor reaps it (and may kill it meanwhile without hitting another process).
                siginfo_t info{};
                while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
                }
                const ExitStatus st{info.si_code, info.si_status};
                try {
                    (void)w.write(std::as_bytes(std::span(&st, 1)));  // 8 bytes: atomic on a pipe
                } catch (const std::system_error&) {
                    // The reader is gone: nobody wants the status any more.
                }
            });
        } catch (...) {
            reap();
            throw;
        }
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() { reap(); }

    // Waits for the child to end.
    Task<ExitStatus> wait() {
        ExitStatus st;
        co_await status_->read_exact(std::as_writable_bytes(std::span(&st, 1)));
        co_return st;
    }

private:
    // Kills the child if it still runs (harmless on a zombie: it is one once it ended, until
    // waitpid here reaps it) and reaps it.
    void reap() noexcept {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        if (waiter_.joinable()) waiter_.join();
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }

    pid_t pid_ = -1;
    std::optional<Async<OwnedFd>> status_;
    std::thread waiter_;
};

Task<void> test_curl(net::SocketAddr addr) {
    const auto curl = find_in_path("curl");
    if (!curl) {
        report("curl", "curl not found, skipped");
        co_return;
    }
    const std::string url = "http://" + addr.to_string() + "/from-curl";
    // -q: ignore ~/.curlrc; --noproxy: never go through an http_proxy from the environment.
    const std::vector<std::string> args = {"curl", "-q", "-s", "-S", "-i", "--max-time", "10", "--noproxy", "*", url};
    auto [out_r, out_w] = pipe();
    std::fflush(stdout);
    Async<OwnedFd> out(std::move(out_r));
    Child child(*curl, args, std::move(out_w));  // our copy of the write end is closed here
    std::string output;
    ExitStatus exit;
    bool timed_out = false;
    try {
        exit = std::get<1>(co_await timeout(15s, when_all(out.read_to_end(output), child.wait())));
    } catch (const std::system_error& e) {
        if (e.code() != std::errc::timed_out) throw;
        timed_out = true;  // Child's destructor kills it
    }
    if (timed_out) throw std::runtime_error("curl did not finish within 15 s; output so far: " + output);
    if (exit.code != CLD_EXITED || exit.status != 0) {
        throw std::runtime_error("curl failed (" + std::string(exit.code == CLD_EXITED ? "exit code " : "signal ") +
                                 std::to_string(exit.status) + "), output: " + output);
    }
    // curl -i prints the head as received, then the body.
    const auto blank = output.find("\r\n\r\n");
    expect(blank != std::string::npos, "curl printed a response head");
    const std::string status_line = output.substr(0, output.find("\r\n"));
    const std::string body = output.substr(blank + 4);
    expect(status_line == "HTTP/1.1 200 OK", "curl got 200 OK, got \"" + status_line + "\"");
    expect(body == hello_body("/from-curl"), "curl got the hello body, got \"" + body + "\"");
    report(("curl -i " + url).c_str(), "exit 0, " + status_line + ", body \"" + body.substr(0, body.size() - 1) + "\"");
}

Task<void> self_test(LocalExecutor& ex, Stats& stats) {
    auto listener = Async<net::TcpListener>::bind(net::SocketAddr::parse("127.0.0.1:0"));
    const auto addr = listener.get_ref().local_addr();
    std::printf("HTTP server listening on http://%s/\n", addr.to_string().c_str());
    auto server = ex.spawn(serve(listener, ex, stats, false));

    co_await test_keep_alive(addr);
    co_await test_close(addr);
    co_await test_http10(addr);
    co_await test_pipelined(addr);
    co_await test_post(addr);
    co_await test_garbage(addr);
    co_await test_curl(addr);
    std::printf("all responses as expected; the server handled %zu requests on %zu connections\n", stats.requests,
                stats.connections);
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        Stats stats;  // outlives the executors, whose tasks use it
        if (argc == 1) {
            LocalExecutor ex;
            block_on(ex.run(timeout(60s, self_test(ex, stats))));
            return 0;
        }
        if (argc == 3 && std::string_view(argv[1]) == "serve") {
            const int port = std::atoi(argv[2]);
            if (port <= 0 || port > 65535) {
                std::fprintf(stderr, "http_hello: bad port \"%s\"\n", argv[2]);
                return 2;
            }
            // Declared before the executor: the tasks that use it must be destroyed first.
            auto listener = Async<net::TcpListener>::bind(net::SocketAddr::loopback_v4(static_cast<std::uint16_t>(port)));
            std::printf("serving on http://%s/ (Ctrl-C to stop)\n", listener.get_ref().local_addr().to_string().c_str());
            LocalExecutor ex;
            block_on(ex.run(serve(listener, ex, stats, true)));
            return 0;
        }
        std::fprintf(stderr, "usage: http_hello\n       http_hello serve PORT\n");
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "http_hello: %s\n", e.what());
        return 1;
    }
}
