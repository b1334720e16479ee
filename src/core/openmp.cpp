#include "core/openmp.h"

#include <omp.h>

namespace statim {

void confineOpenMpToThisThread() { omp_set_num_threads(1); }

}  // namespace statim
