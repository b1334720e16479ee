// OpenMP on statim's own threads (docs/compute.md). libgomp keeps a pool of threads for each
// thread that opens a parallel region, and once the process holds more OpenMP threads than cores
// it stops spinning at barriers for good: every ggml graph node then sleeps on a futex, a 4-5x
// slowdown of every LLM in the process. So ggml's graphs run on the compute budget's one compute
// thread, and every other thread that calls into an OpenMP library calls this first.
#pragma once

namespace statim {

// Every parallel region this thread opens runs on this thread alone, whatever thread count the
// region names, so the thread never gets a pool. Two libraries open such regions off the compute
// thread:
// - ggml's AMX weight conversion at model load (a default-sized region): on CPUs with AMX (Intel
//   Sapphire Rapids and later) it gave the loader thread a second pool, and the LLM then ran at a
//   quarter of its speed (bench/README.md, "A second OpenMP pool from the loader");
// - tesseract's LSTM, whose regions ask for 4 threads each: an OCR page then runs single-threaded
//   on its worker, ~10x faster than with its 4-thread teams on 2 cores (bench/README.md, "OCR
//   pages on their workers").
// Both ICVs it sets (nthreads-var, max-active-levels-var) belong to the calling thread in libgomp:
// the compute thread's teams are not affected.
void confineOpenMpToThisThread();

}  // namespace statim
