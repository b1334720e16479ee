// The direct baseline for the detection benchmark (bench/README.md, "ONNX detection and OCR"):
// YOLOX-Nano on one image with ONNX Runtime and nothing else. Same work as a statim `detection`
// job on models/yolox-nano.toml: one Ort::Session with statim's options and intra-op threads
// (less session.force_spinning_stop: a bare program keeps ORT's default spinning),
// shared by the client threads; per job the image file is read and decoded, letterboxed top-left
// into BGR 416x416 and grid-decoded with NMS, using statim's own preprocessing/decoding code.
//
//   g++ -std=c++23 -O2 -Isrc -Iinclude -I/usr/include/onnxruntime -o .bench/ort_detect \
//       bench/ort_detect.cpp src/backends/media/image.cpp src/backends/onnx/image.cpp src/backends/onnx/postprocess.cpp
//       -lonnxruntime
//   .bench/ort_detect MODEL.onnx IMAGE.jpg JOBS_PER_CLIENT CLIENTS THREADS
// Prints `RESULT jobs=.. jobs_per_s=.. p50_ms=.. p90_ms=.. detections=..`.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <onnxruntime_cxx_api.h>

#include "backends/onnx/image.h"
#include "backends/onnx/postprocess.h"

using namespace statim::onnx;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s MODEL.onnx IMAGE JOBS_PER_CLIENT CLIENTS THREADS\n", argv[0]);
    return 2;
  }
  const std::string model = argv[1], image = argv[2];
  const int jobs = std::atoi(argv[3]), clients = std::atoi(argv[4]), threads = std::atoi(argv[5]);
  Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "ort_detect");
  Ort::SessionOptions options;  // as src/backends/ort/ort_session.cpp, less force_spinning_stop
  options.SetIntraOpNumThreads(threads);
  options.SetInterOpNumThreads(1);
  options.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  Ort::Session session(env, model.c_str(), options);
  auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  ImageSpec spec;  // as models/yolox-nano.toml
  spec.color = Color::kBgr;
  spec.resize = Resize::kLetterbox;
  spec.align = Align::kTopLeft;
  spec.pad_value = 114;
  const int W = 416, H = 416;
  const std::vector<int> strides{8, 16, 32};
  const char* in_name = "images";
  const char* out_name = "output";

  std::vector<std::vector<double>> lat(clients);
  std::vector<size_t> found(clients);
  auto one = [&](int c) {
    for (int j = 0; j < jobs; ++j) {
      auto t0 = Clock::now();
      auto img = decodeImage(image, 3, spec.max_pixels);
      if (!img) std::abort();
      auto g = planGeometry(img->width, img->height, W, H, spec.resize, spec.align);
      auto input = toTensor(*img, spec, g);
      std::vector<int64_t> shape{1, 3, H, W};
      auto value = Ort::Value::CreateTensor<float>(memory, input.data(), input.size(), shape.data(), shape.size());
      auto outs = session.Run(Ort::RunOptions{nullptr}, &in_name, &value, 1, &out_name, 1);
      auto info = outs[0].GetTensorTypeAndShapeInfo();
      auto dims = info.GetShape();
      std::span<const float> data(outs[0].GetTensorData<float>(), info.GetElementCount());
      auto dets = decodeYolox(data, dims[1], dims[2], W, H, strides, 0.3f);
      auto kept = nms(std::move(*dets), 0.45f, 100);
      for (auto& d : kept) d.box = toOriginal(d.box, g);
      found[c] = kept.size();
      lat[c].push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
  };
  one(0);  // warm-up: the first Run allocates the arena
  lat[0].clear();
  auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int c = 0; c < clients; ++c) pool.emplace_back(one, c);
  for (auto& t : pool) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto q = [&](double p) { return all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))]; };
  std::printf("RESULT jobs=%zu jobs_per_s=%.2f p50_ms=%.2f p90_ms=%.2f detections=%zu\n", all.size(), all.size() / secs,
              q(0.5), q(0.9), found[0]);
}
