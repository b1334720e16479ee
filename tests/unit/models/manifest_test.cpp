#include "models/manifest.h"

#include <gtest/gtest.h>

#include "../test_util.h"
#include "models/model_registry.h"

namespace statim {
namespace {

TEST(Manifest, ParsesAllKeysAndResolvesRelativeFile) {
  auto m = parseManifest(R"(
id = "stories"
backend = "llama"
file = "../weights/s.gguf"
type = "completion"
description = "tiny"
max_queue = 7
parallel = 3
required = true
[params]
n_ctx = 256
threads = 2
)",
                         "/etc/statim/models/stories.toml", 1000);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->id, "stories");
  EXPECT_EQ(m->backend, "llama");
  EXPECT_EQ(m->file, "/etc/statim/weights/s.gguf");
  EXPECT_EQ(m->max_queue, 7);
  EXPECT_EQ(m->parallel, 3);
  EXPECT_TRUE(m->required);
  EXPECT_EQ(m->params["n_ctx"], 256);
}

TEST(Manifest, DefaultsApply) {
  auto m = parseManifest("id = \"e\"\nbackend = \"echo\"\n", "/m/e.toml", 42);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->max_queue, 42);
  EXPECT_EQ(m->parallel, 1);
  EXPECT_TRUE(m->file.empty());
  EXPECT_TRUE(m->preload);
  EXPECT_EQ(m->keep_alive, -1);
  auto lazy = parseManifest("id = \"e\"\nbackend = \"echo\"\npreload = false\nkeep_alive = 30\n", "/m/e.toml", 42);
  ASSERT_TRUE(lazy) << lazy.error().message;
  EXPECT_FALSE(lazy->preload);
  EXPECT_EQ(lazy->keep_alive, 30);
}

TEST(Manifest, ErrorsNameTheFileAndKey) {
  struct Case {
    std::string text, expected;
  };
  for (auto& c : std::vector<Case>{
           {"backend = \"echo\"", "manifest x.toml: missing required key 'id'"},
           {"id = 5\nbackend = \"echo\"", "manifest x.toml: 'id' must be a string"},
           {"id = \"a b\"\nbackend = \"echo\"", "manifest x.toml: id 'a b' must be"},
           {"id = \"a\"\nbackend = \"echo\"\nparallel = 0", "manifest x.toml: 'parallel' must be an integer in 1..256"},
           {"id = \"a\"\nbackend = \"echo\"\nmax_queue = -1", "manifest x.toml: 'max_queue' must be an integer >= 1"},
           {"id = \"a\"\nbackend = \"echo\"\nfiel = \"x\"", "manifest x.toml: unknown key 'fiel'"},
           {"id = \"a\"\nbackend = \"echo\"\nparams = 3", "manifest x.toml: 'params' must be a table"},
           {"id = \"a\"\nbackend = \"echo\"\npreload = 1", "manifest x.toml: 'preload' must be true or false"},
           {"id = \"a\"\nbackend = \"echo\"\nkeep_alive = -5",
            "manifest x.toml: 'keep_alive' must be a number of seconds >= 0, or -1 (never unload)"},
           {"id = \"a\"\nbackend = \"echo\"\nkeep_alive = \"5m\"",
            "manifest x.toml: 'keep_alive' must be a number of seconds >= 0, or -1 (never unload)"},
           {"id = \"a\"\nbackend = ", "manifest x.toml: "},
       }) {
    auto m = parseManifest(c.text, "/m/x.toml", 10);
    ASSERT_FALSE(m) << c.text;
    EXPECT_EQ(m.error().message.rfind(c.expected, 0), 0u) << "got: " << m.error().message;
  }
}

TEST(ModelRegistry, BadManifestsAreListedAsFailedAndOthersLoad) {
  testing::TempDir dir;
  dir.write("echo.toml", "id = \"echo\"\nbackend = \"echo\"\n");
  dir.write("broken.toml", "id = ");
  dir.write("nobackend.toml", "id = \"x\"\nbackend = \"quantum\"\n");
  dir.write("missing.toml", "id = \"gone\"\nbackend = \"llama\"\nfile = \"nowhere.gguf\"\n");
  dir.write("notes.txt", "ignored");
  auto reg = ModelRegistry::fromDirectory(dir.path(), 100);
  std::vector<std::string> ready;
  reg->loadAll([&](const std::string& id) { ready.push_back(id); });
  reg->waitLoaded();
  EXPECT_EQ(reg->ids(), (std::vector<std::string>{"broken", "echo", "gone", "x"}));
  EXPECT_EQ(reg->find("echo")->state, ModelState::kReady);
  EXPECT_EQ(reg->find("broken")->state, ModelState::kFailed);
  EXPECT_NE(reg->find("x")->reason.find("unknown backend 'quantum' (available: echo, llama"), std::string::npos)
      << reg->find("x")->reason;
  auto gone = reg->find("gone");
  EXPECT_EQ(gone->state, ModelState::kFailed);
  EXPECT_NE(gone->reason.find("model file not found"), std::string::npos) << gone->reason;
  EXPECT_NE(gone->reason.find("nowhere.gguf"), std::string::npos) << gone->reason;
  EXPECT_EQ(ready, std::vector<std::string>{"echo"});
}

}  // namespace
}  // namespace statim
