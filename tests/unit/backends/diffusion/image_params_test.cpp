#include "backends/diffusion/image_params.h"

#include <gtest/gtest.h>

namespace statim::diffusion {
namespace {

using nlohmann::json;

std::string errorOf(const Result<void>& r) { return r ? "" : r.error().field + ": " + r.error().message; }

TEST(DiffusionParams, AcceptsEveryKnownParam) {
  json p = {{"negative_prompt", "fog"}, {"width", 512}, {"height", 256}, {"steps", 4},
            {"guidance_scale", 7.5},    {"seed", 42},   {"num_images", 4}};
  EXPECT_TRUE(validateImageParams(p));
  EXPECT_TRUE(validateImageParams(json::object()));
}

TEST(DiffusionParams, ErrorsNameTheFieldAndTheRule) {
  EXPECT_EQ(errorOf(validateImageParams({{"width", 513}})),
            "params.width: 'params.width' must be a multiple of 8 (the VAE's scale), got 513");
  EXPECT_EQ(errorOf(validateImageParams({{"height", 0}})), "params.height: 'params.height' must be between 8 and 4096");
  EXPECT_EQ(errorOf(validateImageParams({{"steps", 0}})), "params.steps: 'params.steps' must be between 1 and 1000");
  EXPECT_EQ(errorOf(validateImageParams({{"num_images", 9}})),
            "params.num_images: 'params.num_images' must be between 1 and 4");
  EXPECT_EQ(errorOf(validateImageParams({{"guidance_scale", -1}})),
            "params.guidance_scale: 'params.guidance_scale' must be between 0 and 20");
  EXPECT_EQ(errorOf(validateImageParams({{"seed", 4294967296LL}})),
            "params.seed: 'params.seed' must be between 0 and 4294967295");
  EXPECT_EQ(errorOf(validateImageParams({{"negative_prompt", 3}})),
            "params.negative_prompt: 'params.negative_prompt' must be a string");
  EXPECT_NE(errorOf(validateImageParams({{"sampler", "ddim"}})).find("unknown field 'params.sampler'"), std::string::npos);
}

TEST(DiffusionParams, DefaultsComeFromTheManifest) {
  auto limits = parseLimits({{"default_width", 1024}, {"default_height", 768}, {"max_width", 1024},
                             {"max_height", 1024}, {"default_steps", 2}, {"max_steps", 8},
                             {"default_guidance_scale", 7.5}, {"threads", 3}});
  ASSERT_TRUE(limits) << limits.error().message;
  EXPECT_EQ(limits->threads, 3);
  auto q = resolveImageRequest("a cat", json::object(), *limits, 77);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->prompt, "a cat");
  EXPECT_EQ(q->width, 1024);
  EXPECT_EQ(q->height, 768);
  EXPECT_EQ(q->steps, 2);
  EXPECT_DOUBLE_EQ(q->guidance_scale, 7.5);
  EXPECT_EQ(q->seed, 77u);  // the caller's random seed when the job names none
  EXPECT_EQ(q->num_images, 1);
  auto named = resolveImageRequest("a cat", {{"seed", 5}, {"width", 64}, {"guidance_scale", 0}}, *limits, 77);
  ASSERT_TRUE(named);
  EXPECT_EQ(named->seed, 5u);
  EXPECT_EQ(named->width, 64);
  EXPECT_DOUBLE_EQ(named->guidance_scale, 0.0);
}

TEST(DiffusionParams, TheManifestsMaximaBoundTheJob) {
  auto limits = parseLimits({{"max_width", 512}, {"max_height", 512}, {"max_steps", 4}});
  ASSERT_TRUE(limits);
  EXPECT_EQ(limits->default_width, 512);
  auto wide = resolveImageRequest("x", {{"width", 1024}}, *limits, 0);
  ASSERT_FALSE(wide);
  EXPECT_EQ(wide.error().field, "params.width");
  EXPECT_EQ(wide.error().message, "'params.width' must be between 8 and 512");
  auto many = resolveImageRequest("x", {{"steps", 5}}, *limits, 0);
  ASSERT_FALSE(many);
  EXPECT_EQ(many.error().message, "'params.steps' must be between 1 and 4");
}

TEST(DiffusionParams, BadManifestParams) {
  auto r = parseLimits({{"default_width", 1000}, {"max_width", 512}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "'params.default_width' must not exceed 'params.max_width'");
  r = parseLimits({{"max_height", 100}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "params.max_height");
  r = parseLimits({{"steps", 4}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("unknown field 'params.steps'"), std::string::npos);
}

}  // namespace
}  // namespace statim::diffusion
