# Shared by the package test scripts (cmake -P). tests/package/CMakeLists.txt passes, with -D:
#   ASYNC_IO_SOURCE_DIR, ASYNC_IO_BINARY_DIR  the checkout and the build tree under test
#   WORK_DIR                                  scratch directory, emptied first
#   CONFIG                                    the tree's build type (may be empty)
#   GENERATOR, MAKE_PROGRAM, CXX_COMPILER, CXX_FLAGS, EXE_LINKER_FLAGS   passed on to sub-builds
#   SHARED                                    the tree's BUILD_SHARED_LIBS
#   PKG_CONFIG                                pkg-config executable, or a false value
cmake_minimum_required(VERSION 3.21)

foreach(_var IN ITEMS ASYNC_IO_SOURCE_DIR ASYNC_IO_BINARY_DIR WORK_DIR GENERATOR CXX_COMPILER)
    if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
        message(FATAL_ERROR "${CMAKE_CURRENT_LIST_FILE}: -D${_var}=... is required")
    endif()
endforeach()
if("${CONFIG}" STREQUAL "")
    set(CONFIG Release)
endif()

set(PACKAGE_CONSUMER_DIR "${CMAKE_CURRENT_LIST_DIR}/consumer")

# package_step(<what> COMMAND <cmd>... [WORKING_DIRECTORY <dir>] [OUTPUT_VARIABLE <var>])
# Runs a command; on failure prints its output and stops the test.
function(package_step what)
    cmake_parse_arguments(PARSE_ARGV 1 arg "" "WORKING_DIRECTORY;OUTPUT_VARIABLE" "COMMAND")
    if(NOT arg_WORKING_DIRECTORY)
        set(arg_WORKING_DIRECTORY "${WORK_DIR}")
    endif()
    list(JOIN arg_COMMAND " " pretty)
    message(STATUS "${what}\n   $ ${pretty}")
    execute_process(COMMAND ${arg_COMMAND}
        WORKING_DIRECTORY "${arg_WORKING_DIRECTORY}"
        RESULT_VARIABLE rc
        OUTPUT_VARIABLE out
        ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
        message("${out}")
        message(FATAL_ERROR "FAILED (${rc}): ${what}")
    endif()
    if(arg_OUTPUT_VARIABLE)
        set(${arg_OUTPUT_VARIABLE} "${out}" PARENT_SCOPE)
    endif()
endfunction()

# package_configure(<source dir> <build dir> <extra cmake args>...)
# Configures a project with this tree's generator, compiler and flags.
function(package_configure source_dir build_dir)
    set(args -S "${source_dir}" -B "${build_dir}" -G "${GENERATOR}"
        "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
        "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
        "-DCMAKE_EXE_LINKER_FLAGS=${EXE_LINKER_FLAGS}"
        -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON
        -DCMAKE_FIND_PACKAGE_NO_SYSTEM_PACKAGE_REGISTRY=ON)
    if(MAKE_PROGRAM)
        list(APPEND args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
    endif()
    package_step("configure ${source_dir}"
        COMMAND "${CMAKE_COMMAND}" ${args} ${ARGN})
endfunction()

# package_build(<build dir> <config> [<extra cmake --build args>...])
function(package_build build_dir config)
    package_step("build ${build_dir} (${config})"
        COMMAND "${CMAKE_COMMAND}" --build "${build_dir}" --config "${config}" ${ARGN})
endfunction()

# package_run_consumer(<executable>): runs the consumer program, which must print "ok".
function(package_run_consumer exe)
    if(NOT EXISTS "${exe}")
        message(FATAL_ERROR "the consumer was not built: ${exe} does not exist")
    endif()
    package_step("run ${exe}" COMMAND "${exe}" OUTPUT_VARIABLE out)
    if(NOT out MATCHES "(^|\n)ok\n")
        message(FATAL_ERROR "${exe} printed '${out}', expected 'ok'")
    endif()
    message(STATUS "   -> ok")
endfunction()

# package_consumer_exe(<var> <build dir> <config>): where the consumer executable landed (single-
# or multi-config generator).
function(package_consumer_exe out_var build_dir config)
    if(EXISTS "${build_dir}/${config}/consumer${CMAKE_EXECUTABLE_SUFFIX}")
        set(${out_var} "${build_dir}/${config}/consumer${CMAKE_EXECUTABLE_SUFFIX}" PARENT_SCOPE)
    else()
        set(${out_var} "${build_dir}/consumer${CMAKE_EXECUTABLE_SUFFIX}" PARENT_SCOPE)
    endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
