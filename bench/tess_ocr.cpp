// The direct baseline for the OCR benchmark (bench/README.md, "ONNX detection and OCR"): Tesseract
// on one page with libtesseract and nothing else. Same work as a statim `ocr` job on
// models/ocr-tesseract.toml: each client thread has its own TessBaseAPI, loaded once (as each
// statim worker does), and runs on one core (OpenMP regions on it get no team, as on statim's
// workers); per job the image file is read and decoded, recognised with psm 3, and its text, lines
// and words with boxes and confidences are read out.
//
//   g++ -std=c++23 -O2 -o .bench/tess_ocr bench/tess_ocr.cpp -fopenmp $(pkg-config --cflags --libs tesseract lept)
//   .bench/tess_ocr TESSDATA_DIR LANG IMAGE JOBS_PER_CLIENT CLIENTS
// Prints `RESULT jobs=.. jobs_per_s=.. p50_ms=.. p90_ms=.. words=.. text=..` (text: the first line).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <leptonica/allheaders.h>
#include <tesseract/baseapi.h>
#include <tesseract/ocrclass.h>
#include <tesseract/resultiterator.h>

using Clock = std::chrono::steady_clock;

namespace {

// What statim reads out of a page besides its text: every line's and word's text, box and confidence.
size_t readOut(tesseract::ResultIterator* it, tesseract::PageIteratorLevel level) {
  size_t n = 0;
  if (!it) return n;
  it->Begin();
  do {
    std::unique_ptr<char[]> text(it->GetUTF8Text(level));
    if (!text || !text[0]) continue;
    int l = 0, t = 0, r = 0, b = 0;
    it->BoundingBox(level, &l, &t, &r, &b);
    volatile float confidence = it->Confidence(level);
    (void)confidence;
    ++n;
  } while (it->Next(level));
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s TESSDATA_DIR LANG IMAGE JOBS_PER_CLIENT CLIENTS\n", argv[0]);
    return 2;
  }
  const std::string tessdata = std::string(argv[1]) + "/", lang = argv[2], image = argv[3];
  const int jobs = std::atoi(argv[4]), clients = std::atoi(argv[5]);
  std::vector<std::vector<double>> lat(clients);
  std::vector<size_t> words(clients);
  std::string first_line;
  std::latch ready(clients), go(1);
  bool cancelled = false;
  auto page = [&](tesseract::TessBaseAPI& api, int c) {
    Pix* pix = pixRead(image.c_str());
    if (!pix) std::abort();
    api.SetPageSegMode(tesseract::PSM_AUTO);
    api.SetImage(pix);
    tesseract::ETEXT_DESC monitor;  // as statim: a cancel check between words
    monitor.cancel = [](void* flag, int) { return *static_cast<const bool*>(flag); };
    monitor.cancel_this = &cancelled;
    if (api.Recognize(&monitor) != 0) std::abort();
    std::unique_ptr<char[]> text(api.GetUTF8Text());
    std::unique_ptr<tesseract::ResultIterator> it(api.GetIterator());
    readOut(it.get(), tesseract::RIL_TEXTLINE);
    words[c] = readOut(it.get(), tesseract::RIL_WORD);
    if (c == 0 && text) first_line = std::string(text.get()).substr(0, std::string(text.get()).find('\n'));
    api.Clear();
    pixDestroy(&pix);
  };
  auto one = [&](int c) {
    omp_set_max_active_levels(0);  // one core per page: tesseract's 4-thread regions run on this thread
    // The engine loads, and reads a first page, before the clock starts (statim's workers load
    // theirs with the model; statim gets no warm-up page, which if anything favours this side).
    tesseract::TessBaseAPI api;
    if (api.Init(tessdata.c_str(), lang.c_str(), tesseract::OEM_LSTM_ONLY) != 0) std::abort();
    api.SetVariable("debug_file", "/dev/null");  // as statim (one global: the same value from each thread)
    page(api, c);
    ready.count_down();
    go.wait();
    for (int j = 0; j < jobs; ++j) {
      auto t0 = Clock::now();
      page(api, c);
      lat[c].push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
  };
  std::vector<std::thread> pool;
  for (int c = 0; c < clients; ++c) pool.emplace_back(one, c);
  ready.wait();
  auto start = Clock::now();
  go.count_down();
  for (auto& t : pool) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto q = [&](double p) { return all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))]; };
  std::printf("RESULT jobs=%zu jobs_per_s=%.2f p50_ms=%.2f p90_ms=%.2f words=%zu text=%s\n", all.size(),
              all.size() / secs, q(0.5), q(0.9), words[0], first_line.c_str());
}
