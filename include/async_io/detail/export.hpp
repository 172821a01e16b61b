// ASYNC_IO_API marks the functions and classes that the compiled library exports, so that a
// shared build (BUILD_SHARED_LIBS=ON) works also where symbols are hidden by default.
#pragma once

#if defined(_WIN32)
#  if defined(ASYNC_IO_SHARED) && defined(ASYNC_IO_BUILDING)
#    define ASYNC_IO_API __declspec(dllexport)
#  elif defined(ASYNC_IO_SHARED)
#    define ASYNC_IO_API __declspec(dllimport)
#  else
#    define ASYNC_IO_API
#  endif
#else
#  define ASYNC_IO_API __attribute__((visibility("default")))
#endif
