// platform.h on Windows (Win32 API). Paths arrive as UTF-8 and are converted to wide strings.
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <cstdint>
#include <stdexcept>

#include "platform.h"

namespace tb {

static std::wstring wide(const std::string& s) {
  if (s.empty()) return std::wstring();
  int n = MultiByteToWideChar(CP_UTF8, 0, s.data(), int(s.size()), nullptr, 0);
  std::wstring w(size_t(n > 0 ? n : 0), L'\0');
  if (n > 0) MultiByteToWideChar(CP_UTF8, 0, s.data(), int(s.size()), &w[0], n);
  return w;
}

// The system's message for a GetLastError() code, in UTF-8 without the trailing newline.
static std::string error_text(DWORD code) {
  wchar_t* buf = nullptr;
  DWORD n = FormatMessageW(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr, code,
                           0, reinterpret_cast<wchar_t*>(&buf), 0, nullptr);
  std::string out;
  if (n > 0 && buf) {
    int len = WideCharToMultiByte(CP_UTF8, 0, buf, int(n), nullptr, 0, nullptr, nullptr);
    out.resize(size_t(len > 0 ? len : 0));
    if (len > 0) WideCharToMultiByte(CP_UTF8, 0, buf, int(n), &out[0], len, nullptr, nullptr);
  }
  if (buf) LocalFree(buf);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ' || out.back() == '.')) out.pop_back();
  return out.empty() ? "error " + std::to_string(code) : out;
}

FileMap map_file(const std::string& path) {
  HANDLE f = CreateFileW(wide(path).c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, nullptr, OPEN_EXISTING,
                         FILE_ATTRIBUTE_NORMAL, nullptr);
  if (f == INVALID_HANDLE_VALUE) throw std::runtime_error(path + ": cannot open (" + error_text(GetLastError()) + ")");
  LARGE_INTEGER sz;
  if (!GetFileSizeEx(f, &sz)) {
    CloseHandle(f);
    throw std::runtime_error(path + ": cannot stat");
  }
  FileMap m;
  m.size = size_t(sz.QuadPart);
  if (m.size == 0) {  // CreateFileMapping refuses an empty file
    CloseHandle(f);
    return m;
  }
  HANDLE h = CreateFileMappingW(f, nullptr, PAGE_READONLY, 0, 0, nullptr);
  CloseHandle(f);  // the mapping object keeps the file open
  if (!h) throw std::runtime_error(path + ": mmap failed");
  void* p = MapViewOfFile(h, FILE_MAP_READ, 0, 0, 0);
  CloseHandle(h);  // the view keeps the mapping alive
  if (!p) throw std::runtime_error(path + ": mmap failed");
  m.data = p;
  return m;
}

void unmap_file(const FileMap& m) {
  if (m.data) UnmapViewOfFile(m.data);
}

void drop_pages(const void* p, size_t bytes) {
  // VirtualUnlock on pages that are not locked takes them out of the working set.
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  uintptr_t page = uintptr_t(si.dwPageSize);
  uintptr_t b = uintptr_t(p) / page * page, e = uintptr_t(p) + bytes;
  if (e > b) VirtualUnlock(reinterpret_cast<void*>(b), size_t(e - b));
}

double physical_memory_bytes() {
  MEMORYSTATUSEX ms;
  ms.dwLength = sizeof ms;
  return GlobalMemoryStatusEx(&ms) ? double(ms.ullTotalPhys) : 0.0;
}

size_t available_memory_bytes() {
  MEMORYSTATUSEX ms;
  ms.dwLength = sizeof ms;
  return GlobalMemoryStatusEx(&ms) ? size_t(ms.ullAvailPhys) : 0;
}

bool file_exists(const std::string& path) { return GetFileAttributesW(wide(path).c_str()) != INVALID_FILE_ATTRIBUTES; }

void make_dirs(const std::string& dir) {
  std::string cur;
  for (size_t i = 0; i <= dir.size(); i++) {
    if (i == dir.size() || dir[i] == '/' || dir[i] == '\\') {
      // "C:" (a drive) and "\\server" prefixes exist already or cannot be made
      if (!cur.empty() && cur.back() != ':' && cur.find_first_not_of("/\\") != std::string::npos) {
        std::wstring w = wide(cur);
        DWORD attr = GetFileAttributesW(w.c_str());
        if (attr == INVALID_FILE_ATTRIBUTES && !CreateDirectoryW(w.c_str(), nullptr)) {
          DWORD err = GetLastError();
          if (err != ERROR_ALREADY_EXISTS) throw std::runtime_error(cur + ": cannot create folder (" + error_text(err) + ")");
        }
      }
    }
    if (i < dir.size()) cur += dir[i];
  }
}

void sync_file(const std::string& path) {
  // FlushFileBuffers needs a handle with write access.
  HANDLE f = CreateFileW(wide(path).c_str(), GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, nullptr, OPEN_EXISTING,
                         FILE_ATTRIBUTE_NORMAL, nullptr);
  if (f != INVALID_HANDLE_VALUE) {
    FlushFileBuffers(f);
    CloseHandle(f);
  }
}

bool replace_file(const std::string& tmp, const std::string& path, std::string& reason) {
  std::wstring wt = wide(tmp);
  if (MoveFileExW(wt.c_str(), wide(path).c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) return true;
  reason = error_text(GetLastError());
  DeleteFileW(wt.c_str());
  return false;
}

}  // namespace tb
