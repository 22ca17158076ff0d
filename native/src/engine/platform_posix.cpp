// platform.h on POSIX (Linux, macOS).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "platform.h"

namespace tb {

FileMap map_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error(path + ": cannot open (" + strerror(errno) + ")");
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    throw std::runtime_error(path + ": cannot stat");
  }
  FileMap m;
  m.size = size_t(st.st_size);
  if (m.size == 0) {
    close(fd);
    return m;
  }
  void* p = mmap(nullptr, m.size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) throw std::runtime_error(path + ": mmap failed");
  m.data = p;
  return m;
}

void unmap_file(const FileMap& m) {
  if (m.data) munmap(const_cast<void*>(m.data), m.size);
}

void drop_pages(const void* p, size_t bytes) {
  uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  uintptr_t b = uintptr_t(p) / page * page, e = uintptr_t(p) + bytes;
  if (e > b) madvise(reinterpret_cast<void*>(b), size_t(e - b), MADV_DONTNEED);
}

double physical_memory_bytes() { return double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE)); }

size_t available_memory_bytes() {
  // MemAvailable: what the kernel can give without swapping
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
  std::fclose(f);
  return size_t(kb) * 1024;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

void make_dirs(const std::string& dir) {
  std::string cur;
  for (size_t i = 0; i <= dir.size(); i++) {
    if (i == dir.size() || dir[i] == '/') {
      if (!cur.empty()) {
        struct stat st;
        if (stat(cur.c_str(), &st) != 0 && mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
          throw std::runtime_error(cur + ": cannot create folder (" + strerror(errno) + ")");
      }
    }
    if (i < dir.size()) cur += dir[i];
  }
}

void sync_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

bool replace_file(const std::string& tmp, const std::string& path, std::string& reason) {
  if (rename(tmp.c_str(), path.c_str()) == 0) return true;
  reason = strerror(errno);
  unlink(tmp.c_str());
  return false;
}

}  // namespace tb
