# Helpers shared by the project's own CMakeLists (library, tests, examples, benches). Nothing here
# reaches the exported target: warnings are PRIVATE to each of our targets, never usage
# requirements, so a user's build of the installed package never gets -Werror from us.

# Adds the warning flags to `target` (PRIVATE), and -Werror when ASYNC_IO_WARNINGS_AS_ERRORS is ON.
function(async_io_target_warnings target)
    if(MSVC)
        target_compile_options(${target} PRIVATE /W4 /permissive-)
        if(ASYNC_IO_WARNINGS_AS_ERRORS)
            target_compile_options(${target} PRIVATE /WX)
        endif()
    else()
        target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
        if(ASYNC_IO_WARNINGS_AS_ERRORS)
            target_compile_options(${target} PRIVATE -Werror)
        endif()
    endif()
endfunction()

# Sets `out_var` to the sanitizers this tree is built with ("address,undefined", "thread", ...),
# read from CMAKE_CXX_FLAGS, or to "none". Tests see it as the environment variable
# ASYNC_IO_SANITIZER, e.g. to widen timing bounds under TSan.
function(async_io_sanitizer out_var)
    set(result "")
    string(REGEX MATCHALL "-fsanitize=[^ ]+" flags "${CMAKE_CXX_FLAGS}")
    foreach(flag IN LISTS flags)
        string(REPLACE "-fsanitize=" "" value "${flag}")
        list(APPEND result ${value})
    endforeach()
    if(result)
        list(JOIN result "," result)
    else()
        set(result none)
    endif()
    set(${out_var} "${result}" PARENT_SCOPE)
endfunction()
