# package.vcpkg_port_steps: runs ports/async-io/portfile.cmake as vcpkg would for a static Linux
# triplet, without vcpkg: the vcpkg functions the portfile calls are defined below, each doing
# what vcpkg's own does for this port (vcpkg_cmake_configure: Release and Debug trees with vcpkg's
# standard options; vcpkg_cmake_install; vcpkg_cmake_config_fixup: config moved to share/<name>,
# debug targets merged in; vcpkg_fixup_pkgconfig; vcpkg_install_copyright). Then it applies the
# post-build checks of vcpkg that this port can trip, "installs" the package like vcpkg does
# (installed/<triplet>) and builds consumer/ against it with find_package, in Release.
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")

set(PORT async-io)
set(TARGET_TRIPLET x64-linux)
set(VCPKG_LIBRARY_LINKAGE static)
set(VCPKG_TARGET_IS_LINUX ON)
set(CURRENT_BUILDTREES_DIR "${WORK_DIR}/buildtrees/${PORT}")
set(CURRENT_PACKAGES_DIR "${WORK_DIR}/packages/${PORT}_${TARGET_TRIPLET}")
set(CURRENT_INSTALLED_DIR "${WORK_DIR}/installed/${TARGET_TRIPLET}")
file(MAKE_DIRECTORY "${CURRENT_BUILDTREES_DIR}" "${CURRENT_PACKAGES_DIR}" "${CURRENT_INSTALLED_DIR}")

# The portfile reads the environment to find the sources; make sure it uses the tree under test.
set(ENV{ASYNC_IO_SOURCE_DIR} "${ASYNC_IO_SOURCE_DIR}")

# --- emulated vcpkg functions ----------------------------------------------------------------

function(vcpkg_cmake_configure)
    cmake_parse_arguments(PARSE_ARGV 0 arg "DISABLE_PARALLEL_CONFIGURE;WINDOWS_USE_MSBUILD;NO_CHARSET_FLAG"
        "SOURCE_PATH;GENERATOR;LOGFILE_BASE" "OPTIONS;OPTIONS_DEBUG;OPTIONS_RELEASE;MAYBE_UNUSED_VARIABLES")
    if(DEFINED arg_UNPARSED_ARGUMENTS)
        message(FATAL_ERROR "vcpkg_cmake_configure was passed extra arguments: ${arg_UNPARSED_ARGUMENTS}")
    endif()
    if(NOT IS_DIRECTORY "${arg_SOURCE_PATH}")
        message(FATAL_ERROR "vcpkg_cmake_configure: SOURCE_PATH '${arg_SOURCE_PATH}' is not a directory")
    endif()
    # What vcpkg_cmake_configure and vcpkg's Linux toolchain add to every port's configure.
    set(common
        -DBUILD_SHARED_LIBS=OFF
        -DCMAKE_INSTALL_LIBDIR:STRING=lib
        -DCMAKE_INSTALL_BINDIR:STRING=bin
        -DCMAKE_EXPORT_NO_PACKAGE_REGISTRY=ON
        -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON
        -DCMAKE_FIND_PACKAGE_NO_SYSTEM_PACKAGE_REGISTRY=ON
        -DCMAKE_INSTALL_SYSTEM_RUNTIME_LIBS_SKIP=TRUE
        -DCMAKE_ERROR_ON_ABSOLUTE_INSTALL_DESTINATION=ON
        "-DCMAKE_CXX_FLAGS=-fPIC ${CXX_FLAGS}")
    foreach(config IN ITEMS Release Debug)
        if(config STREQUAL "Release")
            set(dir "${CURRENT_BUILDTREES_DIR}/${TARGET_TRIPLET}-rel")
            set(prefix "${CURRENT_PACKAGES_DIR}")
            set(extra ${arg_OPTIONS_RELEASE})
        else()
            set(dir "${CURRENT_BUILDTREES_DIR}/${TARGET_TRIPLET}-dbg")
            set(prefix "${CURRENT_PACKAGES_DIR}/debug")
            set(extra ${arg_OPTIONS_DEBUG})
        endif()
        set(args -S "${arg_SOURCE_PATH}" -B "${dir}" -G "${GENERATOR}"
            "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
            "-DCMAKE_BUILD_TYPE=${config}"
            "-DCMAKE_INSTALL_PREFIX=${prefix}"
            ${common} ${arg_OPTIONS} ${extra})
        if(MAKE_PROGRAM)
            list(APPEND args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
        endif()
        package_step("vcpkg_cmake_configure (${config})"
            COMMAND "${CMAKE_COMMAND}" ${args} OUTPUT_VARIABLE out)
        # vcpkg reports options the project ignores; one of the port's own is a mistake.
        if(out MATCHES "Manually-specified variables were not used by the project:\n\n(( +[^\n]+\n)+)")
            set(unused "${CMAKE_MATCH_1}")
            foreach(option IN LISTS arg_OPTIONS extra)
                if(NOT option MATCHES "^-D([^:=]+)")
                    continue()
                endif()
                set(name "${CMAKE_MATCH_1}")
                if(NOT name IN_LIST arg_MAYBE_UNUSED_VARIABLES AND unused MATCHES " ${name}\n")
                    message(FATAL_ERROR "the portfile passes ${option}, which the project does not use")
                endif()
            endforeach()
        endif()
        set_property(GLOBAL APPEND PROPERTY Z_VCPKG_BUILD_DIRS "${dir}")
    endforeach()
endfunction()

function(vcpkg_cmake_install)
    get_property(dirs GLOBAL PROPERTY Z_VCPKG_BUILD_DIRS)
    if(NOT dirs)
        message(FATAL_ERROR "vcpkg_cmake_install called before vcpkg_cmake_configure")
    endif()
    foreach(dir IN LISTS dirs)
        package_step("vcpkg_cmake_install (${dir})" COMMAND "${CMAKE_COMMAND}" --build "${dir}" --target install)
    endforeach()
endfunction()

function(vcpkg_cmake_config_fixup)
    cmake_parse_arguments(PARSE_ARGV 0 arg "DO_NOT_DELETE_PARENT_CONFIG_PATH;NO_PREFIX_CORRECTION"
        "PACKAGE_NAME;CONFIG_PATH" "")
    if(NOT arg_PACKAGE_NAME)
        set(arg_PACKAGE_NAME "${PORT}")
    endif()
    if(NOT arg_CONFIG_PATH)
        set(arg_CONFIG_PATH "share/${arg_PACKAGE_NAME}")
    endif()
    message(STATUS "vcpkg_cmake_config_fixup(PACKAGE_NAME ${arg_PACKAGE_NAME} CONFIG_PATH ${arg_CONFIG_PATH})")
    set(release_share "${CURRENT_PACKAGES_DIR}/share/${arg_PACKAGE_NAME}")
    set(debug_share "${CURRENT_PACKAGES_DIR}/debug/share/${arg_PACKAGE_NAME}")

    if(NOT arg_CONFIG_PATH STREQUAL "share/${arg_PACKAGE_NAME}")
        foreach(root IN ITEMS "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}")
            set(from "${root}/${arg_CONFIG_PATH}")
            set(to "${root}/share/${arg_PACKAGE_NAME}")
            if(NOT EXISTS "${from}")
                message(FATAL_ERROR "vcpkg_cmake_config_fixup: '${from}' does not exist")
            endif()
            file(MAKE_DIRECTORY "${to}")
            file(GLOB files "${from}/*")
            file(COPY ${files} DESTINATION "${to}")
            file(REMOVE_RECURSE "${from}")
            # The parent directory goes too when it is named cmake (lib/cmake).
            get_filename_component(parent "${from}" DIRECTORY)
            get_filename_component(parent_name "${parent}" NAME)
            string(TOLOWER "${parent_name}" parent_name)
            if(parent_name STREQUAL "cmake" AND NOT arg_DO_NOT_DELETE_PARENT_CONFIG_PATH)
                file(REMOVE_RECURSE "${parent}")
            endif()
        endforeach()
    endif()

    file(GLOB_RECURSE unused "${debug_share}/*[Tt]argets.cmake" "${debug_share}/*[Cc]onfig.cmake"
        "${debug_share}/*[Cc]onfigVersion.cmake" "${debug_share}/*[Cc]onfig-version.cmake")
    if(unused)
        file(REMOVE ${unused})
    endif()

    file(GLOB_RECURSE debug_targets "${debug_share}/*-debug.cmake")
    foreach(file IN LISTS debug_targets)
        file(RELATIVE_PATH rel "${debug_share}" "${file}")
        file(READ "${file}" contents)
        string(REPLACE "${CURRENT_INSTALLED_DIR}" "\${_IMPORT_PREFIX}" contents "${contents}")
        string(REPLACE "\${_IMPORT_PREFIX}/lib" "\${_IMPORT_PREFIX}/debug/lib" contents "${contents}")
        string(REPLACE "\${_IMPORT_PREFIX}/bin" "\${_IMPORT_PREFIX}/debug/bin" contents "${contents}")
        file(WRITE "${release_share}/${rel}" "${contents}")
        file(REMOVE "${file}")
    endforeach()

    file(GLOB_RECURSE main_cmakes "${release_share}/*.cmake")
    foreach(file IN LISTS main_cmakes)
        file(READ "${file}" contents)
        if(NOT arg_NO_PREFIX_CORRECTION)
            string(REGEX REPLACE
[[get_filename_component\(_IMPORT_PREFIX "\${CMAKE_CURRENT_LIST_FILE}" PATH\)(
get_filename_component\(_IMPORT_PREFIX "\${_IMPORT_PREFIX}" PATH\))*]]
[[get_filename_component(_IMPORT_PREFIX "${CMAKE_CURRENT_LIST_FILE}" PATH)
get_filename_component(_IMPORT_PREFIX "${_IMPORT_PREFIX}" PATH)
get_filename_component(_IMPORT_PREFIX "${_IMPORT_PREFIX}" PATH)]]
                contents "${contents}")
            string(REGEX REPLACE
[[get_filename_component\(PACKAGE_PREFIX_DIR "\${CMAKE_CURRENT_LIST_DIR}/\.\./(\.\./)*" ABSOLUTE\)]]
[[get_filename_component(PACKAGE_PREFIX_DIR "${CMAKE_CURRENT_LIST_DIR}/../../" ABSOLUTE)]]
                contents "${contents}")
        endif()
        string(REPLACE "${CURRENT_INSTALLED_DIR}" [[${_IMPORT_PREFIX}]] contents "${contents}")
        string(REPLACE "${CURRENT_PACKAGES_DIR}" [[${_IMPORT_PREFIX}]] contents "${contents}")
        file(WRITE "${file}" "${contents}")
    endforeach()

    foreach(dir IN ITEMS "${debug_share}" "${CURRENT_PACKAGES_DIR}/debug/share")
        file(GLOB_RECURSE remaining "${dir}/*")
        if(NOT remaining)
            file(REMOVE_RECURSE "${dir}")
        endif()
    endforeach()
endfunction()

function(vcpkg_fixup_pkgconfig)
    file(GLOB_RECURSE all_files "${CURRENT_PACKAGES_DIR}/*.pc")
    set(release_files)
    set(debug_files)
    foreach(file IN LISTS all_files)
        string(FIND "${file}" "${CURRENT_PACKAGES_DIR}/debug/" at)
        if(at EQUAL 0)
            list(APPEND debug_files "${file}")
        else()
            list(APPEND release_files "${file}")
        endif()
    endforeach()
    foreach(config IN ITEMS release debug)
        if(config STREQUAL "release")
            set(root "${CURRENT_PACKAGES_DIR}")
        else()
            set(root "${CURRENT_PACKAGES_DIR}/debug")
        endif()
        foreach(file IN LISTS ${config}_files)
            message(STATUS "vcpkg_fixup_pkgconfig: ${file}")
            get_filename_component(dir "${file}" DIRECTORY)
            file(RELATIVE_PATH rel "${dir}" "${root}")
            string(REGEX REPLACE "/$" "" rel "${rel}")
            file(READ "${file}" contents)
            string(REPLACE "${root}" "\${prefix}" contents "${contents}")
            string(REPLACE "${CURRENT_INSTALLED_DIR}" "\${prefix}" contents "${contents}")
            string(REGEX REPLACE "(^|\n)prefix=[^\n]*" "\\1prefix=\${pcfiledir}/${rel}" contents "${contents}")
            if(config STREQUAL "debug")
                string(REPLACE "\${prefix}/include" "\${prefix}/../include" contents "${contents}")
            endif()
            file(WRITE "${file}" "${contents}")
        endforeach()
    endforeach()
    if(NOT PKG_CONFIG)
        message(STATUS "vcpkg_fixup_pkgconfig: no pkg-config, skipping its checks")
        return()
    endif()
    # vcpkg's check: the module resolves, and every -l names a library in its -L directories.
    foreach(file IN LISTS release_files debug_files)
        get_filename_component(dir "${file}" DIRECTORY)
        get_filename_component(name "${file}" NAME_WE)
        set(ENV{PKG_CONFIG_PATH} "${dir}")
        package_step("pkg-config --libs ${name} (${dir})"
            COMMAND "${PKG_CONFIG}" --print-errors --static --libs "${name}" OUTPUT_VARIABLE libs)
        string(STRIP "${libs}" libs)
        separate_arguments(libs UNIX_COMMAND "${libs}")
        set(search)
        foreach(flag IN LISTS libs)
            if(flag MATCHES "^-L(.+)")
                list(APPEND search "${CMAKE_MATCH_1}")
            endif()
        endforeach()
        foreach(flag IN LISTS libs)
            if(flag MATCHES "^-l(.+)")
                set(lib "${CMAKE_MATCH_1}")
                set(found OFF)
                foreach(s IN LISTS search)
                    if(EXISTS "${s}/lib${lib}.a" OR EXISTS "${s}/lib${lib}.so")
                        set(found ON)
                    endif()
                endforeach()
                if(NOT found)
                    message(FATAL_ERROR "${file}: library -l${lib} not found in -L ${search}")
                endif()
            elseif(NOT flag MATCHES "^(-L.+|-pthread)$")
                message(FATAL_ERROR "${file}: vcpkg_fixup_pkgconfig does not handle '${flag}' in Libs")
            endif()
        endforeach()
        package_step("pkg-config --cflags ${name} (${dir})"
            COMMAND "${PKG_CONFIG}" --print-errors --cflags "${name}" OUTPUT_VARIABLE cflags)
        string(STRIP "${cflags}" cflags)
        separate_arguments(cflags UNIX_COMMAND "${cflags}")
        foreach(flag IN LISTS cflags)
            if(flag MATCHES "^-I(.+)")
                set(include_dir "${CMAKE_MATCH_1}")
                if(NOT IS_DIRECTORY "${include_dir}")
                    message(FATAL_ERROR "${file}: include directory ${include_dir} does not exist")
                endif()
            endif()
        endforeach()
    endforeach()
endfunction()

function(vcpkg_install_copyright)
    cmake_parse_arguments(PARSE_ARGV 0 arg "" "COMMENT" "FILE_LIST")
    set(out "")
    foreach(file IN LISTS arg_FILE_LIST)
        if(NOT EXISTS "${file}")
            message(FATAL_ERROR "vcpkg_install_copyright: ${file} does not exist")
        endif()
        file(READ "${file}" text)
        get_filename_component(name "${file}" NAME)
        string(APPEND out "${name}:\n\n${text}\n")
    endforeach()
    file(WRITE "${CURRENT_PACKAGES_DIR}/share/${PORT}/copyright" "${out}")
endfunction()

# --- the port ---------------------------------------------------------------------------------

set(portfile "${ASYNC_IO_SOURCE_DIR}/ports/${PORT}/portfile.cmake")
message(STATUS "running ${portfile}")
include("${portfile}")

# --- vcpkg's post-build checks that apply ------------------------------------------------------

set(p "${CURRENT_PACKAGES_DIR}")
foreach(required IN ITEMS
        include/async_io/async.hpp lib/libasync_io.a debug/lib/libasync_io.a
        share/async_io/async_ioConfig.cmake share/async_io/async_ioConfigVersion.cmake
        share/async_io/async_ioTargets.cmake share/async_io/async_ioTargets-release.cmake
        share/async_io/async_ioTargets-debug.cmake
        lib/pkgconfig/async_io.pc debug/lib/pkgconfig/async_io.pc
        share/${PORT}/copyright share/${PORT}/usage)
    if(NOT EXISTS "${p}/${required}")
        message(FATAL_ERROR "post-build check: ${required} is missing from the package")
    endif()
endforeach()
foreach(forbidden IN ITEMS debug/include debug/share lib/cmake debug/lib/cmake)
    if(EXISTS "${p}/${forbidden}")
        message(FATAL_ERROR "post-build check: ${forbidden} should not exist in the package")
    endif()
endforeach()
file(GLOB_RECURSE all_files LIST_DIRECTORIES ON "${p}/*")
foreach(entry IN LISTS all_files)
    if(IS_DIRECTORY "${entry}")
        file(GLOB children "${entry}/*")
        if(NOT children)
            message(FATAL_ERROR "post-build check: empty directory ${entry}")
        endif()
    elseif(entry MATCHES "\\.(cmake|pc|hpp|h)$" OR entry MATCHES "/(copyright|usage)$")
        file(READ "${entry}" text)
        foreach(absolute IN ITEMS "${WORK_DIR}" "${ASYNC_IO_SOURCE_DIR}" "${ASYNC_IO_BINARY_DIR}")
            string(FIND "${text}" "${absolute}" at)
            if(NOT at EQUAL -1)
                message(FATAL_ERROR "post-build check: ${entry} contains the absolute path ${absolute}")
            endif()
        endforeach()
    endif()
endforeach()
message(STATUS "post-build checks passed")

# --- "vcpkg install": the package lands in installed/<triplet>, where users' builds find it ------

file(COPY "${p}/" DESTINATION "${CURRENT_INSTALLED_DIR}")

package_configure("${PACKAGE_CONSUMER_DIR}" "${WORK_DIR}/consumer"
    -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_PREFIX_PATH=${CURRENT_INSTALLED_DIR}"
    "-DASYNC_IO_EXPECTED_PREFIX=${CURRENT_INSTALLED_DIR}"
    -DASYNC_IO_EXPECT_RELEASE_AND_DEBUG=ON)
package_build("${WORK_DIR}/consumer" Release)
package_consumer_exe(exe "${WORK_DIR}/consumer" Release)
package_run_consumer("${exe}")
