# Cross-compiles the engine for 64-bit Windows with MinGW-w64 (Debian g++-mingw-w64-x86-64-posix):
#   cmake -S native -B native/build/windows -DCMAKE_TOOLCHAIN_FILE=native/cmake/mingw-w64.cmake -DTUNEBENCH_GEMM=builtin
# The posix thread model is needed for std::thread / std::mutex with GCC 12.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(TUNEBENCH_MINGW_PREFIX x86_64-w64-mingw32)
find_program(TUNEBENCH_MINGW_CXX NAMES ${TUNEBENCH_MINGW_PREFIX}-g++-posix ${TUNEBENCH_MINGW_PREFIX}-g++)
find_program(TUNEBENCH_MINGW_CC NAMES ${TUNEBENCH_MINGW_PREFIX}-gcc-posix ${TUNEBENCH_MINGW_PREFIX}-gcc)
if(NOT TUNEBENCH_MINGW_CXX OR NOT TUNEBENCH_MINGW_CC)
  message(FATAL_ERROR "mingw-w64.cmake: no ${TUNEBENCH_MINGW_PREFIX}-g++ (Debian: apt-get install g++-mingw-w64-x86-64-posix)")
endif()
set(CMAKE_C_COMPILER ${TUNEBENCH_MINGW_CC})
set(CMAKE_CXX_COMPILER ${TUNEBENCH_MINGW_CXX})
set(CMAKE_RC_COMPILER ${TUNEBENCH_MINGW_PREFIX}-windres)

set(CMAKE_FIND_ROOT_PATH /usr/${TUNEBENCH_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# One .exe without the MinGW runtime DLLs (libstdc++, libgcc, winpthread, libgomp) beside it:
# -static, and FindOpenMP given the static libgomp (it would take libgomp.dll.a).
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
execute_process(COMMAND ${TUNEBENCH_MINGW_CXX} -print-file-name=libgomp.a OUTPUT_VARIABLE TUNEBENCH_MINGW_GOMP OUTPUT_STRIP_TRAILING_WHITESPACE)
if(IS_ABSOLUTE "${TUNEBENCH_MINGW_GOMP}" AND EXISTS "${TUNEBENCH_MINGW_GOMP}")
  set(OpenMP_gomp_LIBRARY "${TUNEBENCH_MINGW_GOMP}" CACHE FILEPATH "libgomp for FindOpenMP (static)")
endif()
