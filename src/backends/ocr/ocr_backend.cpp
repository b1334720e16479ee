#include "backends/ocr/ocr_backend.h"

#include <chrono>
#include <format>
#include <memory>
#include <mutex>

#include <leptonica/allheaders.h>
#include <tesseract/baseapi.h>
#include <tesseract/ocrclass.h>
#include <tesseract/resultiterator.h>

#include "backends/params.h"

namespace statim {
namespace {

struct PixDeleter {
  void operator()(Pix* p) const { pixDestroy(&p); }
};
using PixPtr = std::unique_ptr<Pix, PixDeleter>;

// One ResultIterator level (lines or words) as {text, confidence, box}.
nlohmann::json collect(tesseract::ResultIterator* it, tesseract::PageIteratorLevel level) {
  nlohmann::json out = nlohmann::json::array();
  if (!it) return out;
  it->Begin();
  do {
    std::unique_ptr<char[]> text(it->GetUTF8Text(level));
    if (!text) continue;
    std::string s(text.get());
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (s.empty()) continue;
    int l = 0, t = 0, r = 0, b = 0;
    it->BoundingBox(level, &l, &t, &r, &b);
    out.push_back({{"text", s},
                   {"confidence", std::round(it->Confidence(level) * 100) / 100},
                   {"box", {{"x", l}, {"y", t}, {"width", r - l}, {"height", b - t}}}});
  } while (it->Next(level));
  return out;
}

class OcrSession final : public Session {
 public:
  OcrSession(std::unique_ptr<tesseract::TessBaseAPI> api) : api_(std::move(api)) {}

  Result<nlohmann::json> run(const Job& job, JobControl& control) override {
    auto start = std::chrono::steady_clock::now();
    if (job.inputs.empty()) return fail(Error::invalid("an ocr job needs an image file", "inputs"));
    PixPtr pix(pixRead(job.inputs.front().path.c_str()));
    if (!pix) {
      return fail(Error::invalid(std::format("input '{}' ({}) could not be decoded as an image",
                                             job.inputs.front().name, job.inputs.front().content_type),
                                 "inputs." + job.inputs.front().name));
    }
    api_->SetPageSegMode(static_cast<tesseract::PageSegMode>(job.params.value("psm", 3)));
    api_->SetImage(pix.get());
    tesseract::ETEXT_DESC monitor;
    monitor.cancel = [](void* c, int) { return static_cast<JobControl*>(c)->cancelled(); };
    monitor.cancel_this = &control;
    int rc = api_->Recognize(&monitor);
    if (control.cancelled()) {
      api_->Clear();
      return nlohmann::json{{"text", ""}, {"finish_reason", "cancelled"}};
    }
    if (rc != 0) {
      api_->Clear();
      return fail(Error::backend("tesseract could not recognise the image"));
    }
    std::unique_ptr<char[]> text(api_->GetUTF8Text());
    std::unique_ptr<tesseract::ResultIterator> it(api_->GetIterator());
    nlohmann::json result = {
        {"text", text ? std::string(text.get()) : ""},
        {"lines", collect(it.get(), tesseract::RIL_TEXTLINE)},
        {"words", collect(it.get(), tesseract::RIL_WORD)},
        {"width", pixGetWidth(pix.get())},
        {"height", pixGetHeight(pix.get())},
        {"duration_ms",
         std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count()},
    };
    api_->Clear();
    return result;
  }

 private:
  std::unique_ptr<tesseract::TessBaseAPI> api_;
};

class OcrModel final : public LoadedModel {
 public:
  OcrModel(std::string tessdata, std::string language) : tessdata_(std::move(tessdata)), language_(std::move(language)) {}
  // Each worker gets its own engine: TessBaseAPI is not safe to share between threads.
  Result<std::unique_ptr<Session>> newSession() override {
    auto api = std::make_unique<tesseract::TessBaseAPI>();
    if (api->Init(tessdata_.c_str(), language_.c_str(), tesseract::OEM_LSTM_ONLY) != 0) {
      return fail(Error::backend(std::format("tesseract could not load language '{}' from {}", language_, tessdata_)));
    }
    // Tesseract's own messages ("Estimating resolution as 445" for every page without a DPI) go
    // to stderr, one unstructured line per job in the server's log: a page's outcome is its job.
    // debug_file is one global of the library, unguarded: set once, by the first session (the
    // load's probe, on the loader thread), before any worker reads it. (Later Init messages go
    // there too; a failed Init is reported as this session's error.)
    static std::once_flag quiet;
    std::call_once(quiet, [&] { api->SetVariable("debug_file", "/dev/null"); });
    return std::make_unique<OcrSession>(std::move(api));
  }
  nlohmann::json describe() const override { return {{"language", language_}, {"engine", "tesseract LSTM"}}; }
  // Debian's libtesseract is built with OpenMP: its LSTM opens 4-thread regions. A page runs on
  // its own worker, whose regions all run on that thread alone (confineOpenMpToThisThread): one
  // core per page, no OpenMP pool, and `parallel` pages at once. On the compute thread its teams
  // took ~10x longer per page on 2 cores, and pages ran one at a time.
  ComputeUse computeUse() const override { return {.threads = 1, .openmp = false}; }

 private:
  std::string tessdata_, language_;
};

class OcrBackend final : public Backend {
 public:
  std::string_view name() const override { return "ocr"; }
  std::vector<std::string> jobTypes() const override { return {"ocr"}; }
  std::vector<std::string> inputTypes(std::string_view) const override { return {"image/png", "image/jpeg"}; }
  Result<void> validateParams(std::string_view, const nlohmann::json& p) const override {
    if (auto r = params::onlyKnown(p, {"psm"}, "params"); !r) return r;
    return params::integer(p, "psm", 0, 13, "params");
  }
  Result<std::shared_ptr<LoadedModel>> load(const ModelConfig& c) const override {
    if (c.file.empty() || c.file.extension() != ".traineddata") {
      return fail(Error::invalid("the ocr backend needs file = a Tesseract <language>.traineddata"));
    }
    if (!std::filesystem::exists(c.file)) return fail(Error::notFound("model file not found: " + c.file.string()));
    auto model = std::make_shared<OcrModel>(c.file.parent_path().string() + "/", c.file.stem().string());
    // Fail at load, not at the first job, when the file is not usable.
    if (auto probe = model->newSession(); !probe) return fail(probe.error());
    return model;
  }
};

}  // namespace

const Backend& ocrBackend() {
  static const OcrBackend backend;
  return backend;
}

}  // namespace statim
