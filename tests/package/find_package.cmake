# package.find_package: install the build tree into a prefix, then build and run
# consumer/ (find_package(async_io 0.1 REQUIRED) + async_io::async_io) against it; if pkg-config
# is available, also build the consumer's main.cpp from `pkg-config --cflags --libs async_io`.
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

set(prefix "${WORK_DIR}/prefix")
package_step("install the build tree into ${prefix}"
    COMMAND "${CMAKE_COMMAND}" --install "${ASYNC_IO_BINARY_DIR}" --prefix "${prefix}" --config "${CONFIG}")

package_configure("${PACKAGE_CONSUMER_DIR}" "${WORK_DIR}/consumer"
    "-DCMAKE_BUILD_TYPE=${CONFIG}"
    "-DCMAKE_PREFIX_PATH=${prefix}"
    "-DASYNC_IO_EXPECTED_PREFIX=${prefix}")
package_build("${WORK_DIR}/consumer" "${CONFIG}")
package_consumer_exe(exe "${WORK_DIR}/consumer" "${CONFIG}")
package_run_consumer("${exe}")

if(NOT PKG_CONFIG)
    message(STATUS "pkg-config not found: skipping the pkg-config consumer")
    return()
endif()

file(GLOB_RECURSE pc_files "${prefix}/*/async_io.pc")
if(NOT pc_files)
    message(FATAL_ERROR "no async_io.pc was installed under ${prefix}")
endif()
list(GET pc_files 0 pc_file)
get_filename_component(pc_dir "${pc_file}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
package_step("pkg-config --cflags --libs async_io (PKG_CONFIG_PATH=${pc_dir})"
    COMMAND "${PKG_CONFIG}" --cflags --libs async_io OUTPUT_VARIABLE pc_flags)
string(STRIP "${pc_flags}" pc_flags)
message(STATUS "   -> ${pc_flags}")
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
separate_arguments(cxx_flags UNIX_COMMAND "${CXX_FLAGS} ${EXE_LINKER_FLAGS}")
set(pc_exe "${WORK_DIR}/consumer_pkg_config")
package_step("compile the consumer with pkg-config's flags"
    COMMAND "${CXX_COMPILER}" -std=c++20 ${cxx_flags} "${PACKAGE_CONSUMER_DIR}/main.cpp"
            -o "${pc_exe}" ${pc_flags})
if(SHARED)
    package_step("pkg-config --variable=libdir async_io"
        COMMAND "${PKG_CONFIG}" --variable=libdir async_io OUTPUT_VARIABLE libdir)
    string(STRIP "${libdir}" libdir)
    set(ENV{LD_LIBRARY_PATH} "${libdir}")
endif()
package_run_consumer("${pc_exe}")
