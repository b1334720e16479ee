// What every backend on ONNX Runtime shares (onnx, diffusion): the process's one Ort::Env and
// opening a session. Each backend keeps its own thin model wrapper over the session it gets.
//
// Thread-safety: env() and openSession() may be called from any thread; an Ort::Session's Run()
// may be called concurrently (ONNX Runtime guarantees it), so one session serves all of a model's
// workers.
#pragma once

#include <filesystem>
#include <memory>
#include <string_view>

#include <onnxruntime_cxx_api.h>

#include "statim/error.h"

namespace statim::ort {

// Created on first use and never destroyed: sessions still held at exit must not outlive it.
Ort::Env& env();

// Opens `path` with `threads` intra-op threads (0: ONNX Runtime's default), one inter-op thread,
// sequential execution and every graph optimisation. `label` names the file in errors ("unet/model.onnx").
Result<std::unique_ptr<Ort::Session>> openSession(const std::filesystem::path& path, int threads,
                                                  std::string_view label);

}  // namespace statim::ort
