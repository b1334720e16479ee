// Files of jobs in a directory of the data dir: <root>/<first 2 hex of sha256>/<sha256>. Writes
// are atomic (temp file, fsync, rename). See store/blob_store.h for the contract.
#pragma once

#include <filesystem>

#include "store/blob_store.h"

namespace statim {

class LocalBlobStore final : public BlobStore {
 public:
  explicit LocalBlobStore(std::filesystem::path root);
  Result<JobFile> put(const std::string& name, const std::string& content_type, std::string_view bytes) override;
  std::filesystem::path pathOf(const std::string& sha256) const override;
  Result<std::string> read(const std::string& sha256) const override;
  void remove(const std::string& sha256) override;
  size_t removeReleased(const std::vector<std::string>& sha256s, Micros released_at) override;
  std::vector<std::string> filesWrittenBefore(Micros before) override;

 private:
  std::filesystem::path root_;
};

}  // namespace statim
