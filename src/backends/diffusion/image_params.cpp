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
  constexpr std::string_view kWhere = "params";
  if (auto r = params::onlyKnown(p, {"negative_prompt", "width", "height", "steps", "guidance_scale", "seed",
                                     "num_images"}, kWhere); !r)
    return r;
  if (auto r = params::string(p, "negative_prompt", 16384, kWhere); !r) return r;
  if (auto r = side(p, "width", kMaxSide, kWhere); !r) return r;
  if (auto r = side(p, "height", kMaxSide, kWhere); !r) return r;
  if (auto r = params::integer(p, "steps", 1, kMaxSteps, kWhere); !r) return r;
  if (auto r = params::number(p, "guidance_scale", 0, 20, kWhere); !r) return r;
  if (auto r = params::integer(p, "seed", 0, kMaxSeed, kWhere); !r) return r;
  return params::integer(p, "num_images", 1, 4, kWhere);
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
