// Uploaded media: audio through libsndfile + libsamplerate as the whisper backend decodes it,
// and as the speech encoder checks its output (first byte 0); images through stb_image as the
// ONNX backends decode them (first byte 1).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "backends/onnx/image.h"
#include "backends/tts/audio_encoder.h"
#include "backends/media/audio.h"
#include "fuzz_util.h"

using namespace statim;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  fuzz::MemFile file(bytes);
  if (data[0] % 2 == 0) {
    auto pcm = audio::decodeFile(file.path(), "audio", 16000, 30);
    if (pcm) {
      fuzz::require(!pcm->samples.empty() && pcm->rate == 16000, "decoded audio has samples at the asked rate");
      fuzz::require(pcm->seconds() <= 30.5, "max_seconds holds");
    } else {
      fuzz::require(!pcm.error().message.empty(), "refused audio says why");
    }
    (void)tts::decodeInfo(bytes);
  } else {
    for (int channels : {1, 3}) {
      auto img = onnx::decodeImage(file.path(), channels, 1 << 20);
      if (img) {
        fuzz::require(
            img->width > 0 && img->height > 0 && static_cast<std::int64_t>(img->width) * img->height <= (1 << 20),
            "max_pixels holds");
        fuzz::require(img->pixels.size() == static_cast<std::size_t>(img->width) * img->height * channels,
                      "pixel buffer matches the size");
      } else {
        fuzz::require(!img.error().message.empty(), "a refused image says why");
      }
    }
  }
  return 0;
}
