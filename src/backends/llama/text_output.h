// Generated text as it grows token by token: stop strings (matched across token boundaries,
// never included) and the part that is safe to stream (no partial stop string, no split UTF-8,
// nothing from the `withhold` marker on).
#pragma once

#include <string>
#include <vector>

namespace statim::llama {

class TextOutput {
 public:
  // `withhold` (a tool call's opening tag): the text from it on stays in text() but is never
  // streamed, nor the whitespace before it; a tail that may begin it, and trailing whitespace,
  // wait for what follows.
  explicit TextOutput(std::vector<std::string> stops, std::string withhold = {})
      : stops_(std::move(stops)), withhold_(std::move(withhold)) {}

  // Appends a token's bytes. Returns true when a stop string now appears; the text is then cut
  // just before it.
  bool append(const std::string& piece);
  const std::string& text() const { return text_; }
  // The text not yet streamed that can be streamed now; advances the streamed mark. With
  // `final`, everything left (the job is over).
  std::string takeStreamable(bool final);

 private:
  std::vector<std::string> stops_;
  std::string withhold_;
  std::string text_;
  size_t streamed_ = 0;
};

// Length of the longest prefix of `s` that ends on a whole UTF-8 character.
size_t completeUtf8Prefix(const std::string& s);

}  // namespace statim::llama
