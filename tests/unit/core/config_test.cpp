#include "core/config.h"

#include <gtest/gtest.h>

#include "../test_util.h"

namespace statim {
namespace {

TEST(Config, DefaultsWithoutFileOrEnv) {
  auto c = loadConfig("", {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->http_port, 5000);
  EXPECT_EQ(c->data_dir, "data");
  EXPECT_EQ(c->log_format, "text");
  EXPECT_EQ(c->jobs_max_attempts, 3);
}

TEST(Config, FileThenEnvOverride) {
  testing::TempDir dir;
  auto file = dir.write("statim.toml", R"(
data_dir = "/var/lib/x"
[http]
port = 8080
[jobs]
lease_seconds = 2.5
)");
  auto c = loadConfig(file, {{"STATIM_HTTP_PORT", "9090"}, {"STATIM_LOG_FORMAT", "json"}, {"UNRELATED", "1"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->data_dir, "/var/lib/x");
  EXPECT_EQ(c->http_port, 9090);  // env wins over the file
  EXPECT_EQ(c->log_format, "json");
  EXPECT_DOUBLE_EQ(c->jobs_lease_seconds, 2.5);
}

TEST(Config, UnknownKeyIsNamed) {
  testing::TempDir dir;
  auto file = dir.write("statim.toml", "[http]\nprot = 1\n");
  auto c = loadConfig(file, {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("unknown key 'http.prot'"), std::string::npos) << c.error().message;
}

// Found by tests/fuzz/fuzz_toml: a float too large for int64 where an integer goes was undefined
// behaviour (toml++ converted it before we checked the type); an integer too large for an int
// field wrapped around into a valid-looking port.
TEST(Config, HugeNumbersAreRefusedNotConverted) {
  testing::TempDir dir;
  auto c = loadConfig(dir.write("a.toml", "[http]\nport = 9999999999999999999999999999999999999995.00\n"), {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "config http.port: expected an integer");
  c = loadConfig(dir.write("b.toml", "[http]\nport = 4294972296\n"), {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "config http.port: 4294972296 is out of range");
}

TEST(Config, WrongTypeIsNamed) {
  testing::TempDir dir;
  auto file = dir.write("statim.toml", "[http]\nport = \"eighty\"\n");
  auto c = loadConfig(file, {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message, "config http.port: expected an integer");
}

TEST(Config, BadEnvValueNamesTheVariable) {
  auto c = loadConfig("", {{"STATIM_HTTP_PORT", "12x"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("STATIM_HTTP_PORT"), std::string::npos) << c.error().message;
}

TEST(Config, RangeChecks) {
  auto c = loadConfig("", {{"STATIM_LOG_FORMAT", "xml"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("log.format"), std::string::npos);
  c = loadConfig("", {{"STATIM_JOBS_MAX_ATTEMPTS", "0"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("jobs.max_attempts"), std::string::npos);
}

TEST(Config, MemoryBudgetAndComputeCores) {
  const std::int64_t gib = std::int64_t{1} << 30;
  EXPECT_EQ(*parseMemoryBudget("75%", 8 * gib), 6 * gib);
  EXPECT_EQ(*parseMemoryBudget("12GiB", 8 * gib), 12 * gib);
  EXPECT_EQ(*parseMemoryBudget("800MB", 8 * gib), 800'000'000);
  EXPECT_EQ(*parseMemoryBudget("1.5KiB", 8 * gib), 1536);
  EXPECT_EQ(*parseMemoryBudget("4096", 8 * gib), 4096);
  EXPECT_EQ(*parseMemoryBudget("off", 8 * gib), 0);
  for (const char* bad : {"lots", "12 GiB", "150%", "-1GiB", "GiB", ""}) {
    auto r = parseMemoryBudget(bad, 8 * gib);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().field, "models.max_memory");
    EXPECT_NE(r.error().message.find("is not a size; use a share of physical memory"), std::string::npos);
  }
  auto c = loadConfig("", {{"STATIM_MODELS_MAX_MEMORY", "2GiB"}, {"STATIM_COMPUTE_CORES", "3"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->models_max_memory, "2GiB");
  EXPECT_EQ(c->compute_cores, 3);
  auto bad = loadConfig("", {{"STATIM_COMPUTE_CORES", "-1"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "config compute.cores must be 0..4096 (0 = every core this process may use)");
  EXPECT_FALSE(loadConfig("", {{"STATIM_MODELS_MAX_MEMORY", "lots"}}));
}

TEST(Config, SyntaxErrorHasLine) {
  testing::TempDir dir;
  auto file = dir.write("statim.toml", "data_dir = \"x\"\n[http\n");
  auto c = loadConfig(file, {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("line 2"), std::string::npos) << c.error().message;
}

}  // namespace
}  // namespace statim
