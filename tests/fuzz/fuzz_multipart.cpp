// POST /job as multipart/form-data: Drogon's multipart parser, then statim's reading of the
// parts (text fields, `params` as JSON, files sniffed and stored) and the job validation.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include <drogon/HttpRequest.h>

#include "api/dto/inputs.h"
#include "api/dto/job_dto.h"
#include "fuzz_util.h"
#include "store/local_blobs/local_blob_store.h"

using namespace statim;

namespace {
std::filesystem::path blobDir() {
  static const std::filesystem::path dir = [] {
    char tmpl[] = "/tmp/statim-fuzz-blobs.XXXXXX";
    if (!mkdtemp(tmpl)) std::abort();
    return std::filesystem::path(tmpl);
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static LocalBlobStore blobs(blobDir());
  auto req = drogon::HttpRequest::newHttpRequest();
  req->setMethod(drogon::Post);
  req->setPath("/job");
  // As a request off the wire has it: the header, from which Drogon derives contentType().
  req->addHeader("content-type", "multipart/form-data; boundary=statimfuzz");
  req->setBody(std::string(reinterpret_cast<const char*>(data), size));
  auto read = api::readJobRequest(req, blobs);
  if (!read) {
    fuzz::require(!read.error().message.empty(), "a refused multipart body says why");
    return 0;
  }
  auto job = api::parseNewJob(read->body, !read->inputs.empty());
  if (!job) fuzz::require(!job.error().message.empty(), "a refused job says why");
  // Keep the blob folder small: each run's files go.
  for (auto& f : read->inputs) blobs.remove(f.sha256);
  return 0;
}
