// The files of jobs (inputs and artifacts), content-addressed by sha256: the same bytes are
// stored once, and names come only from hashes, never from user input. One interface, one folder
// per implementation: local_blobs/ keeps them in a directory of the data dir; a store shared by
// several nodes keeps them where every node can read them.
//
// Thread-safety: every method of every implementation may be called from any thread.
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
  virtual ~BlobStore() = default;
  // Writes `bytes` (if not stored yet; atomically) and describes them as a file named `name`.
  virtual Result<JobFile> put(const std::string& name, const std::string& content_type, std::string_view bytes) = 0;
  // A local path where the bytes of `sha256` can be read (what backends are given).
  virtual std::filesystem::path pathOf(const std::string& sha256) const = 0;
  // Reads a stored file whole.
  virtual Result<std::string> read(const std::string& sha256) const = 0;
  // Deletes the bytes of `sha256` (the caller knows no row refers to them any more).
  virtual void remove(const std::string& sha256) = 0;
  // Deletes those of `sha256s` not written since `released_at` (put() of bytes already stored
  // renews their time): a file released by deleted jobs may meanwhile have been uploaded again
  // for a job whose row is not committed yet. Returns how many were removed.
  virtual size_t removeReleased(const std::vector<std::string>& sha256s, Micros released_at) = 0;
  // Stored files last written before `before` (candidates for the orphan sweep); interrupted
  // writes older than that are deleted on the way.
  virtual std::vector<std::string> filesWrittenBefore(Micros before) = 0;
};

}  // namespace statim
