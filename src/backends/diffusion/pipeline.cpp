#include "backends/diffusion/pipeline.h"

#include <algorithm>
#include <cmath>
#include <format>
#include <fstream>
#include <sstream>

namespace statim::diffusion {
namespace fs = std::filesystem;
namespace {

Result<nlohmann::json> readJson(const fs::path& dir, const std::string& rel) {
  fs::path p = dir / rel;
  std::ifstream in(p);
  if (!in) return fail(Error::notFound(std::format("{} not found in {}", rel, dir.string())));
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail(Error::invalid(std::format("{} is not a JSON object", rel)));
  return j;
}

// The pad token's name in a tokenizer folder: special_tokens_map.json or tokenizer_config.json,
// as a string or an AddedToken object ({"content": "!"}). SD 1.5 pads with <|endoftext|>,
// SD 2.x and SDXL's second tokenizer with "!".
std::optional<std::string> padToken(const fs::path& dir, const std::string& folder) {
  for (const char* f : {"special_tokens_map.json", "tokenizer_config.json"}) {
    auto j = readJson(dir, folder + "/" + f);
    if (!j || !j->contains("pad_token")) continue;
    const auto& pad = (*j)["pad_token"];
    if (pad.is_string()) return pad.get<std::string>();
    if (pad.is_object() && pad.contains("content") && pad["content"].is_string()) return pad["content"].get<std::string>();
  }
  return std::nullopt;
}

Result<void> loadTokenizer(const fs::path& dir, const std::string& folder, std::optional<ClipTokenizer>& tok,
                           std::int32_t& pad) {
  auto t = ClipTokenizer::load(dir / folder / "vocab.json", dir / folder / "merges.txt");
  if (!t) return fail(Error{t.error().code, std::format("{}/: {}", folder, t.error().message), {}});
  tok = std::move(*t);
  pad = tok->endId();
  if (auto name = padToken(dir, folder)) {
    auto id = tok->idOf(*name);
    if (!id) return fail(Error::invalid(std::format("{}/: the pad token '{}' is not in vocab.json", folder, *name)));
    pad = *id;
  }
  return ok();
}

// The penultimate hidden state (what SDXL conditions on): the highest hidden_states.N minus one.
Result<std::string> penultimate(const OrtModel& m) {
  int top = -1;
  for (auto& [name, info] : m.outputs()) {
    if (name.starts_with("hidden_states.")) {
      try {
        top = std::max(top, std::stoi(name.substr(14)));
      } catch (const std::exception&) {
      }
    }
  }
  if (top < 1) {
    return fail(Error::backend(std::format("{} has no hidden_states.N outputs (outputs: {}); export the SDXL text "
                                           "encoders with their hidden states, as optimum-cli does",
                                           m.label(), m.outputList())));
  }
  return std::format("hidden_states.{}", top - 1);
}

Result<void> requireAll(const OrtModel& m, std::initializer_list<const char*> inputs,
                        std::initializer_list<const char*> outputs) {
  for (auto i : inputs)
    if (auto r = m.requireInput(i); !r) return r;
  for (auto o : outputs)
    if (auto r = m.requireOutput(o); !r) return r;
  return ok();
}

template <typename T>
Result<T> take(Result<T> r, std::string_view what) {
  if (!r) return fail(Error{r.error().code, std::format("{}: {}", what, r.error().message), r.error().field});
  return r;
}

}  // namespace

Result<std::unique_ptr<Pipeline>> Pipeline::load(const fs::path& dir, int threads) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return fail(Error::notFound(std::format("diffusion export folder not found: {} (file = the folder optimum-cli "
                                            "export onnx wrote)", dir.string())));
  }
  auto index = readJson(dir, "model_index.json");
  if (!index) return fail(index.error());
  std::unique_ptr<Pipeline> p(new Pipeline());
  p->class_name_ = index->value("_class_name", "");
  p->xl_ = fs::exists(dir / "text_encoder_2" / "model.onnx", ec) || p->class_name_.find("XL") != std::string::npos;

  auto sched_json = readJson(dir, "scheduler/scheduler_config.json");
  if (!sched_json) return fail(sched_json.error());
  auto sched = take(parseSchedulerConfig(*sched_json), "scheduler/scheduler_config.json");
  if (!sched) return fail(sched.error());
  p->scheduler_ = *sched;
  p->scheduler_class_ = sched_json->value("_class_name", "");

  // The latents' scale: the VAE's config (optimum copies it beside vae_decoder/model.onnx).
  p->scaling_factor_ = p->xl_ ? 0.13025 : 0.18215;
  if (auto vae = readJson(dir, "vae_decoder/config.json"); vae && (*vae)["scaling_factor"].is_number()) {
    p->scaling_factor_ = (*vae)["scaling_factor"].get<double>();
  }
  if (!(p->scaling_factor_ > 0)) return fail(Error::invalid("vae_decoder/config.json: scaling_factor must be > 0"));
  p->zeros_for_empty_negative_ = index->value("force_zeros_for_empty_prompt", p->xl_) && p->xl_;

  if (auto r = loadTokenizer(dir, "tokenizer", p->tokenizer_, p->pad_); !r) return fail(r.error());
  if (p->xl_) {
    if (auto r = loadTokenizer(dir, "tokenizer_2", p->tokenizer_2_, p->pad_2_); !r) return fail(r.error());
  }

  auto open = [&](const char* folder) { return OrtModel::open(dir / folder / "model.onnx", threads, std::string(folder) + "/model.onnx"); };
  auto te = open("text_encoder");
  if (!te) return fail(te.error());
  p->text_encoder_ = std::move(*te);
  if (auto r = requireAll(*p->text_encoder_, {"input_ids"}, {}); !r) return fail(r.error());
  if (p->xl_) {
    auto te2 = open("text_encoder_2");
    if (!te2) return fail(te2.error());
    p->text_encoder_2_ = std::move(*te2);
    if (auto r = requireAll(*p->text_encoder_2_, {"input_ids"}, {"text_embeds"}); !r) return fail(r.error());
    auto h1 = penultimate(*p->text_encoder_);
    if (!h1) return fail(h1.error());
    auto h2 = penultimate(*p->text_encoder_2_);
    if (!h2) return fail(h2.error());
    p->hidden_1_ = *h1;
    p->hidden_2_ = *h2;
  } else {
    if (auto r = p->text_encoder_->requireOutput("last_hidden_state"); !r) return fail(r.error());
    p->hidden_1_ = "last_hidden_state";
  }

  auto unet = open("unet");
  if (!unet) return fail(unet.error());
  p->unet_ = std::move(*unet);
  if (auto r = requireAll(*p->unet_, {"sample", "timestep", "encoder_hidden_states"}, {"out_sample"}); !r)
    return fail(r.error());
  if (p->xl_) {
    if (auto r = requireAll(*p->unet_, {"text_embeds", "time_ids"}, {}); !r) return fail(r.error());
  }
  const auto& sample_shape = p->unet_->input("sample")->shape;
  if (sample_shape.size() != 4) {
    return fail(Error::backend(std::format("unet/model.onnx: input 'sample' has rank {}, expected 4", sample_shape.size())));
  }
  if (sample_shape[1] > 0) p->latent_channels_ = sample_shape[1];

  auto vae = open("vae_decoder");
  if (!vae) return fail(vae.error());
  p->vae_decoder_ = std::move(*vae);
  if (auto r = requireAll(*p->vae_decoder_, {"latent_sample"}, {"sample"}); !r) return fail(r.error());
  return p;
}

Result<std::vector<std::int32_t>> Pipeline::tokens(const ClipTokenizer& tok, std::int32_t pad, const ImageRequest& q,
                                                   bool guided) const {
  std::vector<std::int32_t> ids;
  if (guided) ids = tok.encodeForModel(q.negative_prompt, pad);
  auto cond = tok.encodeForModel(q.prompt, pad);
  ids.insert(ids.end(), cond.begin(), cond.end());
  return ids;
}

Result<Conditioning> Pipeline::encode(const ImageRequest& q) const {
  bool guided = q.guidance_scale > 1.0;
  Conditioning c;
  c.batch = guided ? 2 : 1;
  // Runs one encoder on its tokens; returns the requested outputs.
  auto run = [&](const OrtModel& m, const ClipTokenizer& tok, std::int32_t pad,
                 std::vector<std::string> outputs) -> Result<std::vector<Ort::Value>> {
    auto ids = tokens(tok, pad, q, guided);
    if (!ids) return fail(ids.error());
    std::vector<double> values(ids->begin(), ids->end());
    auto t = m.tensor("input_ids", {c.batch, c.seq}, values);
    if (!t) return fail(t.error());
    std::vector<Feed> feeds;
    feeds.push_back({"input_ids", std::move(*t)});
    return m.run(feeds, outputs);
  };
  auto out1 = run(*text_encoder_, *tokenizer_, pad_, {hidden_1_});
  if (!out1) return fail(out1.error());
  auto h1 = toFloats((*out1)[0], "text_encoder " + hidden_1_);
  if (!h1) return fail(h1.error());
  auto s1 = shapeOf((*out1)[0]);
  if (s1.size() != 3 || s1[0] != c.batch || s1[1] != c.seq)
    return fail(Error::backend(std::format("text_encoder/model.onnx: '{}' has an unexpected shape", hidden_1_)));
  if (!xl_) {
    c.width = s1[2];
    c.hidden = std::move(*h1);
    return c;
  }
  auto out2 = run(*text_encoder_2_, *tokenizer_2_, pad_2_, {hidden_2_, "text_embeds"});
  if (!out2) return fail(out2.error());
  auto h2 = toFloats((*out2)[0], "text_encoder_2 " + hidden_2_);
  if (!h2) return fail(h2.error());
  auto pooled = toFloats((*out2)[1], "text_encoder_2 text_embeds");
  if (!pooled) return fail(pooled.error());
  auto s2 = shapeOf((*out2)[0]);
  auto sp = shapeOf((*out2)[1]);
  if (s2.size() != 3 || s2[0] != c.batch || s2[1] != c.seq || sp.size() != 2 || sp[0] != c.batch)
    return fail(Error::backend("text_encoder_2/model.onnx: its outputs have unexpected shapes"));
  // SDXL conditions on both encoders' penultimate states side by side (768 + 1280 = 2048 wide).
  std::int64_t w1 = s1[2], w2 = s2[2];
  c.width = w1 + w2;
  c.hidden.resize(static_cast<size_t>(c.batch * c.seq * c.width));
  for (std::int64_t row = 0; row < c.batch * c.seq; ++row) {
    std::copy_n(h1->begin() + row * w1, w1, c.hidden.begin() + row * c.width);
    std::copy_n(h2->begin() + row * w2, w2, c.hidden.begin() + row * c.width + w1);
  }
  c.pooled = std::move(*pooled);
  c.pooled_width = sp[1];
  if (guided && zeros_for_empty_negative_ && q.negative_prompt.empty()) {
    // diffusers' force_zeros_for_empty_prompt: no negative prompt -> zero unconditional embeds.
    std::fill_n(c.hidden.begin(), c.seq * c.width, 0.0f);
    std::fill_n(c.pooled.begin(), c.pooled_width, 0.0f);
  }
  return c;
}

Result<std::optional<std::vector<std::uint8_t>>> Pipeline::generate(const ImageRequest& q, const Conditioning& c,
                                                                    std::uint64_t seed,
                                                                    const StepCallback& on_step) const {
  const std::int64_t lh = q.height / 8, lw = q.width / 8, ch = latent_channels_;
  const size_t plane = static_cast<size_t>(ch * lh * lw);
  EulerScheduler sched(scheduler_, q.steps);
  Noise noise(seed);
  std::vector<float> latents(plane);
  noise.fill(latents);
  for (auto& v : latents) v = static_cast<float>(v * sched.initNoiseSigma());

  const TensorInfo* ts_info = unet_->input("timestep");
  // Exports differ: a 1-D [batch] timestep (optimum) or a scalar; its type is read, not guessed.
  std::vector<std::int64_t> ts_shape = ts_info->shape.empty() ? std::vector<std::int64_t>{}
                                                               : std::vector<std::int64_t>{c.batch};
  std::vector<double> time_ids;
  for (std::int64_t b = 0; b < c.batch; ++b) {
    // (original size, crop top-left, target size): no crop, the requested size.
    for (double v : {double(q.height), double(q.width), 0.0, 0.0, double(q.height), double(q.width)}) time_ids.push_back(v);
  }
  std::vector<float> sample(plane * static_cast<size_t>(c.batch));
  for (int i = 0; i < q.steps; ++i) {
    float scale = static_cast<float>(sched.inputScale(i));
    for (std::int64_t b = 0; b < c.batch; ++b) {
      std::transform(latents.begin(), latents.end(), sample.begin() + static_cast<std::ptrdiff_t>(b * plane),
                     [scale](float v) { return v * scale; });
    }
    std::vector<Feed> feeds;
    auto add = [&feeds](const char* name, Result<Ort::Value> v) -> Result<void> {
      if (!v) return fail(v.error());
      feeds.push_back({name, std::move(*v)});
      return ok();
    };
    std::vector<double> t(ts_shape.empty() ? 1 : static_cast<size_t>(c.batch), sched.timesteps()[i]);
    Result<void> r = add("sample", unet_->floatTensor("sample", {c.batch, ch, lh, lw}, sample));
    if (r) r = add("timestep", unet_->tensor("timestep", ts_shape, t));
    if (r) r = add("encoder_hidden_states", unet_->floatTensor("encoder_hidden_states", {c.batch, c.seq, c.width}, c.hidden));
    if (r && xl_) r = add("text_embeds", unet_->floatTensor("text_embeds", {c.batch, c.pooled_width}, c.pooled));
    if (r && xl_) r = add("time_ids", unet_->tensor("time_ids", {c.batch, 6}, time_ids));
    if (!r) return fail(r.error());
    auto out = unet_->run(feeds, {"out_sample"});
    if (!out) return fail(out.error());
    auto eps = toFloats((*out)[0], "unet out_sample");
    if (!eps) return fail(eps.error());
    if (eps->size() != sample.size()) return fail(Error::backend("unet/model.onnx: 'out_sample' has the wrong size"));
    std::vector<float> guided(eps->begin(), eps->begin() + static_cast<std::ptrdiff_t>(plane));
    if (c.batch == 2) {
      // Classifier-free guidance: uncond + g * (cond - uncond).
      const float g = static_cast<float>(q.guidance_scale);
      for (size_t k = 0; k < plane; ++k) guided[k] = (*eps)[k] + g * ((*eps)[plane + k] - (*eps)[k]);
    }
    sched.step(guided, i, latents, noise);
    if (on_step && !on_step(i + 1, q.steps)) return std::optional<std::vector<std::uint8_t>>{};
  }
  auto pixels = decode(std::move(latents), q.width, q.height);
  if (!pixels) return fail(pixels.error());
  return std::optional<std::vector<std::uint8_t>>(std::move(*pixels));
}

Result<std::vector<std::uint8_t>> Pipeline::decode(std::vector<float> latents, int width, int height) const {
  const float inv = static_cast<float>(1.0 / scaling_factor_);
  for (auto& v : latents) v *= inv;
  auto in = vae_decoder_->floatTensor("latent_sample", {1, latent_channels_, height / 8, width / 8}, latents);
  if (!in) return fail(in.error());
  std::vector<Feed> feeds;
  feeds.push_back({"latent_sample", std::move(*in)});
  auto out = vae_decoder_->run(feeds, {"sample"});
  if (!out) return fail(out.error());
  auto shape = shapeOf((*out)[0]);
  if (shape != std::vector<std::int64_t>{1, 3, height, width}) {
    std::string got;
    for (auto d : shape) got += (got.empty() ? "" : "x") + std::to_string(d);
    return fail(Error::backend(std::format("vae_decoder/model.onnx made a {} image for {}x{} (expected 1x3x{}x{})",
                                           got, width, height, height, width)));
  }
  auto img = toFloats((*out)[0], "vae_decoder sample");
  if (!img) return fail(img.error());
  // [-1, 1] CHW -> uint8 HWC, rounded as diffusers' numpy_to_pil does.
  const size_t hw = static_cast<size_t>(width) * static_cast<size_t>(height);
  std::vector<std::uint8_t> rgb(hw * 3);
  for (size_t px = 0; px < hw; ++px) {
    for (size_t k = 0; k < 3; ++k) {
      float v = std::clamp((*img)[k * hw + px] / 2.0f + 0.5f, 0.0f, 1.0f);
      rgb[px * 3 + k] = static_cast<std::uint8_t>(std::lround(v * 255.0f));
    }
  }
  return rgb;
}

nlohmann::json Pipeline::describe() const {
  return {{"pipeline", class_name_.empty() ? (xl_ ? "StableDiffusionXLPipeline" : "StableDiffusionPipeline") : class_name_},
          {"scheduler", scheduler_class_},
          {"timestep_spacing", scheduler_.timestep_spacing},
          {"prediction_type", scheduler_.prediction_type},
          {"scaling_factor", scaling_factor_},
          {"text_encoders", xl_ ? 2 : 1}};
}

}  // namespace statim::diffusion
