// The engine's operating-system calls, one implementation per OS: platform_posix.cpp (Linux,
// macOS) and platform_win32.cpp (Windows, Win32 API), chosen by CMake. Paths are UTF-8
// everywhere (wide strings only inside platform_win32.cpp).
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace tb {

// A whole file mapped read-only (its pages are the page cache's). An empty file is not mapped
// (data nullptr, size 0). Throws std::runtime_error naming the file: "<path>: cannot open
// (<reason>)", "<path>: cannot stat", "<path>: mmap failed".
struct FileMap {
  const void* data = nullptr;
  size_t size = 0;
};
FileMap map_file(const std::string& path);
void unmap_file(const FileMap& m);
// The mapped range [p, p + bytes) will not be read again: drop its whole pages (best effort).
void drop_pages(const void* p, size_t bytes);

// Bytes of physical memory (0 or less: unknown).
double physical_memory_bytes();
// Bytes an allocation can take now without swapping (0: unknown).
size_t available_memory_bytes();

// Whether path names something that exists (stat succeeds).
bool file_exists(const std::string& path);
// Creates dir and its missing parents; throws "<folder>: cannot create folder (<reason>)".
void make_dirs(const std::string& dir);
// Flushes a written file to the disk (best effort, errors ignored).
void sync_file(const std::string& path);
// Renames tmp over path, replacing it atomically. On failure removes tmp and returns false with
// the system's reason.
bool replace_file(const std::string& tmp, const std::string& path, std::string& reason);

// A UTF-8 path for std::fstream (wide on Windows).
inline std::filesystem::path fs_path(const std::string& utf8) { return std::filesystem::u8path(utf8); }

// Throws "<tmp>: <what> (<the C library's reason for err>)" after removing the temporary file,
// so a full disk gets its space back and no half-written file stays. The reason's text ("No
// space left on device", "Read-only file system") is what the app's messages recognise.
[[noreturn]] inline void throw_write_failure(const std::string& tmp, const std::string& what, int err) {
  std::string why = err ? std::strerror(err) : "unknown error";
  std::error_code ec;
  std::filesystem::remove(fs_path(tmp), ec);
  throw std::runtime_error(tmp + ": " + what + " (" + why + ")");
}

}  // namespace tb
