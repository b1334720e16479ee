// Helpers shared by the libFuzzer targets (tests/fuzz/README.md).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace statim::fuzz {

// The fuzz input as a file (for parsers that take a path): an anonymous in-memory file, reached
// through /proc/self/fd. Closed when the object goes.
class MemFile {
 public:
  explicit MemFile(std::string_view bytes) : fd_(memfd_create("statim-fuzz", 0)) {
    if (fd_ < 0 || ::write(fd_, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) std::abort();
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_;
  std::string path_;
};

// An invariant the target checks: a violation is a crash libFuzzer reports, with the input.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace statim::fuzz
