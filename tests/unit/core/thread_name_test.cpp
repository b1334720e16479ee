// Threads are named as `top -H`, ps and gdb show them; a name over 15 bytes is cut, not refused.
#include "core/thread_name.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <format>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

namespace statim {
namespace {

std::string myName() {
  std::ifstream in(std::format("/proc/self/task/{}/comm", static_cast<long>(::syscall(SYS_gettid))));
  std::string name;
  std::getline(in, name);
  return name;
}

TEST(ThreadNameTest, AThreadTakesItsNameCutTo15Bytes) {
  std::string short_name, long_name;
  std::thread([&] {
    nameThisThread("store-writer");
    short_name = myName();
    nameThisThread("run:a-model-with-a-long-id");
    long_name = myName();
  }).join();
  EXPECT_EQ(short_name, "store-writer");
  EXPECT_EQ(long_name, "run:a-model-wit");
}

}  // namespace
}  // namespace statim
