// OpenMP on statim's own threads (docs/compute.md). libgomp keeps a pool of threads for each
// thread that opens a parallel region, and once the process holds more OpenMP threads than cores
// it stops spinning at barriers for good: every ggml graph node then sleeps on a futex, a 4-5x
// slowdown of every LLM in the process. So inference runs on the compute budget's one compute
// thread, and every other thread that calls into such a library calls this first.
#pragma once

namespace statim {

// Parallel regions this thread opens without a thread count of their own run on this thread
// alone, so it never gets a pool. ggml's AMX weight conversion at model load is one: on CPUs with
// AMX (Intel Sapphire Rapids and later) it gave the loader thread a second pool, and the LLM then
// ran at a quarter of its speed (bench/README.md, "A second OpenMP pool from the loader").
// Regions with an explicit thread count (ggml's graphs) are not affected.
void confineOpenMpToThisThread();

}  // namespace statim
