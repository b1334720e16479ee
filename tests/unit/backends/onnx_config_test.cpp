// The onnx backend's manifest validation and tensor-job input checks: every message names the key.
#include <gtest/gtest.h>

#include "../test_util.h"
#include "backends/onnx/onnx_config.h"
#include "backends/onnx/tensor_io.h"

namespace statim::onnx {
namespace {

using nlohmann::json;

std::string errorOf(const json& params, std::string_view type, const std::filesystem::path& dir = ".") {
  auto r = parseConfig(params, type, dir);
  return r ? std::string("(no error)") : r.error().message;
}

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST(OnnxConfig, ADetectorManifestParses) {
  testing::TempDir dir;
  dir.write("labels.txt", "person\nbicycle\r\n\ncar\n");
  auto c = parseConfig(json{{"task", "object-detection"},
                            {"color", "bgr"},
                            {"resize", "letterbox"},
                            {"size", {416, 416}},
                            {"decoder", "yolox"},
                            {"labels", "labels.txt"},
                            {"nms_iou", 0.5},
                            {"mean", {1, 2, 3}}},
                       "detection", dir.path());
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->task, Task::kDetection);
  EXPECT_EQ(c->image.color, Color::kBgr);
  EXPECT_EQ(c->image.resize, Resize::kLetterbox);
  EXPECT_EQ(c->image.width, 416);
  EXPECT_EQ(c->labels, (std::vector<std::string>{"person", "bicycle", "car"}));
  EXPECT_FLOAT_EQ(c->nms_iou, 0.5f);
  EXPECT_FLOAT_EQ(c->image.mean[2], 3);
  EXPECT_EQ(c->strides, (std::vector<int>{8, 16, 32}));
}

TEST(OnnxConfig, TheTaskComesFromTheTypeAndMustAgreeWithIt) {
  auto c = parseConfig(json::object(), "tensor", ".");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->task, Task::kTensor);
  auto e = errorOf(json{{"task", "object-detection"}, {"decoder", "yolox"}}, "classification");
  EXPECT_HAS(e, "'params.task' 'object-detection' serves detection jobs");
  EXPECT_HAS(e, "set type = \"detection\"");
  EXPECT_HAS(errorOf(json{{"task", "segmentation"}}, "tensor"),
             "'params.task' must be one of image-classification, object-detection, tensor (got 'segmentation')");
}

TEST(OnnxConfig, BadValuesAreNamed) {
  EXPECT_HAS(errorOf(json{{"color", "cmyk"}}, "classification"),
             "'params.color' must be one of gray, rgb, bgr (got 'cmyk')");
  EXPECT_HAS(errorOf(json{{"resize", 3}}, "classification"), "'params.resize' must be one of stretch, letterbox");
  EXPECT_HAS(errorOf(json{{"colour", "rgb"}}, "classification"), "unknown field 'params.colour'");
  EXPECT_HAS(errorOf(json{{"size", {28}}}, "classification"), "'params.size' must be [width, height]");
  EXPECT_HAS(errorOf(json{{"std", 0}}, "classification"), "'params.std' must not be 0");
  EXPECT_HAS(errorOf(json{{"mean", {1, 2}}}, "classification"), "'params.mean' must be a number or a list of 1 or 3");
  EXPECT_HAS(errorOf(json{{"pad_value", 300}}, "detection"), "'params.pad_value' must be between 0 and 255");
  EXPECT_HAS(errorOf(json{{"top_k", 0}}, "classification"), "'params.top_k' must be between 1 and 1000");
  EXPECT_HAS(errorOf(json{{"invert", "yes"}}, "classification"), "'params.invert' must be true or false");
  EXPECT_HAS(errorOf(json{{"threads", -1}}, "tensor"), "'params.threads' must be between 0 and 256");
  // Keys of another task are unknown here: a typo never silently does nothing.
  EXPECT_HAS(errorOf(json{{"decoder", "yolox"}}, "classification"), "unknown field 'params.decoder'");
  EXPECT_HAS(errorOf(json{{"color", "rgb"}}, "tensor"), "unknown field 'params.color'");
}

TEST(OnnxConfig, DetectionNeedsADecoderAndTheRightOutputs) {
  EXPECT_HAS(errorOf(json::object(), "detection"), "'params.decoder' is required for object-detection");
  EXPECT_HAS(errorOf(json{{"decoder", "ssd"}}, "detection"),
             "'params.decoder' must be one of yolox, ultraface (got 'ssd')");
  EXPECT_HAS(errorOf(json{{"decoder", "ultraface"}, {"output", "scores"}}, "detection"),
             "'params.outputs' must name two outputs for decoder ultraface: [scores, boxes]");
  EXPECT_HAS(errorOf(json{{"decoder", "yolox"}, {"strides", {8, 0}}}, "detection"),
             "'params.strides' must be a list of integers");
  EXPECT_HAS(errorOf(json{{"decoder", "yolox"}, {"score_threshold", 2}}, "detection"),
             "'params.score_threshold' must be between 0 and 1");
  EXPECT_HAS(errorOf(json{{"output", "a"}, {"outputs", {"b"}}}, "classification"),
             "give 'output' or 'outputs', not both");
}

TEST(OnnxConfig, LabelsFileMustExistAndHoldLabels) {
  testing::TempDir dir;
  EXPECT_HAS(errorOf(json{{"labels", "missing.txt"}}, "classification", dir.path()),
             "'params.labels' names a file that cannot be read: " + (dir.path() / "missing.txt").string());
  dir.write("empty.txt", "\n\n");
  EXPECT_HAS(errorOf(json{{"labels", "empty.txt"}}, "classification", dir.path()), "'params.labels' has no labels");
  EXPECT_HAS(errorOf(json{{"labels", {"a", 1}}}, "classification"),
             "'params.labels' must be a labels file name or a list");
}

class TensorInputs : public ::testing::Test {
 protected:
  std::vector<TensorSpec> specs{
      {"input", DType::kFloat, {-1, -1}}, {"state", DType::kFloat, {2, -1, 128}}, {"sr", DType::kInt64, {}}};
  json good() const {
    return {{"input", {{"shape", {1, 2}}, {"data", {0.5, -0.5}}}},
            {"state", {{"shape", {2, 1, 128}}, {"data", std::vector<float>(256, 0.0f)}}},
            {"sr", {{"shape", json::array()}, {"data", {16000}}, {"dtype", "int64"}}}};
  }
  std::string errorOf(const json& j) {
    auto r = parseTensorInputs(j, specs, "prompt");
    return r ? std::string("(no error)") : r.error().field + ": " + r.error().message;
  }
};

TEST_F(TensorInputs, AGoodRequestParses) {
  auto r = parseTensorInputs(good(), specs, "prompt");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].shape, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(std::get<std::vector<std::int64_t>>((*r)[2].data), (std::vector<std::int64_t>{16000}));
}

TEST_F(TensorInputs, MistakesNameTheInputAndTheRule) {
  auto j = good();
  j["state"]["shape"] = {2, 128};
  EXPECT_HAS(errorOf(j), "prompt.state.shape: input 'state' has shape [2, 128]; the model takes [2, ?, 128]");
  j = good();
  j["input"]["data"] = {1};
  EXPECT_HAS(errorOf(j), "prompt.input.data: 'prompt.input.data' has 1 values; shape [1, 2] needs 2");
  j = good();
  j.erase("sr");
  EXPECT_HAS(errorOf(j), "prompt.sr: input 'sr' is missing (model inputs: input, state, sr)");
  j = good();
  j["audio"] = j["input"];
  EXPECT_HAS(errorOf(j), "prompt.audio: unknown input 'audio' (model inputs: input, state, sr)");
  j = good();
  j["sr"]["dtype"] = "float32";
  EXPECT_HAS(errorOf(j), "'prompt.sr.dtype' is float32 but the model's input 'sr' is int64");
  j = good();
  j["sr"]["data"] = {16000.5};
  EXPECT_HAS(errorOf(j), "'prompt.sr.data' must hold integers (int64)");
  EXPECT_HAS(errorOf(json::array()), "'prompt' must be a JSON object of input tensors");
}

}  // namespace
}  // namespace statim::onnx
