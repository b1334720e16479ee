// Images and audio in chat messages, through libmtmd (llama.cpp's multimodal library): a model
// whose manifest names an `mmproj` file (params.mmproj, the projector GGUF that turns an image or
// a clip of audio into embeddings of the text model) takes chat content parts
// {"type": "image" | "audio", "input": "<name of one of the job's input files>"}.
//
// A prompt with media is a token list in which each media chunk holds placeholders (mediaToken)
// (as many as the embeddings it becomes); the batch session decodes the text as usual and each
// media chunk on its own (mtmd encodes it, then its embeddings are decoded into the sequence).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <mtmd.h>
#include <nlohmann/json.hpp>

#include "backends/llama/llama_handles.h"
#include "statim/error.h"
#include "statim/job.h"

namespace statim::llama {

// A prompt position held by a media embedding is a negative id, a hash of the medium's content and
// the position within it: never a real token, equal only where the same image (or clip) sits, so
// the prompt cache reuses the KV of an image it has seen (the next turn of a chat about it) and
// stops before any other.
inline bool isMediaToken(llama_token t) { return t < 0; }
llama_token mediaToken(std::uint64_t content_hash, size_t position);

struct MediaChunk {
  size_t start = 0;     // index of its first position in Prompt::tokens (its placeholders: mediaToken)
  size_t n_tokens = 0;  // positions it takes
  const mtmd_input_chunk* chunk = nullptr;
};

struct ChunksDeleter {
  void operator()(mtmd_input_chunks* c) const { mtmd_input_chunks_free(c); }
};

// What a job feeds the model: tokens, and where media chunks sit among them.
struct Prompt {
  std::vector<llama_token> tokens;
  std::vector<MediaChunk> media;                         // in order of `start`
  std::shared_ptr<mtmd_input_chunks> chunks;             // owns media[i].chunk
};

// One media file of a chat, in the order of the messages.
struct MediaRef {
  std::string kind;  // "image" | "audio"
  std::string input;  // the job input's name
};

// The model's projector. tokenize() may run on any thread (mtmd_tokenize is thread-safe on a
// shared context); decode() calls are serialised.
class Multimodal {
 public:
  static Result<std::shared_ptr<Multimodal>> load(const std::filesystem::path& mmproj, const llama_model* model,
                                                  int threads);
  ~Multimodal();
  Multimodal(const Multimodal&) = delete;
  Multimodal& operator=(const Multimodal&) = delete;

  bool vision() const;
  bool audio() const;
  // The marker that stands for one media file in the text given to tokenize().
  static const char* marker();

  // The rendered prompt (one marker per media file) and the files -> tokens and media chunks.
  // Errors name the file that is not an image (or audio) this projector reads.
  Result<Prompt> tokenize(const std::string& text, const std::vector<MediaRef>& media,
                          const std::vector<JobFile>& inputs) const;
  // Encodes `chunk` and decodes its embeddings into sequence `seq` of `ctx` from position n_past.
  Result<void> decode(llama_context* ctx, const mtmd_input_chunk* chunk, int seq, int n_past, int n_batch) const;

 private:
  explicit Multimodal(mtmd_context* ctx) : ctx_(ctx) {}
  mutable std::mutex mu_;
  mtmd_context* ctx_;
};

// Chat content parts: a message whose content is a list of parts becomes one text, each media
// part a marker; `media` gets the parts' files in order. Messages with string content unchanged.
nlohmann::json withMediaMarkers(const nlohmann::json& messages, std::vector<MediaRef>& media);

}  // namespace statim::llama
