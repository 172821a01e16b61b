# Install rules: the library, the public headers, a CMake package (async_ioConfig.cmake with the
# exported target async_io::async_io) and a pkg-config file. Included from the top-level
# CMakeLists when ASYNC_IO_INSTALL is ON. Every destination is relative to the install prefix, so
# the installed tree is relocatable (vcpkg moves it).

include(CMakePackageConfigHelpers)

set(ASYNC_IO_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/async_io"
    CACHE STRING "Where async_ioConfig.cmake is installed, relative to the install prefix")
set(ASYNC_IO_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig"
    CACHE STRING "Where async_io.pc is installed, relative to the install prefix")

install(TARGETS async_io
    EXPORT async_ioTargets
    ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
    LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
    RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/async_io"
    DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

install(EXPORT async_ioTargets
    NAMESPACE async_io::
    DESTINATION "${ASYNC_IO_INSTALL_CMAKEDIR}")

configure_package_config_file(
    "${PROJECT_SOURCE_DIR}/cmake/async_ioConfig.cmake.in"
    "${PROJECT_BINARY_DIR}/async_ioConfig.cmake"
    INSTALL_DESTINATION "${ASYNC_IO_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
    "${PROJECT_BINARY_DIR}/async_ioConfigVersion.cmake"
    VERSION ${PROJECT_VERSION}
    COMPATIBILITY SameMajorVersion)
install(FILES
    "${PROJECT_BINARY_DIR}/async_ioConfig.cmake"
    "${PROJECT_BINARY_DIR}/async_ioConfigVersion.cmake"
    DESTINATION "${ASYNC_IO_INSTALL_CMAKEDIR}")

# pkg-config: paths are relative to the .pc file (${pcfiledir}) when the install dirs are
# relative, so the file stays right after `cmake --install --prefix` or a move.
if(IS_ABSOLUTE "${ASYNC_IO_INSTALL_PKGCONFIGDIR}")
    set(ASYNC_IO_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
    file(RELATIVE_PATH _rel "/root/${ASYNC_IO_INSTALL_PKGCONFIGDIR}" "/root")
    string(REGEX REPLACE "/$" "" _rel "${_rel}")
    set(ASYNC_IO_PC_PREFIX "\${pcfiledir}/${_rel}")
endif()
foreach(_dir IN ITEMS LIBDIR INCLUDEDIR)
    if(IS_ABSOLUTE "${CMAKE_INSTALL_${_dir}}")
        set(ASYNC_IO_PC_${_dir} "${CMAKE_INSTALL_${_dir}}")
    else()
        set(ASYNC_IO_PC_${_dir} "\${prefix}/${CMAKE_INSTALL_${_dir}}")
    endif()
endforeach()
if(BUILD_SHARED_LIBS)
    set(ASYNC_IO_PC_CFLAGS " -DASYNC_IO_SHARED")
else()
    set(ASYNC_IO_PC_CFLAGS "")
endif()
configure_file("${PROJECT_SOURCE_DIR}/cmake/async_io.pc.in" "${PROJECT_BINARY_DIR}/async_io.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/async_io.pc" DESTINATION "${ASYNC_IO_INSTALL_PKGCONFIGDIR}")
