// params::check and params::describe: one table of a job type's params, checked and described
// alike (what GET /models says is what a job is held to).
#include <gtest/gtest.h>

#include "backends/params.h"

namespace statim {
namespace {

using params::Spec;

constexpr Spec kSpecs[] = {
    {.name = "n", .kind = Spec::kInteger, .min = 1, .max = 10, .fallback = 3, .help = "how many"},
    {.name = "t", .kind = Spec::kNumber, .min = 0, .max = 1.5},
    {.name = "s", .kind = Spec::kString, .max_len = 4},
    {.name = "b", .kind = Spec::kBoolean, .fallback = 1},
    {.name = "l", .kind = Spec::kStringOrList, .max = 2, .max_len = 3},
    {.name = "o", .kind = Spec::kObject},
};

std::string errorOf(const nlohmann::json& p, std::span<const std::string_view> also = {}) {
  auto r = params::check(p, kSpecs, "params", also);
  return r ? "" : r.error().field + ": " + r.error().message;
}

TEST(ParamsSpec, ChecksKindsAndRangesNamingTheField) {
  EXPECT_EQ(errorOf(nlohmann::json::object()), "");
  EXPECT_EQ(errorOf({{"n", 1}, {"t", 1.5}, {"s", "abcd"}, {"b", false}, {"l", {"a", "bc"}}, {"o", {{"x", 1}}}}), "");
  EXPECT_EQ(errorOf({{"n", 11}}), "params.n: 'params.n' must be between 1 and 10");
  EXPECT_EQ(errorOf({{"n", 2.5}}), "params.n: 'params.n' must be an integer");
  EXPECT_EQ(errorOf({{"t", -0.1}}), "params.t: 'params.t' must be between 0 and 1.5");
  EXPECT_EQ(errorOf({{"s", "abcde"}}), "params.s: 'params.s' must be at most 4 bytes");
  EXPECT_EQ(errorOf({{"b", 1}}), "params.b: 'params.b' must be true or false");
  EXPECT_NE(errorOf({{"l", {"a", "b", "c"}}}), "");
  EXPECT_EQ(errorOf({{"o", "x"}}), "params.o: 'params.o' must be an object");
  EXPECT_EQ(errorOf(nlohmann::json::array()), "params: 'params' must be an object");
}

TEST(ParamsSpec, UnknownFieldsAreNamedWithWhatIsAllowed) {
  EXPECT_EQ(errorOf({{"zz", 1}}), "params.zz: unknown field 'params.zz' (allowed: n, t, s, b, l, o)");
  constexpr std::string_view kAlso[] = {"messages"};
  EXPECT_EQ(errorOf({{"messages", 1}}, kAlso), "") << "checked elsewhere, but known";
  EXPECT_EQ(errorOf({{"zz", 1}}, kAlso), "params.zz: unknown field 'params.zz' (allowed: n, t, s, b, l, o, messages)");
}

TEST(ParamsSpec, DescribesEachParamAsJsonSchema) {
  auto d = params::describe(kSpecs);
  EXPECT_EQ(d["n"],
            nlohmann::json(
                {{"type", "integer"}, {"minimum", 1}, {"maximum", 10}, {"default", 3}, {"description", "how many"}}));
  EXPECT_EQ(d["t"], nlohmann::json({{"type", "number"}, {"minimum", 0.0}, {"maximum", 1.5}}));
  EXPECT_EQ(d["s"], nlohmann::json({{"type", "string"}, {"maxLength", 4}}));
  EXPECT_EQ(d["b"], nlohmann::json({{"type", "boolean"}, {"default", true}}));
  EXPECT_EQ(d["l"]["oneOf"][1]["maxItems"], 2);
  EXPECT_EQ(d["o"], nlohmann::json({{"type", "object"}}));
  EXPECT_EQ(d.size(), std::size(kSpecs));
}

}  // namespace
}  // namespace statim
