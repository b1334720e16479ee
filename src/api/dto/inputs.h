// Input files of POST /job: multipart/form-data (text fields as in the JSON body, `params` as a
// JSON text, every file part an input named by its field), or JSON with
// "inputs": {"<name>": "<base64>"} for small files. Files go to the blob store before the job is
// submitted; their content type is sniffed from the bytes.
#pragma once

#include <drogon/HttpRequest.h>
#include <nlohmann/json.hpp>

#include "statim/error.h"
#include "statim/job.h"
#include "store/blob_store.h"

namespace statim::api {

struct JobRequest {
  nlohmann::json body;          // the JSON body, or what the multipart text fields amount to
  std::vector<JobFile> inputs;  // stored already
};

// Reads the body of POST /job whatever its form. Errors name the field (`inputs.<name>`).
Result<JobRequest> readJobRequest(const drogon::HttpRequestPtr& req, BlobStore& blobs);

}  // namespace statim::api
