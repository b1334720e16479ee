#include "backends/llama/chat.h"

#include "backends/llama/tokenize.h"
#include "backends/llama/tools.h"
#include "core/json_util.h"

#include <algorithm>
#include <format>
#include <vector>

namespace statim::llama {

Result<void> validateMessages(const nlohmann::json& params) {
  auto it = params.find("messages");
  if (it == params.end() || !it->is_array() || it->empty()) {
    return fail(Error::invalid("'messages' must be a non-empty list of {role, content}", "messages"));
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& m = (*it)[i];
    std::string f = std::format("messages[{}]", i);
    if (!m.is_object()) return fail(Error::invalid(std::format("'{}' must be an object", f), f));
    for (auto& [k, v] : m.items()) {
      if (k != "role" && k != "content" && k != "name" && k != "tool_calls" && k != "tool_call_id") {
        return fail(Error::invalid(
            std::format("unknown field '{}.{}' (allowed: role, content, name, tool_calls, tool_call_id)", f, k),
            f + "." + k));
      }
    }
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      return fail(Error::invalid(std::format("'{}.role' must be a string", f), f + ".role"));
    static const std::vector<std::string> kRoles = {"system", "user", "assistant", "tool", "developer"};
    if (std::ranges::find(kRoles, role->get<std::string>()) == kRoles.end()) {
      return fail(
          Error::invalid(std::format("'{}.role' must be one of system, user, assistant, tool, developer (got '{}')", f,
                                     role->get<std::string>().substr(0, 32)),
                         f + ".role"));
    }
    auto content = m.find("content");
    if (content == m.end() || !(content->is_string() || content->is_array())) {
      return fail(Error::invalid(std::format("'{}.content' must be a string or a list of parts", f), f + ".content"));
    }
    if (content->is_array()) {
      for (size_t k = 0; k < content->size(); ++k) {
        const auto& part = (*content)[k];
        std::string g = std::format("{}.content[{}]", f, k);
        std::string type = stringAt(part, "type");
        bool media = type == "image" || type == "audio";
        if (media && role->get<std::string>() != "user") {
          return fail(Error::invalid(std::format("'{}': images and audio go in user messages", g), g));
        }
        bool good = (type == "text" && part.contains("text") && part["text"].is_string()) ||
                    (media && part.contains("input") && part["input"].is_string());
        if (!good) {
          return fail(Error::invalid(std::format("'{}' must be {{\"type\": \"text\", \"text\"}} or {{\"type\": "
                                                 "\"image\" | \"audio\", \"input\": \"<an input file's name>\"}}",
                                                 g),
                                     g));
        }
      }
    }
    if (auto name = m.find("name"); name != m.end() && !name->is_string()) {
      return fail(Error::invalid(std::format("'{}.name' must be a string", f), f + ".name"));
    }
    if (auto id = m.find("tool_call_id"); id != m.end() && !id->is_string()) {
      return fail(Error::invalid(std::format("'{}.tool_call_id' must be a string", f), f + ".tool_call_id"));
    }
    if (auto calls = m.find("tool_calls"); calls != m.end()) {
      if (role->get<std::string>() != "assistant" || !calls->is_array()) {
        return fail(Error::invalid(std::format("'{}.tool_calls' must be a list, on an assistant message", f),
                                   f + ".tool_calls"));
      }
      for (size_t k = 0; k < calls->size(); ++k) {
        const auto& c = (*calls)[k];
        std::string g = std::format("{}.tool_calls[{}]", f, k);
        if (!c.is_object() || !c.contains("function") || !c["function"].is_object() ||
            !c["function"].value("name", nlohmann::json()).is_string()) {
          return fail(Error::invalid(
              std::format("'{}' must be {{\"id\", \"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}}",
                          g),
              g));
        }
      }
    }
  }
  return ok();
}

Result<std::string> renderChat(const llama_model* model, const std::string& override_template,
                               const nlohmann::json& messages) {
  const char* tmpl = override_template.empty() ? llama_model_chat_template(model, nullptr) : override_template.c_str();
  if (!tmpl) {
    return fail(
        Error::invalid("this model has no chat template; send a plain prompt, or set params.chat_template "
                       "(e.g. \"chatml\") in its manifest",
                       "messages"));
  }
  std::vector<std::string> roles, contents;
  for (auto& m : messages) {
    roles.push_back(m["role"] == "developer" ? "system" : m["role"].get<std::string>());
    contents.push_back(m["content"]);
  }
  std::vector<llama_chat_message> chat;
  for (size_t i = 0; i < roles.size(); ++i) chat.push_back({roles[i].c_str(), contents[i].c_str()});
  std::string out(1024, '\0');
  int n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), true, out.data(), static_cast<int>(out.size()));
  if (n > static_cast<int>(out.size())) {
    out.resize(static_cast<size_t>(n));
    n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), true, out.data(), static_cast<int>(out.size()));
  }
  if (n < 0) {
    return fail(
        Error::backend("the model's chat template is not one libllama supports; set params.chat_template "
                       "(e.g. \"chatml\") in its manifest"));
  }
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<Prompt> jobPrompt(const llama_model* model, const ContextOptions& options, std::string_view type,
                         const std::string& prompt, const nlohmann::json& params, const std::vector<JobFile>& inputs) {
  Prompt out;
  if (type != "chat") {
    auto tokens = tokenize(model, prompt);
    if (!tokens) return fail(tokens.error());
    out.tokens = std::move(*tokens);
    return out;
  }
  const auto& messages = params["messages"];
  bool parts = std::ranges::any_of(messages, [](const auto& m) { return m.contains("content") && m["content"].is_array(); });
  std::vector<MediaRef> media;
  nlohmann::json flat;
  if (parts) {
    flat = params;
    flat["messages"] = withMediaMarkers(messages, media);
  }
  auto rendered = renderChat(model, options.chat_template, messagesForTemplate(parts ? flat : params, options.tool_format));
  if (!rendered) return fail(rendered.error());
  if (media.empty()) {
    auto tokens = tokenize(model, *rendered);
    if (!tokens) return fail(tokens.error());
    out.tokens = std::move(*tokens);
    return out;
  }
  if (!options.mm) {
    return fail(Error::invalid(std::format("this model takes no {}: its manifest names no params.mmproj (the "
                                           "projector GGUF of a multimodal model)",
                                           media[0].kind == "image" ? "images" : "audio"),
                               "messages"));
  }
  return options.mm->tokenize(*rendered, media, inputs);
}

}  // namespace statim::llama
