// Images and audio inside chat messages: OpenAI's image_url and input_audio parts, the Responses
// API's input_image, Anthropic's image blocks. The bytes come in the request (data: URLs, base64;
// the server fetches nothing from the network); they are stored as the job's input files, and the
// stored messages name them: {"type": "image" | "audio", "input": "image-1"} (what the llama
// backend reads, and what POST /job takes with multipart or base64 `inputs`).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "statim/error.h"
#include "statim/job.h"
#include "store/blob_store.h"

namespace statim::api {

class MediaParts {
 public:
  // `taken`: input files the job has already (a continued conversation's); names follow them.
  explicit MediaParts(size_t taken = 0) : taken_(taken) {}
  // An image given as a data: URL (an http(s) URL is refused: nothing is downloaded). Returns the
  // part to store in the message. `where` names the field in errors.
  Result<nlohmann::json> imageUrl(std::string_view url, const std::string& where);
  // Base64 bytes of an image or ("audio") a clip of audio.
  Result<nlohmann::json> base64(std::string_view kind, std::string_view data, const std::string& where);
  bool empty() const { return files_.empty(); }
  // Writes the files to the blob store as the job's inputs (and lets go of the bytes).
  Result<void> storeInto(BlobStore& blobs, std::vector<JobFile>& inputs);

 private:
  struct File {
    std::string name, content_type, bytes;
  };
  size_t taken_ = 0;
  std::vector<File> files_;
};

}  // namespace statim::api
