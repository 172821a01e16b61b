// linux_inotify: watching a directory with Linux inotify. An inotify instance is a file
// descriptor that becomes readable when filesystem events are queued on it; reading it yields
// `struct inotify_event` records. Wrapped in Async<OwnedFd>, it is awaited like a socket.
//
// With no arguments it watches a fresh temporary directory while a second task, running
// concurrently with the watcher (when_all), creates, writes, chmods, renames and deletes a file
// and a subdirectory there, pausing 20 ms between steps (an async_io Timer). The watcher prints
// each event as it arrives, checks that every expected event came, in order, and the temporary
// directory is removed at the end.
//
//   linux_inotify              the demo
//   linux_inotify DIR          print every event in DIR until killed (as async-io's
//                              linux-inotify.rs does for the current directory)
#include <async_io/async.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
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

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

[[noreturn]] void throw_errno(const std::string& what) {
    throw std::system_error(errno, std::system_category(), what);
}

// A directory made with mkdtemp, removed with everything in it on destruction.
class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "async_io-inotify-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) throw_errno("mkdtemp " + pattern);
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

// An inotify instance watching `dir` for the events in `mask`, ready for Async.
OwnedFd watch_directory(const std::filesystem::path& dir, std::uint32_t mask) {
    const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) throw_errno("inotify_init1");
    OwnedFd inotify = OwnedFd::from_raw_fd(fd);
    if (::inotify_add_watch(fd, dir.c_str(), mask) < 0) throw_errno("inotify_add_watch " + dir.string());
    return inotify;
}

struct Event {
    std::uint32_t mask;
    std::uint32_t cookie;
    std::string name;  // empty for an event on the watched directory itself
};

std::string mask_to_string(std::uint32_t mask) {
    static constexpr std::pair<std::uint32_t, const char*> names[] = {
        {IN_ACCESS, "ACCESS"},           {IN_MODIFY, "MODIFY"},         {IN_ATTRIB, "ATTRIB"},
        {IN_CLOSE_WRITE, "CLOSE_WRITE"}, {IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"}, {IN_OPEN, "OPEN"},
        {IN_MOVED_FROM, "MOVED_FROM"},   {IN_MOVED_TO, "MOVED_TO"},     {IN_CREATE, "CREATE"},
        {IN_DELETE, "DELETE"},           {IN_DELETE_SELF, "DELETE_SELF"}, {IN_MOVE_SELF, "MOVE_SELF"},
        {IN_UNMOUNT, "UNMOUNT"},         {IN_Q_OVERFLOW, "Q_OVERFLOW"}, {IN_IGNORED, "IGNORED"},
        {IN_ISDIR, "ISDIR"},
    };
    std::string out;
    for (const auto& [bit, name] : names) {
        if ((mask & bit) == 0) continue;
        if (!out.empty()) out += '|';
        out += name;
    }
    return out.empty() ? "0" : out;
}

// Decodes the inotify_event records that one read returned. (A plain function: GCC rejects a
// struct with a flexible array member, as inotify_event is, among a coroutine's locals.)
std::vector<Event> decode_events(std::span<const std::byte> bytes) {
    std::vector<Event> events;
    for (std::size_t off = 0; off + sizeof(inotify_event) <= bytes.size();) {
        inotify_event header;
        std::memcpy(&header, bytes.data() + off, sizeof header);  // records are not aligned for us
        const char* name = reinterpret_cast<const char*>(bytes.data() + off + sizeof header);
        const std::size_t room = std::min<std::size_t>(header.len, bytes.size() - off - sizeof header);
        events.push_back({header.mask, header.cookie, std::string(name, ::strnlen(name, room))});
        off += sizeof header + header.len;
    }
    return events;
}

// Waits for the next batch of events (one read) and decodes it.
Task<std::vector<Event>> read_events(Async<OwnedFd>& inotify) {
    // Room for several events; at least one with the longest name (a smaller buffer gets EINVAL).
    std::byte buf[4096 + NAME_MAX + 1];
    const std::size_t n = co_await inotify.read(buf);
    co_return decode_events(std::span(buf, n));
}

void print_event(const Event& e, Clock::time_point start) {
    std::printf("  %7.1f ms  %-18s %s", ms_since(start), mask_to_string(e.mask).c_str(),
                e.name.empty() ? "(the directory)" : e.name.c_str());
    if (e.cookie != 0) std::printf("  (cookie %u)", e.cookie);
    std::printf("\n");
}

// ---- the demo -----------------------------------------------------------------------------

constexpr std::uint32_t kDemoMask =
    IN_CREATE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE;

// What the changes below must produce, in this order (other events may come in between).
const std::vector<std::pair<std::uint32_t, std::string>> kExpected = {
    {IN_CREATE, "notes.txt"},         {IN_MODIFY, "notes.txt"},         {IN_CLOSE_WRITE, "notes.txt"},
    {IN_MODIFY, "notes.txt"},         {IN_CLOSE_WRITE, "notes.txt"},    {IN_ATTRIB, "notes.txt"},
    {IN_MOVED_FROM, "notes.txt"},     {IN_MOVED_TO, "renamed.txt"},     {IN_CREATE | IN_ISDIR, "subdir"},
    {IN_DELETE | IN_ISDIR, "subdir"}, {IN_DELETE, "renamed.txt"},
};

void write_file(const std::filesystem::path& file, std::string_view text, int flags) {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC | flags, 0644);
    if (fd < 0) throw_errno("open " + file.string());
    const OwnedFd owner = OwnedFd::from_raw_fd(fd);
    if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) throw_errno("write " + file.string());
}

void step(const char* what) { std::printf("  [changer] %s\n", what); }

// Makes changes in `dir`, pausing between them so that the watcher's output follows along.
Task<void> make_changes(std::filesystem::path dir) {
    const auto notes = dir / "notes.txt";
    const auto renamed = dir / "renamed.txt";
    const auto subdir = dir / "subdir";

    co_await Timer::after(20ms);
    step("create notes.txt with one line");
    write_file(notes, "hello\n", O_CREAT | O_EXCL);
    co_await Timer::after(20ms);
    step("append a line to notes.txt");
    write_file(notes, "world\n", O_APPEND);
    co_await Timer::after(20ms);
    step("chmod 600 notes.txt");
    if (::chmod(notes.c_str(), 0600) < 0) throw_errno("chmod " + notes.string());
    co_await Timer::after(20ms);
    step("rename notes.txt to renamed.txt");
    std::filesystem::rename(notes, renamed);
    co_await Timer::after(20ms);
    step("mkdir subdir");
    std::filesystem::create_directory(subdir);
    co_await Timer::after(20ms);
    step("rmdir subdir");
    std::filesystem::remove(subdir);
    co_await Timer::after(20ms);
    step("delete renamed.txt");
    std::filesystem::remove(renamed);
}

// Prints events until the last expected one arrives; checks that they all came, in order.
Task<void> watch(Async<OwnedFd>& inotify, Clock::time_point start) {
    std::size_t matched = 0;
    std::size_t seen = 0;
    while (matched < kExpected.size()) {
        auto events = co_await timeout(2s, read_events(inotify));
        for (const auto& e : events) {
            print_event(e, start);
            ++seen;
            if (matched == kExpected.size()) continue;
            const auto& [mask, name] = kExpected[matched];
            if ((e.mask & mask) == mask && e.name == name) ++matched;
        }
    }
    std::printf("all %zu expected events seen (%zu events in all)\n", kExpected.size(), seen);
}

Task<void> demo() {
    const TempDir dir;
    Async<OwnedFd> inotify(watch_directory(dir.path(), kDemoMask));
    std::printf("watching %s\n", dir.path().c_str());
    const auto start = Clock::now();
    co_await timeout(10s, when_all(watch(inotify, start), make_changes(dir.path())));
    std::printf("removing %s\n", dir.path().c_str());
}

Task<void> watch_forever(std::filesystem::path dir) {
    Async<OwnedFd> inotify(watch_directory(dir, IN_ALL_EVENTS));
    std::printf("watching %s for filesystem events (Ctrl-C to stop)...\n", dir.c_str());
    const auto start = Clock::now();
    for (;;) {
        for (const auto& e : co_await read_events(inotify)) print_event(e, start);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    try {
        if (argc == 1) {
            block_on(demo());
            return 0;
        }
        if (argc == 2) {
            block_on(watch_forever(argv[1]));
            return 0;
        }
        std::fprintf(stderr, "usage: linux_inotify [DIR]\n");
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "linux_inotify: %s\n", e.what());
        return 1;
    }
}
