#include "backends/llama/json_grammar.h"

#include <algorithm>
#include <cstdint>
#include <format>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace statim::llama {
namespace {

using Json = nlohmann::ordered_json;
using Pointer = Json::json_pointer;

constexpr int kMaxDepth = 64;         // schema nesting, $ref and allOf chains we follow
constexpr int kMaxWork = 100000;      // schemas visited: allOf/$ref inlining must not fan out without end
constexpr int64_t kMaxRepeat = 1000;  // libllama expands x{m,n} into n rules; past ~2000 it refuses the
                                      // grammar or, worse, silently stops constraining (seen in 0.7.0)

// Shared rules, emitted only when referenced. Values carry no surrounding whitespace: containers put `ws`
// after "{", "[", ":" and "," and before "}" and "]", so two `ws` are never adjacent (no ambiguous parses)
// and the root ends at its closing character, after which only end-of-generation tokens are allowed.
// Whitespace and digit runs are bounded so that a looping model cannot spin forever inside one value.
constexpr std::pair<std::string_view, std::string_view> kPrimitives[] = {
    {"ws", R"([ \t\n]{0,20})"},
    {"escape", R"(["\\/bfnrt] | "u" [0-9a-fA-F]{4})"},
    {"char", R"([^"\\\x00-\x1F] | "\\" escape)"},  // RFC 8259: control characters, " and \ must be escaped
    {"string", R"("\"" char* "\"")"},
    {"integer", R"("-"? ("0" | [1-9] [0-9]{0,15}))"},
    {"number", R"(integer ("." [0-9]{1,16})? ([eE] [+-]? [0-9]{1,3})?)"},
    {"boolean", R"("true" | "false")"},
    {"null", R"("null")"},
    {"value", "object | array | string | number | boolean | null"},
    {"member", R"(string ws ":" ws value)"},
    {"object", R"("{" ws (member ws ("," ws member ws)*)? "}")"},
    {"array", R"("[" ws (value ws ("," ws value ws)*)? "]")"},
    {"date", R"([0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]))"},
    {"time", R"(([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,9})?)"
             R"( ([Zz] | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]))"},  // RFC 3339 full-time
    {"date-time", R"(date [Tt] time)"},
    {"uuid", R"([0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12})"},
};
constexpr std::string_view kQuote = R"("\"")";

// Keywords that restrict valid documents in ways this converter cannot express; dropping them silently
// would let the model produce documents the caller's validator rejects.
// clang-format off
const std::set<std::string, std::less<>> kUnsupported = {
    "pattern", "patternProperties", "propertyNames", "minProperties", "maxProperties", "dependentRequired",
    "dependentSchemas", "dependencies", "unevaluatedProperties", "unevaluatedItems", "prefixItems",
    "additionalItems", "contains", "minContains", "maxContains", "uniqueItems", "not", "if", "then", "else",
    "multipleOf", "$dynamicRef", "$recursiveRef"};
// Keywords the converter acts on; any other keyword is an annotation or ignored (see the header).
const std::set<std::string, std::less<>> kHandled = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength",
    "maxLength", "format", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"};
// clang-format on

std::string where(const Pointer& at) { return at.empty() ? "the root" : at.to_string(); }
std::unexpected<Error> invalid(const std::string& message) { return fail(Error::invalid("json_schema: " + message)); }
constexpr std::string_view kNotSupported = " is not supported";
std::unexpected<Error> unsupported(std::string_view keyword, const Pointer& at, std::string_view why = "") {
  return invalid(std::format("'{}' at {}{}{}", keyword, where(at), kNotSupported, why));
}

bool isWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}
bool isIdentifier(std::string_view s) { return !s.empty() && std::ranges::all_of(s, isWordChar); }

bool hasConstraints(const Json& s, std::string_view except = "") {
  for (const auto& [key, v] : s.items())
    if (key != except && kHandled.contains(key)) return true;
  return false;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}
std::string seq(std::vector<std::string> parts) { return join(parts, " "); }
std::string alternatives(const std::vector<std::string>& alts) {
  return alts.size() == 1 ? alts[0] : "(" + join(alts, " | ") + ")";
}

// A GBNF literal matching `text` byte for byte (UTF-8 passes through; libllama decodes it).
std::string literal(std::string_view text) {
  std::string out = "\"";
  for (char c : text)
    out += c == '"' || c == '\\'                  ? std::string{'\\', c}
           : static_cast<unsigned char>(c) < 0x20 ? std::format("\\x{:02X}", static_cast<int>(c))
                                                  : std::string(1, c);
  return out + "\"";
}

// `x` repeated lo..hi times (hi < 0: unbounded); "" when it may not occur at all.
std::string repeat(const std::string& x, int64_t lo, int64_t hi) {
  if (hi == 0) return "";
  if (hi < 0) return lo == 0 ? x + "*" : lo == 1 ? x + "+" : std::format("{}{{{},}}", x, lo);
  if (lo == hi) return lo == 1 ? x : std::format("{}{{{}}}", x, lo);
  return lo == 0 && hi == 1 ? x + "?" : std::format("{}{{{},{}}}", x, lo, hi);
}

// The characters of a JSON string's text: an escape sequence or a UTF-8 sequence counts as one.
std::vector<std::string> units(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c == '\\' ? (s[i + 1] == 'u' ? 6 : 2) : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    out.emplace_back(s.substr(i, n));
    i += n;
  }
  return out;
}

// Whether `name` occurs in `text` as a whole rule name. A hit inside a literal only adds an unused rule.
bool mentions(std::string_view text, std::string_view name) {
  for (size_t i = text.find(name); i != std::string_view::npos; i = text.find(name, i + 1)) {
    size_t end = i + name.size();
    if ((i == 0 || !isWordChar(text[i - 1])) && (end == text.size() || !isWordChar(text[end]))) return true;
  }
  return false;
}

// Reads a pair of count keywords (minItems/maxItems, minLength/maxLength); the upper one is -1 when absent.
Result<std::pair<int64_t, int64_t>> range(const Json& s, const char* minKey, const char* maxKey, const Pointer& at) {
  int64_t bounds[2] = {0, -1};
  const char* keys[2] = {minKey, maxKey};
  for (int i = 0; i < 2; ++i) {
    if (!s.contains(keys[i])) continue;
    const Json& v = s[keys[i]];
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      return invalid(std::format("'{}' at {} must be a non-negative integer", keys[i], where(at)));
    if (v.get<int64_t>() > kMaxRepeat) return unsupported(keys[i], at, std::format(" above {}", kMaxRepeat));
    bounds[i] = v.get<int64_t>();
  }
  if (bounds[1] >= 0 && bounds[0] > bounds[1])
    return invalid(std::format("'{}' at {} is larger than '{}'", minKey, where(at), maxKey));
  return std::pair{bounds[0], bounds[1]};
}

// The types both allow (an integer is a number).
std::vector<std::string> intersectTypes(const Json& a, const Json& b) {
  auto list = [](const Json& t) {
    return t.is_array() ? t.get<std::vector<std::string>>() : std::vector{t.get<std::string>()};
  };
  std::vector<std::string> out;
  for (const auto& x : list(a))
    for (const auto& y : list(b))
      if (x == y || (x == "integer" && y == "number") || (x == "number" && y == "integer"))
        out.push_back(x == "number" ? y : x);
  return out;
}

// Adds `from`'s keywords to `into` (both must hold, as in allOf): properties merge, required lists join,
// types intersect; equal or unhandled keywords are kept once. Enough for "base object + extension" schemas.
Result<void> merge(Json& into, const Json& from, const Pointer& at) {
  for (const auto& [key, v] : from.items()) {
    if (!into.contains(key)) into[key] = v;
    if (into[key] == v || !kHandled.contains(key)) continue;  // an unhandled keyword keeps its first value
    Json& mine = into[key];
    if (key == "properties" && mine.is_object() && v.is_object()) {
      for (const auto& [name, schema] : v.items())
        mine[name] = mine.contains(name) ? Json{{"allOf", Json::array({mine[name], schema})}} : schema;
    } else if (key == "required") {
      for (const auto& r : v)
        if (std::find(mine.begin(), mine.end(), r) == mine.end()) mine.push_back(r);
    } else if (key == "type") {
      auto types = intersectTypes(mine, v);
      if (types.empty()) return invalid(std::format("'allOf' at {} combines types with nothing in common", where(at)));
      mine = types.size() == 1 ? Json(types[0]) : Json(types);
    } else {
      return unsupported("allOf", at, std::format(" when its parts set '{}' differently", key));
    }
  }
  return ok();
}

class Converter {
 public:
  explicit Converter(const Json& root) : root_(root) {
    for (const auto& [name, body] : kPrimitives) taken_.emplace(name);
    taken_.insert("root");
  }

  Result<std::string> grammar() {
    auto root = visit(root_, Pointer{}, "root", 0);
    if (!root) return root;
    std::string out = "root ::= " + *root + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    // Add the shared rules the grammar uses; each one added may use more (value -> object -> member).
    std::set<std::string_view> added;
    for (size_t before = SIZE_MAX; added.size() != before;) {
      before = added.size();
      for (const auto& [name, body] : kPrimitives)
        if (!added.contains(name) && mentions(out, name)) {
          added.insert(name);
          out += std::format("{} ::= {}\n", name, body);
        }
    }
    return out;
  }

 private:
  // What every schema must be, and the limits that keep a hostile schema from exhausting the server.
  Result<void> check(const Json& s, const Pointer& at, int depth) {
    if (depth > kMaxDepth)
      return invalid(
          std::format("schema at {} nests deeper than {} levels, which is not supported", where(at), kMaxDepth));
    if (++work_ > kMaxWork) return invalid("schema is too large to convert");
    if (s.is_boolean() && !s.get<bool>())
      return invalid(std::format("schema at {} is false and accepts nothing", where(at)));
    if (!s.is_boolean() && !s.is_object())
      return invalid(std::format("schema at {} must be an object or a boolean", where(at)));
    return ok();
  }

  Result<std::string> visit(const Json& s, const Pointer& at, const std::string& hint, int depth) {
    if (auto r = check(s, at, depth); !r) return fail(r.error());
    if (s.is_boolean()) return std::string("value");
    for (const auto& [key, v] : s.items())
      if (kUnsupported.contains(key) && !(key == "uniqueItems" && v == false)) return unsupported(key, at);

    if (s.contains("$ref") && !hasConstraints(s, "$ref")) return ref(s, at, depth);
    if (s.contains("$ref") || s.contains("allOf")) {
      auto flat = flatten(s, at, depth);
      if (!flat) return fail(flat.error());
      return visit(*flat, at, hint, depth + 1);
    }
    if (s.contains("anyOf") || s.contains("oneOf")) return anyOf(s, at, hint, depth);
    if (s.contains("const")) return constant(s["const"]);
    if (s.contains("enum")) {
      if (!s["enum"].is_array() || s["enum"].empty())
        return invalid(std::format("'enum' at {} must be a non-empty array", where(at)));
      std::vector<std::string> alts;
      for (const auto& v : s["enum"]) alts.push_back(constant(v));
      return alternatives(alts);
    }
    auto types = !s.contains("type")    ? std::vector{inferType(s)}
                 : s["type"].is_array() ? s["type"].get<std::vector<std::string>>()
                                        : std::vector{s["type"].get<std::string>()};
    if (types.empty()) return invalid(std::format("'type' at {} must name at least one type", where(at)));
    std::vector<std::string> alts;
    for (const auto& type : types) {
      auto e = typed(s, type, at, hint, depth);
      if (!e) return e;
      alts.push_back(*e);
    }
    return alternatives(alts);
  }

  // Without "type", the keywords present tell what the author meant; picking one type is a safe subset.
  static std::string inferType(const Json& s) {
    for (auto key : {"properties", "required", "additionalProperties"})
      if (s.contains(key)) return "object";
    for (auto key : {"items", "minItems", "maxItems"})
      if (s.contains(key)) return "array";
    for (auto key : {"minLength", "maxLength", "format"})
      if (s.contains(key)) return "string";
    return "any";
  }

  Result<std::string> typed(const Json& s, const std::string& type, const Pointer& at, const std::string& hint,
                            int depth) {
    if (type == "object") return object(s, at, hint, depth);
    if (type == "array") return array(s, at, hint, depth);
    if (type == "string") return str(s, at);
    if (type == "any") return std::string("value");
    if (type == "number" || type == "integer" || type == "boolean" || type == "null") return type;
    return invalid(std::format("'type' at {} names unknown type '{}'", where(at), type));
  }

  Result<std::string> object(const Json& s, const Pointer& at, const std::string& hint, int depth) {
    static const Json kNone = Json::object();
    const Json& props = s.contains("properties") ? s["properties"] : kNone;
    if (!props.is_object()) return invalid(std::format("'properties' at {} must be an object", where(at)));
    std::set<std::string> required;
    if (s.contains("required")) required = s["required"].get<std::set<std::string>>();
    // JSON Schema allows extra properties unless told otherwise; we keep that default only for objects that
    // declare none, since a model inventing keys beside declared ones is rarely what the author wants.
    const Json extraSchema = s.contains("additionalProperties") ? s["additionalProperties"] : Json(props.empty());
    if (props.empty() && required.empty() && extraSchema == true) return std::string("object");

    auto outer = std::exchange(bare_, {});              // "{" consumes input: a $ref below is no longer left-recursive
    std::vector<std::pair<std::string, bool>> members;  // "key": value, and whether it is required
    std::vector<std::vector<std::string>> keys;
    auto add = [&](const std::string& key, const Json& schema, const Pointer& p) -> Result<void> {
      auto value = visit(schema, p, hint + "-" + key, depth + 1);
      if (!value) return fail(value.error());
      std::string text = Json(key).dump();
      keys.push_back(units(std::string_view(text).substr(1, text.size() - 2)));
      members.push_back(
          {seq({literal(text), R"(ws ":" ws)", named(hint + "-" + key, *value)}), required.contains(key)});
      return ok();
    };
    for (const auto& [key, schema] : props.items())
      if (auto r = add(key, schema, at / "properties" / key); !r) return fail(r.error());
    for (const auto& key : required) {
      if (props.contains(key)) continue;
      if (extraSchema == false)
        return invalid(
            std::format("'required' at {} names '{}', which additionalProperties false forbids", where(at), key));
      if (auto r = add(key, extraSchema, at / "additionalProperties"); !r) return fail(r.error());
    }
    std::string extra;  // one additional property, when they are allowed
    if (extraSchema != false) {
      auto value = visit(extraSchema, at / "additionalProperties", hint + "-extra", depth + 1);
      if (!value) return value;
      std::string key =
          keys.empty() ? "string" : named(hint + "-extra-key", seq({std::string(kQuote), otherKey(keys, 0)}));
      extra = named(hint + "-extra", seq({key, R"(ws ":" ws)", *value}));
    }
    bare_ = std::move(outer);

    // Members come in declaration order and optional ones may be absent. Built from the end: `after` matches
    // the members from i on once one was written (each then starts with a comma), `first` when none was yet.
    std::string after = extra.empty() ? "" : std::format(R"(("," ws {} ws)*)", extra);
    std::string first = extra.empty() ? "" : std::format("({} ws {})?", extra, after);
    for (size_t i = members.size(); i-- > 0;) {
      const auto& [kv, isRequired] = members[i];
      if (!isRequired && !after.empty()) after = named(hint + "-rest", after);  // used by both branches below
      std::string head = seq({kv, "ws", after});
      first = isRequired ? head : first.empty() ? "(" + head + ")?" : "(" + head + " | " + first + ")";
      std::string comma = std::format(R"("," ws {} ws)", kv);
      after = seq({isRequired ? comma : "(" + comma + ")?", after});
    }
    return seq({R"("{" ws)", first, R"("}")"});
  }

  // The rest of a JSON string (after its opening quote) that spells none of `keys`, so an additional property
  // cannot repeat a declared one. At each position it may end where no key ends, follow some keys, or leave
  // them all with a character none has there. An escaped spelling of a key (\u0061 for a) is not caught.
  std::string otherKey(const std::vector<std::vector<std::string>>& keys, size_t pos) {
    std::map<std::string, std::vector<std::vector<std::string>>> next;
    bool keyEnds = false;
    for (const auto& k : keys)
      if (k.size() == pos)
        keyEnds = true;
      else
        next[k[pos]].push_back(k);
    std::vector<std::string> alts;
    if (!keyEnds) alts.emplace_back(kQuote);
    std::string others;  // libllama's class syntax has no \- or \^ escapes, so punctuation goes in hex
    for (const auto& [unit, rest] : next) {
      alts.push_back(seq({literal(unit), otherKey(rest, pos + 1)}));
      bool plain = isWordChar(unit[0]) && unit[0] != '-';
      if (unit[0] != '\\')
        others += plain || unit.size() > 1 ? unit : std::format("\\x{:02X}", static_cast<int>(unit[0]));
    }
    alts.push_back(std::format(R"([^"\\\x00-\x1F{}] char* "\"")", others));
    alts.emplace_back(R"("\\" escape char* "\"")");
    return alternatives(alts);
  }

  Result<std::string> array(const Json& s, const Pointer& at, const std::string& hint, int depth) {
    auto bounds = range(s, "minItems", "maxItems", at);
    if (!bounds) return fail(bounds.error());
    auto [lo, hi] = *bounds;
    const Json items = s.contains("items") ? s["items"] : Json(true);
    if (items.is_array()) return unsupported("items", at, " in its array (tuple) form");
    if (items == false || hi == 0) return std::string(R"("[" ws "]")");
    auto outer = std::exchange(bare_, {});  // "[" consumes input
    auto item = visit(items, at / "items", hint + "-item", depth + 1);
    bare_ = std::move(outer);
    if (!item) return item;
    std::string name = named(hint + "-item", *item);
    std::string more =
        repeat(std::format(R"(("," ws {} ws))", name), std::max<int64_t>(lo - 1, 0), hi < 0 ? -1 : hi - 1);
    std::string list = seq({name, "ws", more});
    return seq({R"("[" ws)", lo == 0 ? "(" + list + ")?" : list, R"("]")"});
  }

  Result<std::string> str(const Json& s, const Pointer& at) {
    if (s.contains("format")) {
      // Other formats (email, uri, ...) are annotations by default in JSON Schema; any string satisfies them.
      auto format = s["format"].get<std::string>();
      for (auto known : {"date", "time", "date-time", "uuid"})
        if (format == known) return seq({std::string(kQuote), format, std::string(kQuote)});
    }
    auto bounds = range(s, "minLength", "maxLength", at);
    if (!bounds) return fail(bounds.error());
    if (bounds->first == 0 && bounds->second < 0) return std::string("string");
    return seq({std::string(kQuote), repeat("char", bounds->first, bounds->second), std::string(kQuote)});
  }

  // Exactly the JSON value `v` (enum, const), with the same whitespace freedom as any other value.
  std::string constant(const Json& v) {
    if (!v.is_object() && !v.is_array()) return literal(v.dump());
    std::vector<std::string> parts;
    for (const auto& [key, x] : v.items())
      parts.push_back(v.is_object() ? seq({literal(Json(key).dump()), R"(ws ":" ws)", constant(x)}) : constant(x));
    for (auto& p : parts) p += " ws";
    return seq(
        {v.is_object() ? R"("{" ws)" : R"("[" ws)", join(parts, R"( "," ws )"), v.is_object() ? R"("}")" : R"("]")"});
  }

  Result<std::string> anyOf(const Json& s, const Pointer& at, const std::string& hint, int depth) {
    const char* key = s.contains("anyOf") ? "anyOf" : "oneOf";  // oneOf's "exactly one" is not enforced
    const Json& branches = s[key];
    if (!branches.is_array() || branches.empty())
      return invalid(std::format("'{}' at {} must be a non-empty array", key, where(at)));
    // Keywords beside anyOf hold for every branch: {"type": "object", "anyOf": [A, B]} is anyOf [type+A, type+B].
    Json rest = s;
    rest.erase(key);
    std::vector<std::string> alts;
    for (size_t i = 0; i < branches.size(); ++i) {
      Pointer p = at / key / i;
      Json branch = branches[i];
      if (hasConstraints(rest)) {
        auto merged = flatten(Json{{"allOf", Json::array({rest, branches[i]})}}, p, depth + 1);
        if (!merged) return fail(merged.error());
        branch = std::move(*merged);
      }
      auto e = visit(branch, p, std::format("{}-{}", hint, i), depth + 1);
      if (!e) return e;
      alts.push_back(named(std::format("{}-{}", hint, i), *e));
    }
    return alternatives(alts);
  }

  // Folds allOf (and a $ref with keywords beside it) into one schema, see merge().
  Result<Json> flatten(const Json& s, const Pointer& at, int depth) {
    if (auto r = check(s, at, depth); !r) return fail(r.error());
    if (s.is_boolean()) return Json::object();
    Json out = s;
    std::vector<std::pair<const Json*, Pointer>> parts;
    if (s.contains("$ref")) {
      auto target = resolve(s["$ref"], at);
      if (!target) return fail(target.error());
      parts.emplace_back(target->second, target->first);
      out.erase("$ref");
    }
    if (s.contains("allOf")) {
      if (!s["allOf"].is_array()) return invalid(std::format("'allOf' at {} must be an array", where(at)));
      for (size_t i = 0; i < s["allOf"].size(); ++i) parts.emplace_back(&s["allOf"][i], at / "allOf" / i);
      out.erase("allOf");
    }
    for (const auto& [part, p] : parts) {
      auto flat = flatten(*part, p, depth + 1);
      if (!flat) return flat;
      if (auto r = merge(out, *flat, at); !r) return fail(r.error());
    }
    return out;
  }

  Result<std::pair<Pointer, const Json*>> resolve(const Json& ref, const Pointer& at) {
    std::string text = ref.is_string() ? ref.get<std::string>() : ref.dump();
    if (!text.starts_with("#"))
      return invalid(
          std::format("'$ref' at {} to '{}' is not supported (only '#/...' into this schema)", where(at), text));
    try {
      Pointer target(text.substr(1));
      if (!root_.contains(target))
        return invalid(std::format("'$ref' at {} points to '{}', which does not exist", where(at), text));
      return std::pair{target, &root_.at(target)};
    } catch (const Json::exception&) {
      return invalid(std::format("'$ref' at {} is not a valid JSON pointer: '{}'", where(at), text));
    }
  }

  // Each $ref target becomes one named rule, which is what lets recursive schemas work.
  Result<std::string> ref(const Json& s, const Pointer& at, int depth) {
    auto target = resolve(s["$ref"], at);
    if (!target) return fail(target.error());
    const auto& [pointer, schema] = *target;
    std::string key = pointer.to_string();
    // A rule may refer to itself only after consuming input: libllama rejects left-recursive grammars.
    if (bare_.contains(key))
      return invalid(
          std::format("'$ref' at {} refers back to '#{}' without an object or array in between, which is not supported",
                      where(at), key));
    if (auto it = refs_.find(key); it != refs_.end()) return it->second;
    std::string name = uniqueName(pointer.empty() ? "ref" : "ref-" + pointer.back());
    refs_.emplace(key, name);
    bare_.insert(key);
    auto body = visit(*schema, pointer, name, depth + 1);
    bare_.erase(key);
    if (!body) return body;
    rules_.emplace_back(name, *body);
    return name;
  }

  std::string uniqueName(const std::string& hint) {
    std::string base;
    for (char c : hint) base += isWordChar(c) ? c : '-';  // GBNF names allow only [A-Za-z0-9-]
    std::string name = base;
    for (int i = 2; !taken_.insert(name).second; ++i) name = std::format("{}-{}", base, i);
    return name;
  }

  // Gives a compound expression its own rule: keeps the grammar readable and writes shared parts once.
  std::string named(const std::string& hint, std::string expr) {
    if (isIdentifier(expr)) return expr;
    std::string name = uniqueName(hint);
    rules_.emplace_back(name, std::move(expr));
    return name;
  }

  const Json& root_;
  std::vector<std::pair<std::string, std::string>> rules_;  // generated rules, in creation order
  std::set<std::string> taken_;                             // rule names in use
  std::map<std::string, std::string> refs_;                 // $ref target pointer -> its rule
  std::set<std::string> bare_;  // $refs entered since the last "{" or "[": meeting one again is left recursion
  int work_ = 0;
};

}  // namespace

Result<std::string> jsonSchemaToGbnf(const nlohmann::ordered_json& schema) {
  try {
    return Converter(schema).grammar();
  } catch (const nlohmann::json::exception& e) {
    // A keyword whose value has the wrong JSON type, e.g. "required": "name".
    return fail(Error::invalid(std::string("json_schema: malformed schema: ") + e.what()));
  }
}

Result<std::string> jsonSchemaToGbnf(const nlohmann::json& schema) {
  return jsonSchemaToGbnf(nlohmann::ordered_json(schema));
}

std::string anyJsonGbnf() { return *jsonSchemaToGbnf(nlohmann::ordered_json{{"type", "object"}}); }

bool isUnsupportedSchemaError(const Error& e) { return e.message.find(kNotSupported) != std::string::npos; }

}  // namespace statim::llama
