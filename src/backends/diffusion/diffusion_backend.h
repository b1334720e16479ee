// `diffusion`: text-to-image (job type `image`) with Stable Diffusion exports on ONNX Runtime
// (SD-Turbo, SDXL-Turbo, SD 1.5/2.x: the diffusers/optimum ONNX folder layout).
// Manifest: file = the export folder (model_index.json, text_encoder[_2]/, unet/, vae_decoder/,
// tokenizer[_2]/, scheduler/). [params]: threads (ONNX Runtime intra-op threads per model),
// default_width/default_height, max_width/max_height, default_steps/max_steps,
// default_guidance_scale. The ONNX sessions are opened once at load and shared by all workers.
// Job params: negative_prompt, width, height (multiples of 8), steps, guidance_scale (0..20;
// > 1 turns classifier-free guidance on), seed (default random), num_images (1..4).
// Result: one PNG artifact per image (image-0.png, ...) and the effective params incl. the seeds;
// progress events {"type": "progress", "step", "steps", "image"} after each denoising step.
#pragma once

#include "statim/backend.h"

namespace statim {

const Backend& diffusionBackend();

}  // namespace statim
