#include "core/openmp.h"

// libgomp's, declared here rather than through <omp.h>: the clang builds (fuzzing) have no omp.h.
extern "C" void omp_set_num_threads(int n);
extern "C" void omp_set_max_active_levels(int levels);

namespace statim {

void confineOpenMpToThisThread() {
  omp_set_num_threads(1);        // regions without a thread count of their own
  omp_set_max_active_levels(0);  // and those with one: no region on this thread is active
}

}  // namespace statim
