#include "store/job_store.h"

#include <future>

namespace statim {

Result<Job> JobStore::create(NewJob job) {
  std::promise<Result<Job>> p;
  auto f = p.get_future();
  createAsync(std::move(job), [&p](Result<Job> r) { p.set_value(std::move(r)); });
  return f.get();
}

}  // namespace statim
