// `ocr`: Tesseract (libtesseract, LSTM engine) reading text from PNG/JPEG inputs.
// Manifest: file = the language's .traineddata (its folder is the tessdata dir, its stem the
// language, e.g. eng). Params: psm (page segmentation mode 0..13, default 3).
// Result: text, lines and words with boxes (pixels, original image) and confidences (0..100).
#pragma once

#include "statim/backend.h"

namespace statim {

const Backend& ocrBackend();

}  // namespace statim
