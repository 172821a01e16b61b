# package.add_subdirectory: build and run subdir/, a project that add_subdirectory()s this checkout.
# subdir/CMakeLists.txt itself fails the configure if the checkout, not being top-level, defines
# anything besides the library (tests, examples, benches) or exports -Werror.
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

package_configure("${CMAKE_CURRENT_LIST_DIR}/subdir" "${WORK_DIR}/build"
    "-DCMAKE_BUILD_TYPE=${CONFIG}"
    "-DASYNC_IO_SOURCE_DIR=${ASYNC_IO_SOURCE_DIR}")
package_build("${WORK_DIR}/build" "${CONFIG}")
package_consumer_exe(exe "${WORK_DIR}/build" "${CONFIG}")
package_run_consumer("${exe}")
