#include "backends/diffusion/image_params.h"

#include <format>

#include "backends/params.h"

namespace statim::diffusion {
namespace {

Result<void> multipleOf8(const nlohmann::json& obj, const char* key, std::string_view where) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return ok();
  std::string f = where.empty() ? std::string(key) : std::format("{}.{}", where, key);
  if (it->get<std::int64_t>() % 8 != 0) {
    return fail(Error::invalid(std::format("'{}' must be a multiple of 8 (the VAE's scale), got {}", f,
                                           it->get<std::int64_t>()), f));
  }
  return ok();
}

Result<void> side(const nlohmann::json& obj, const char* key, int max, std::string_view where) {
  if (auto r = params::integer(obj, key, 8, max, where); !r) return r;
  return multipleOf8(obj, key, where);
}

constexpr params::Spec kImageParams[] = {
    {.name = "negative_prompt",
     .kind = params::Spec::kString,
     .max_len = 16384,
     .help = "what the image should not show"},
    {.name = "width", .kind = params::Spec::kInteger, .min = 8, .max = kMaxSide, .help = "pixels, a multiple of 8"},
    {.name = "height", .kind = params::Spec::kInteger, .min = 8, .max = kMaxSide, .help = "pixels, a multiple of 8"},
    {.name = "steps", .kind = params::Spec::kInteger, .min = 1, .max = kMaxSteps, .help = "denoising steps"},
    {.name = "guidance_scale", .kind = params::Spec::kNumber, .max = 20, .help = "classifier-free guidance; 0: off"},
    {.name = "seed", .kind = params::Spec::kInteger, .max = static_cast<double>(kMaxSeed), .help = "absent: random"},
    {.name = "num_images", .kind = params::Spec::kInteger, .min = 1, .max = 4, .fallback = 1, .help = "images per job"},
};

}  // namespace

Result<ImageLimits> parseLimits(const nlohmann::json& p) {
  constexpr std::string_view kWhere = "params";
  if (auto r = params::onlyKnown(p, {"threads", "default_width", "default_height", "max_width", "max_height",
                                     "default_steps", "max_steps", "default_guidance_scale"}, kWhere); !r)
    return fail(r.error());
  for (const char* k : {"default_width", "default_height", "max_width", "max_height"}) {
    if (auto r = side(p, k, kMaxSide, kWhere); !r) return fail(r.error());
  }
  if (auto r = params::integer(p, "threads", 0, 256, kWhere); !r) return fail(r.error());
  if (auto r = params::integer(p, "default_steps", 1, kMaxSteps, kWhere); !r) return fail(r.error());
  if (auto r = params::integer(p, "max_steps", 1, kMaxSteps, kWhere); !r) return fail(r.error());
  if (auto r = params::number(p, "default_guidance_scale", 0, 20, kWhere); !r) return fail(r.error());
  ImageLimits l;
  l.threads = p.value("threads", l.threads);
  l.max_width = p.value("max_width", l.max_width);
  l.max_height = p.value("max_height", l.max_height);
  l.default_width = p.value("default_width", std::min(l.default_width, l.max_width));
  l.default_height = p.value("default_height", std::min(l.default_height, l.max_height));
  l.max_steps = p.value("max_steps", l.max_steps);
  l.default_steps = p.value("default_steps", std::min(l.default_steps, l.max_steps));
  l.default_guidance_scale = p.value("default_guidance_scale", l.default_guidance_scale);
  if (l.default_width > l.max_width)
    return fail(Error::invalid("'params.default_width' must not exceed 'params.max_width'", "params.default_width"));
  if (l.default_height > l.max_height)
    return fail(Error::invalid("'params.default_height' must not exceed 'params.max_height'", "params.default_height"));
  if (l.default_steps > l.max_steps)
    return fail(Error::invalid("'params.default_steps' must not exceed 'params.max_steps'", "params.default_steps"));
  return l;
}

Result<void> validateImageParams(const nlohmann::json& p) {
  if (auto r = params::check(p, kImageParams); !r) return r;
  if (auto r = multipleOf8(p, "width", "params"); !r) return r;
  return multipleOf8(p, "height", "params");
}

nlohmann::json imageParamsSchema(const nlohmann::json& manifest) {
  auto out = params::describe(kImageParams);
  if (auto limits = parseLimits(manifest)) {
    out["width"]["default"] = limits->default_width;
    out["width"]["maximum"] = limits->max_width;
    out["height"]["default"] = limits->default_height;
    out["height"]["maximum"] = limits->max_height;
    out["steps"]["default"] = limits->default_steps;
    out["steps"]["maximum"] = limits->max_steps;
    out["guidance_scale"]["default"] = limits->default_guidance_scale;
  }
  for (auto side : {"width", "height"}) out[side]["multipleOf"] = 8;
  return out;
}

Result<ImageRequest> resolveImageRequest(const std::string& prompt, const nlohmann::json& p, const ImageLimits& l,
                                         std::uint64_t seed) {
  if (auto r = validateImageParams(p); !r) return fail(r.error());
  // The model's own bounds (the static checks above allow up to the absolute limits).
  if (auto r = side(p, "width", l.max_width, "params"); !r) return fail(r.error());
  if (auto r = side(p, "height", l.max_height, "params"); !r) return fail(r.error());
  if (auto r = params::integer(p, "steps", 1, l.max_steps, "params"); !r) return fail(r.error());
  ImageRequest q;
  q.prompt = prompt;
  q.negative_prompt = p.value("negative_prompt", "");
  q.width = p.value("width", l.default_width);
  q.height = p.value("height", l.default_height);
  q.steps = p.value("steps", l.default_steps);
  q.guidance_scale = p.value("guidance_scale", l.default_guidance_scale);
  q.seed = p.contains("seed") ? p["seed"].get<std::uint64_t>() : seed;
  q.num_images = p.value("num_images", 1);
  return q;
}

}  // namespace statim::diffusion
