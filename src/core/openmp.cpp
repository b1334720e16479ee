#include "core/openmp.h"

// libgomp's, declared here rather than through <omp.h>: the clang builds (fuzzing) have no omp.h.
extern "C" void omp_set_num_threads(int n);

namespace statim {

void confineOpenMpToThisThread() { omp_set_num_threads(1); }

}  // namespace statim
