// Files of jobs (inputs and artifacts) in the data dir, content-addressed:
// <root>/<first 2 hex of sha256>/<sha256>. Names come only from hashes, never from user input,
// so no request can make a path outside the root. Writes are atomic (temp file, fsync, rename);
// the same bytes are stored once.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "statim/error.h"
#include "statim/job.h"

namespace statim {

class BlobStore {
 public:
  explicit BlobStore(std::filesystem::path root);
  // Writes `bytes` (if not stored yet) and describes them as a file named `name`.
  Result<JobFile> put(const std::string& name, const std::string& content_type, std::string_view bytes);
  std::filesystem::path pathOf(const std::string& sha256) const;
  // Reads a stored file whole.
  Result<std::string> read(const std::string& sha256) const;
  // Deletes the bytes of `sha256` (the caller knows no row refers to them any more).
  void remove(const std::string& sha256);
  // Deletes those of `sha256s` not written since `released_at` (put() of bytes already stored
  // renews their time): a file released by deleted jobs may meanwhile have been uploaded again
  // for a job whose row is not committed yet. Returns how many were removed.
  size_t removeReleased(const std::vector<std::string>& sha256s, Micros released_at);
  // Stored files last written before `before` (candidates for the orphan sweep); interrupted
  // writes (temp files) older than that are deleted on the way.
  std::vector<std::string> filesWrittenBefore(Micros before);

 private:
  std::filesystem::path root_;
};

}  // namespace statim
