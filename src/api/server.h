// The HTTP adapter: wires routes, request ids, access logging and error shapes onto Drogon.
// Holds no job logic: it parses, validates, calls the scheduler/store, and renders.
#pragma once

#include "core/config.h"
#include "core/metrics.h"
#include "models/model_registry.h"
#include "scheduler/model_lifecycle.h"
#include "scheduler/node_presence.h"
#include "scheduler/scheduler.h"
#include "store/audit_store.h"
#include "store/blob_store.h"
#include "store/job_store.h"
#include "store/key_store.h"
#include "store/webhook_store.h"

namespace statim::api {

struct ApiContext {
  const Config& config;
  JobStore& store;
  Scheduler& scheduler;
  ModelRegistry& models;
  KeyStore& keys;
  AuditStore& audit;
  WebhookStore& webhooks;
  Metrics& metrics;                     // HTTP metrics are added here; /metrics renders it
  BlobStore& blobs;                     // input files and artifacts
  ModelLifecycle* lifecycle = nullptr;  // load/unload routes; null: they answer 503
  NodePresence* presence = nullptr;     // GET /nodes, and which nodes serve each model
};

// Registers every route and advice on drogon::app() and configures its listener.
void configureServer(const ApiContext& ctx);

// Per-resource route registration (controllers/).
void registerJobRoutes(const ApiContext& ctx);
void registerModelRoutes(const ApiContext& ctx);
void registerSystemRoutes(const ApiContext& ctx);
void registerOpenAiRoutes(const ApiContext& ctx);
void registerOpenAiSpeechRoutes(const ApiContext& ctx);
void registerOpenAiAudioRoutes(const ApiContext& ctx);  // /v1/audio/transcriptions
void registerOpenAiImageRoutes(const ApiContext& ctx);
void registerAdminRoutes(const ApiContext& ctx);
void registerAnthropicRoutes(const ApiContext& ctx);  // /v1/messages
void registerResponsesRoutes(const ApiContext& ctx);  // /v1/responses
void registerTokenizeRoutes(const ApiContext& ctx);   // /tokenize, /detokenize
void registerDocsRoutes(const ApiContext& ctx);
void registerUiRoutes(const ApiContext& ctx);  // the web dashboard, /ui

}  // namespace statim::api
