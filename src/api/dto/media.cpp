#include "api/dto/media.h"

#include <algorithm>
#include <format>

#include <drogon/utils/Utilities.h>

#include "core/media_type.h"

namespace statim::api {
namespace {

constexpr size_t kMaxFiles = 16;  // as POST /job's inputs

bool isImage(const std::string& type) {
  return type == "image/png" || type == "image/jpeg";
}
bool isAudio(const std::string& type) {
  return type == "audio/wav" || type == "audio/mpeg" || type == "audio/flac" || type == "audio/ogg";
}

}  // namespace

Result<nlohmann::json> MediaParts::imageUrl(std::string_view url, const std::string& where) {
  if (url.starts_with("http://") || url.starts_with("https://")) {
    return fail(Error::invalid(std::format("'{}': image URLs are not fetched (the server makes no outgoing requests "
                                           "for inputs); send the image as a data: URL (data:image/png;base64,...)",
                                           where),
                               where));
  }
  auto comma = url.find(',');
  if (!url.starts_with("data:") || comma == std::string_view::npos ||
      !url.substr(0, comma).ends_with(";base64")) {
    return fail(Error::invalid(std::format("'{}' must be a data: URL with base64 bytes (data:image/png;base64,...)", where),
                               where));
  }
  return base64("image", url.substr(comma + 1), where);
}

Result<nlohmann::json> MediaParts::base64(std::string_view kind, std::string_view data, const std::string& where) {
  if (files_.size() >= kMaxFiles) {
    return fail(Error::invalid(std::format("at most {} images and audio clips per request", kMaxFiles), where));
  }
  std::string text(data);
  if (text.empty() || !drogon::utils::isBase64(text)) {
    return fail(Error::invalid(std::format("'{}' must hold base64 bytes", where), where));
  }
  std::string bytes = drogon::utils::base64Decode(text);
  std::string type = sniffContentType(bytes);
  const bool image = kind == "image";
  if (image ? !isImage(type) : !isAudio(type)) {
    return fail(Error::invalid(image ? std::format("'{}' is not an image: PNG or JPEG expected", where)
                                     : std::format("'{}' is not audio: WAV, MP3, FLAC or OGG expected", where),
                               where));
  }
  std::string name = std::format("{}-{}", kind, taken_ + files_.size() + 1);
  files_.push_back({name, std::move(type), std::move(bytes)});
  return nlohmann::json{{"type", kind}, {"input", name}};
}

Result<void> MediaParts::storeInto(BlobStore& blobs, std::vector<JobFile>& inputs) {
  for (auto& f : files_) {
    auto stored = blobs.put(f.name, f.content_type, f.bytes);
    if (!stored) return fail(stored.error());
    inputs.push_back(std::move(*stored));
  }
  files_.clear();
  return ok();
}

}  // namespace statim::api
