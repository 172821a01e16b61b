// unix_chat: a chat server on a Unix-domain socket. Each client's first line is its name; after
// that, every line it sends is passed on to all the other clients as "name: line", and the
// server announces who is here, who joins and who leaves with lines starting with "* ".
//
// The server runs one task per client on a LocalExecutor. Writing to a client never blocks the
// others: a line is appended to each recipient's outbox, and a short-lived flusher task per
// recipient (at most one at a time, so lines never interleave) writes the outbox out; a client
// that does not read for 5 s is dropped.
//
// With no arguments it starts the server on a socket in a fresh temporary directory, and three
// in-process clients (alice, bob and carol) connect at once, wait until all three are in, then
// talk in turn, each speaking only after it has heard the line before; each client checks that
// it received every line of the others, in order. Then they leave, and the socket file and
// directory are removed.
//
//   unix_chat                  the demo
//   unix_chat server PATH      only the server, on the socket PATH, until killed; talk to it with
//                              `nc -U PATH` or `socat - UNIX-CONNECT:PATH` (first line: a name).
//                              PATH must not exist yet; remove it afterwards.
#include <async_io/async.hpp>

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

using namespace async_io;
using namespace std::chrono_literals;

namespace {

constexpr auto kIoTimeout = 5s;     // the longest any single wait of a demo client may take
constexpr auto kIdleTimeout = 10min;  // the server drops a client silent this long
constexpr auto kWriteTimeout = 5s;  // ... or one that does not read what it is sent this long

// Reads '\n'-terminated lines from a stream, keeping what follows a line for the next call.
class LineReader {
public:
    explicit LineReader(Async<net::UnixStream>& stream) : stream_(stream) {}

    // The next line, without its '\n'; std::nullopt at the end of the stream. Each read waits at
    // most `limit` (then throws std::errc::timed_out).
    template <class Rep, class Period>
    Task<std::optional<std::string>> next(std::chrono::duration<Rep, Period> limit) {
        for (;;) {
            if (const auto nl = buf_.find('\n'); nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                if (!line.empty() && line.back() == '\r') line.pop_back();  // from a telnet-ish client
                co_return line;
            }
            if (buf_.size() > 64 * 1024) throw std::runtime_error("line too long");
            char chunk[4096];
            const std::size_t n = co_await timeout(limit, stream_.read(std::as_writable_bytes(std::span(chunk))));
            if (n == 0) {
                if (buf_.empty()) co_return std::nullopt;
                co_return std::exchange(buf_, {});  // a last line without '\n'
            }
            buf_.append(chunk, n);
        }
    }

private:
    Async<net::UnixStream>& stream_;
    std::string buf_;
};

bool is_notice(std::string_view line) { return line.starts_with("* "); }

// ---- the server ---------------------------------------------------------------------------

struct Member {
    explicit Member(Async<net::UnixStream> s) : stream(std::move(s)) {}
    Async<net::UnixStream> stream;  // closed when the last holder (handler, room, flusher) lets go
    std::string name;
    std::string outbox;     // what is still to be written to this client
    bool flushing = false;  // a flusher task is writing the outbox
    bool dead = false;      // a write failed: drop everything for it
};

struct Room {
    LocalExecutor* ex = nullptr;
    std::vector<std::shared_ptr<Member>> members;
    bool verbose = false;
};

// Writes `m`'s outbox out, including whatever is appended meanwhile; then ends.
Task<void> flush(std::shared_ptr<Member> m) {
    try {
        while (!m->outbox.empty() && !m->dead) {
            const std::string data = std::exchange(m->outbox, {});
            co_await timeout(kWriteTimeout, m->stream.write_all(as_bytes(data)));
        }
    } catch (const std::system_error& e) {
        // Gone, or not reading: forget it; its handler notices too (EOF or an error).
        std::printf("[server] dropping %s: %s\n", m->name.c_str(), e.what());
        m->dead = true;
        m->outbox.clear();
        // Wake its handler: a shut-down socket reads EOF at once.
        try {
            m->stream.get_ref().shutdown(net::Shutdown::Both);
        } catch (const std::system_error&) {
        }
    }
    m->flushing = false;
}

void send_to(Room& room, const std::shared_ptr<Member>& m, std::string_view line) {
    if (m->dead) return;
    m->outbox.append(line);
    m->outbox.push_back('\n');
    if (!m->flushing) {
        m->flushing = true;
        room.ex->spawn(flush(m)).detach();
    }
}

// Sends `line` to every member but `from`. All outboxes get it before any flusher runs, so every
// client sees the lines in the order the server read them.
void broadcast(Room& room, const Member* from, std::string_view line) {
    for (const auto& m : room.members) {
        if (m.get() != from) send_to(room, m, line);
    }
}

Task<void> handle(std::shared_ptr<Member> me, Room& room) {
    LineReader reader(me->stream);
    try {
        const auto name = co_await reader.next(kIoTimeout);
        if (!name || name->empty() || is_notice(*name)) co_return;
        me->name = *name;
        for (const auto& m : room.members) send_to(room, me, "* " + m->name + " is here");
        send_to(room, me, "* welcome, " + me->name);
        broadcast(room, me.get(), "* " + me->name + " joined");
        room.members.push_back(me);
        std::printf("[server] %s joined (%zu online)\n", me->name.c_str(), room.members.size());
        while (const auto line = co_await reader.next(kIdleTimeout)) {
            if (room.verbose) std::printf("[server] %s: %s\n", me->name.c_str(), line->c_str());
            broadcast(room, me.get(), me->name + ": " + *line);
        }
    } catch (const std::system_error& e) {
        if (!me->dead) std::printf("[server] %s: %s\n", me->name.empty() ? "a client" : me->name.c_str(), e.what());
    }
    if (std::erase(room.members, me) != 0) {
        std::printf("[server] %s left (%zu online)\n", me->name.c_str(), room.members.size());
        broadcast(room, me.get(), "* " + me->name + " left");
    }
}

Task<void> serve(Async<net::UnixListener>& listener, Room& room) {
    for (;;) {
        bool failed = false;
        try {
            auto [stream, peer] = co_await listener.accept();
            room.ex->spawn(handle(std::make_shared<Member>(std::move(stream)), room)).detach();
        } catch (const std::system_error& e) {
            std::fprintf(stderr, "[server] %s\n", e.what());
            failed = true;
        }
        if (failed) co_await Timer::after(100ms);  // e.g. out of fds: do not spin
    }
}

// ---- the demo clients ---------------------------------------------------------------------

struct Turn {
    std::string speaker;
    std::string text;
};

const std::vector<std::string> kPeople = {"alice", "bob", "carol"};
const std::vector<Turn> kScript = {
    {"alice", "hi bob, hi carol!"},
    {"bob", "hello alice. carol, are you there?"},
    {"carol", "here! this room is a Unix socket, isn't it?"},
    {"alice", "yes, in a temporary directory"},
    {"bob", "and each of us checks that it got every line"},
    {"carol", "then we are done. bye!"},
};

Task<void> say(Async<net::UnixStream>& stream, const std::string& line) {
    const std::string wire = line + "\n";
    co_await timeout(kIoTimeout, stream.write_all(as_bytes(wire)));
}

// A chat line (not a notice), printing the notices met on the way.
Task<std::string> next_chat_line(LineReader& reader, const std::string& me) {
    for (;;) {
        const auto line = co_await reader.next(kIoTimeout);
        if (!line) throw std::runtime_error(me + ": the server closed the connection");
        if (!is_notice(*line)) co_return *line;
        std::printf("  %-5s <- %s\n", me.c_str(), line->c_str());
    }
}

// Joins, waits until everyone is here, follows the script, leaves. Yields the lines received.
Task<int> client(std::string path, std::string me) {
    auto stream = co_await timeout(kIoTimeout, Async<net::UnixStream>::connect(path));
    LineReader reader(stream);
    co_await say(stream, me);

    // "* bob is here" (those who were in before us) and "* bob joined" (those who come after).
    std::set<std::string> present{me};
    while (present.size() < kPeople.size()) {
        const auto line = co_await reader.next(kIoTimeout);
        if (!line) throw std::runtime_error(me + ": the server closed the connection");
        std::printf("  %-5s <- %s\n", me.c_str(), line->c_str());
        for (const auto& p : kPeople) {
            if (*line == "* " + p + " is here" || *line == "* " + p + " joined") present.insert(p);
        }
    }

    int received = 0;
    for (const auto& turn : kScript) {
        if (turn.speaker == me) {
            std::printf("  %-5s says: %s\n", me.c_str(), turn.text.c_str());
            co_await say(stream, turn.text);
        } else {
            const std::string line = co_await next_chat_line(reader, me);
            const std::string expected = turn.speaker + ": " + turn.text;
            if (line != expected) throw std::runtime_error(me + " expected \"" + expected + "\", got \"" + line + "\"");
            std::printf("  %-5s <- %s\n", me.c_str(), line.c_str());
            ++received;
        }
    }

    // Leave: close our side; the server then closes its side (EOF), after anything pending.
    stream.get_ref().shutdown(net::Shutdown::Write);
    while (const auto line = co_await reader.next(kIoTimeout)) {
        if (!is_notice(*line)) throw std::runtime_error(me + ": unexpected line after the script: " + *line);
        std::printf("  %-5s <- %s\n", me.c_str(), line->c_str());
    }
    co_return received;
}

// A directory made with mkdtemp, removed with everything in it on destruction.
class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "async_io-chat-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr)
            throw std::system_error(errno, std::system_category(), "mkdtemp " + pattern);
        path_ = pattern;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
        if (ec) std::fprintf(stderr, "warning: could not remove %s: %s\n", path_.c_str(), ec.message().c_str());
    }
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
};

Task<void> demo(Room& room, std::string path) {
    auto listener = Async<net::UnixListener>::bind(path);
    std::printf("chat server listening on %s\n", path.c_str());
    auto server = room.ex->spawn(serve(listener, room));

    std::vector<JoinHandle<int>> clients;
    for (const auto& name : kPeople) clients.push_back(room.ex->spawn(client(path, name)));
    int deliveries = 0;
    for (auto& c : clients) deliveries += co_await c;

    const int expected = static_cast<int>(kScript.size() * (kPeople.size() - 1));
    if (deliveries != expected)
        throw std::runtime_error("expected " + std::to_string(expected) + " deliveries, counted " + std::to_string(deliveries));
    std::printf("all %zu lines reached the %zu other clients, in order: %d deliveries checked\n", kScript.size(),
                kPeople.size() - 1, deliveries);
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        Room room;  // outlives the executor, whose tasks use it
        if (argc == 1) {
            const TempDir dir;
            const std::string path = (dir.path() / "chat.sock").string();
            {
                LocalExecutor ex;
                room.ex = &ex;
                block_on(ex.run(timeout(20s, demo(room, path))));
            }
            std::printf("removing %s\n", path.c_str());
            return 0;
        }
        if (argc == 3 && std::string_view(argv[1]) == "server") {
            // Declared before the executor: the tasks that use it must be destroyed first.
            auto listener = Async<net::UnixListener>::bind(argv[2]);
            LocalExecutor ex;
            room.ex = &ex;
            room.verbose = true;
            std::printf("chat server listening on %s (Ctrl-C to stop)\n", argv[2]);
            block_on(ex.run(serve(listener, room)));
            return 0;
        }
        std::fprintf(stderr, "usage: unix_chat\n       unix_chat server PATH\n");
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "unix_chat: %s\n", e.what());
        return 1;
    }
}
