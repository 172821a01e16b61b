// The smallest program a user of the package writes: one header, one timer, one block_on.
#include <async_io/async.hpp>

#include <chrono>
#include <iostream>

int main() {
    async_io::block_on(async_io::Timer::after(std::chrono::milliseconds(1)));
    std::cout << "ok\n";
}
