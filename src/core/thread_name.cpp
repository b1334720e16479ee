#include "core/thread_name.h"

#include <pthread.h>

#include <string>

namespace statim {

void nameThisThread(std::string_view name) {
  std::string s(name.substr(0, 15));  // the kernel keeps 15 bytes and a NUL; longer fails
  (void)pthread_setname_np(pthread_self(), s.c_str());
}

}  // namespace statim
