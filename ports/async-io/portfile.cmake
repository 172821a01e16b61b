# Overlay port for async_io:  vcpkg install async-io --overlay-ports=<checkout>/ports
#
# It builds the checkout it lives in (two directories up), or the one named by the environment
# variable ASYNC_IO_SOURCE_DIR (vcpkg clears the environment of port builds: also set
# VCPKG_KEEP_ENV_VARS=ASYNC_IO_SOURCE_DIR). A port for a released version fetches the sources
# instead:
#   vcpkg_from_github(OUT_SOURCE_PATH SOURCE_PATH REPO <owner>/async_io REF "v${VERSION}" SHA512 <sha>)
#
# tests/package/vcpkg_port_steps.cmake runs this file in CI with the vcpkg functions emulated.
if(DEFINED ENV{ASYNC_IO_SOURCE_DIR})
    set(SOURCE_PATH "$ENV{ASYNC_IO_SOURCE_DIR}")
else()
    get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
endif()

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DASYNC_IO_BUILD_TESTS=OFF
        -DASYNC_IO_BUILD_EXAMPLES=OFF
        -DASYNC_IO_BUILD_BENCHES=OFF
        -DASYNC_IO_WARNINGS_AS_ERRORS=OFF
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME async_io CONFIG_PATH lib/cmake/async_io)
vcpkg_fixup_pkgconfig()

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug/include")

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE-APACHE" "${SOURCE_PATH}/LICENSE-MIT")
