#include "store/local_blobs/local_blob_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <format>
#include <fstream>
#include <random>

#include "core/crypto.h"

namespace statim {
namespace {

bool isHex64(const std::string& s) {
  return s.size() == 64 &&
         std::ranges::all_of(s, [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

LocalBlobStore::LocalBlobStore(std::filesystem::path root) : root_(std::move(root)) {}

std::filesystem::path LocalBlobStore::pathOf(const std::string& sha256) const {
  if (!isHex64(sha256)) return {};
  return root_ / sha256.substr(0, 2) / sha256;
}

namespace {

// A write that failed: a full disk and an unwritable one are told apart (507 / 503).
Error writeError(const std::string& what, int err) {
  if (err == ENOSPC || err == EDQUOT) {
    return {ErrorCode::kStorageFull,
            std::format("the data dir's disk is full, so nothing was stored ({}: {}); free some space and retry", what,
                        std::strerror(err)),
            {}};
  }
  if (err == EROFS || err == EACCES || err == EPERM || err == EIO) {
    return {ErrorCode::kStorageUnavailable,
            std::format("the data dir cannot be written, so nothing was stored ({}: {})", what, std::strerror(err)),
            {}};
  }
  return Error::storage(std::format("{}: {}", what, std::strerror(err)));
}

}  // namespace

Result<JobFile> LocalBlobStore::put(const std::string& name, const std::string& content_type, std::string_view bytes) {
  JobFile f{name, content_type, static_cast<std::int64_t>(bytes.size()), crypto::sha256Hex(bytes), {}};
  f.path = pathOf(f.sha256);
  std::error_code ec;
  if (std::filesystem::exists(f.path, ec)) {
    // Renew its time: removeReleased() then keeps it for the job being created with it.
    std::filesystem::last_write_time(f.path, std::filesystem::file_time_type::clock::now(), ec);
    return f;
  }
  std::filesystem::create_directories(f.path.parent_path(), ec);
  if (ec) return fail(writeError(std::format("cannot create {}", f.path.parent_path().string()), ec.value()));
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto tmp = f.path;
  tmp += std::format(".tmp-{:016x}", rng());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return fail(writeError(std::format("cannot write {}", tmp.string()), errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : ENOSPC;
      ::close(fd);
      ::unlink(tmp.c_str());
      return fail(writeError(std::format("cannot write {}", tmp.string()), err));
    }
    done += static_cast<size_t>(n);
  }
  bool synced = ::fsync(fd) == 0;
  int err = synced ? 0 : errno;
  ::close(fd);
  if (!synced || ::rename(tmp.c_str(), f.path.c_str()) != 0) {
    if (synced) err = errno;
    ::unlink(tmp.c_str());
    return fail(writeError(std::format("cannot store {}", f.path.string()), err));
  }
  return f;
}

Result<std::string> LocalBlobStore::read(const std::string& sha256) const {
  auto path = pathOf(sha256);
  std::ifstream in(path, std::ios::binary);
  if (path.empty() || !in) return fail(Error::notFound(std::format("file {} is not in the data dir", sha256)));
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void LocalBlobStore::remove(const std::string& sha256) {
  auto path = pathOf(sha256);
  std::error_code ec;
  if (!path.empty()) std::filesystem::remove(path, ec);
}

namespace {

Micros writtenAt(const std::filesystem::path& p, std::error_code& ec) {
  auto t = std::filesystem::last_write_time(p, ec);
  auto sys = std::chrono::clock_cast<std::chrono::system_clock>(t);
  return std::chrono::duration_cast<std::chrono::microseconds>(sys.time_since_epoch()).count();
}

}  // namespace

size_t LocalBlobStore::removeReleased(const std::vector<std::string>& sha256s, Micros released_at) {
  size_t removed = 0;
  for (auto& sha : sha256s) {
    auto path = pathOf(sha);
    std::error_code ec;
    if (path.empty()) continue;
    Micros t = writtenAt(path, ec);
    if (ec || t > released_at) continue;  // gone already, or uploaded again since
    if (std::filesystem::remove(path, ec)) ++removed;
  }
  return removed;
}

std::vector<std::string> LocalBlobStore::filesWrittenBefore(Micros before) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::error_code tec;
    Micros t = writtenAt(it->path(), tec);
    if (tec || t >= before) continue;
    std::string name = it->path().filename().string();
    if (isHex64(name)) {
      out.push_back(name);
    } else if (name.find(".tmp-") != std::string::npos) {
      std::filesystem::remove(it->path(), tec);  // a write that never finished
    }
  }
  return out;
}

}  // namespace statim
