#include <async_io/io.hpp>

namespace async_io {

namespace {
class IoCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "async_io"; }
    std::string message(int ev) const override {
        switch (static_cast<io_errc>(ev)) {
            case io_errc::unexpected_eof: return "unexpected end of file";
        }
        return "unknown async_io error";
    }
};
}  // namespace

const std::error_category& io_category() noexcept {
    static const IoCategory c;
    return c;
}

}  // namespace async_io
