#include "backends/llama/json_grammar.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <format>
#include <iostream>
#include <vector>

#include <gtest/gtest.h>

#include "../test_util.h"
#include "backends/llama/llama_handles.h"
#include "backends/llama/sampling.h"
#include "backends/llama/tools.h"

namespace statim::llama {
namespace {

using nlohmann::ordered_json;

// Grammars are checked with libllama's own grammar sampler over the tiny fixture's vocabulary, which has a
// token for every single byte. A token the grammar rejects must never be accepted: in libllama 0.7.0
// llama_sampler_accept then throws std::runtime_error ("Unexpected empty grammar stack ...") and leaves the
// grammar with no parse stacks, so the next llama_sampler_apply aborts the process (GGML_ASSERT). So each
// byte is first offered alone to llama_sampler_apply, which sets the logit of a rejected token to -inf.
class JsonGrammarTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    initOnce();
    dir_ = new testing::TempDir();
    auto out = dir_->path() / "tiny.gguf";
    auto cmd = std::format("python3 {}/tests/fixtures/make_tiny_gguf.py {} > {}/gen.log 2>&1", STATIM_SOURCE_DIR,
                           out.string(), dir_->path().string());
    if (std::system(cmd.c_str()) != 0) return;
    tiny_ = out;
    auto params = llama_model_default_params();
    params.vocab_only = true;
    vocabModel_ = llama_model_load_from_file(out.c_str(), params);
    if (!vocabModel_) return;
    vocab_ = llama_model_get_vocab(vocabModel_);
    for (llama_token t = 0; t < llama_vocab_n_tokens(vocab_); ++t) {
      char piece[8];
      if (llama_token_to_piece(vocab_, t, piece, sizeof piece, 0, false) == 1)
        byteToken_[static_cast<unsigned char>(piece[0])] = t;
    }
  }
  // The fixture model with a 512-token context (either null when it does not load).
  std::pair<ModelPtr, ContextPtr> loadTiny() {
    ModelPtr model(llama_model_load_from_file(tiny_.c_str(), llama_model_default_params()));
    if (!model) return {};
    auto cparams = llama_context_default_params();
    cparams.n_ctx = 512;
    cparams.n_batch = 512;
    cparams.n_threads = cparams.n_threads_batch = 2;
    ContextPtr ctx(llama_init_from_model(model.get(), cparams));
    return {std::move(model), std::move(ctx)};
  }

  static void TearDownTestSuite() {
    if (vocabModel_) llama_model_free(vocabModel_);
    delete dir_;
  }
  void SetUp() override { ASSERT_TRUE(vocab_) << "fixture generation failed; see " << dir_->path() / "gen.log"; }

  static bool allows(llama_sampler* grammar, llama_token token) {
    llama_token_data data{token, 0.0f, 0.0f};
    llama_token_data_array one{&data, 1, -1, false};
    llama_sampler_apply(grammar, &one);
    return !std::isinf(data.logit);
  }

  // "complete", "incomplete" (a valid prefix) or "rejected at N" (byte offset).
  static std::string match(const std::string& gbnf, std::string_view text) {
    SamplerPtr grammar(llama_sampler_init_grammar(vocab_, gbnf.c_str(), "root"));
    if (!grammar) return "grammar does not parse";
    for (size_t i = 0; i < text.size(); ++i) {
      llama_token token = byteToken_[static_cast<unsigned char>(text[i])];
      if (!allows(grammar.get(), token)) return std::format("rejected at {}", i);
      llama_sampler_accept(grammar.get(), token);
    }
    // Once the grammar is complete it allows end-of-generation tokens (and only then).
    return allows(grammar.get(), llama_vocab_eos(vocab_)) ? "complete" : "incomplete";
  }

  static std::string gbnf(std::string_view schema) {
    auto g = jsonSchemaToGbnf(ordered_json::parse(schema));
    EXPECT_TRUE(g) << schema << ": " << g.error().message;
    return g ? *g : "";
  }

  static std::string error(std::string_view schema) {
    auto g = jsonSchemaToGbnf(ordered_json::parse(schema));
    if (g) return "no error; grammar:\n" + *g;
    EXPECT_EQ(g.error().code, ErrorCode::kInvalidArgument);
    return g.error().message;
  }

  void expectAccepts(std::string_view schema, std::initializer_list<std::string_view> docs) {
    std::string g = gbnf(schema);
    for (auto doc : docs) EXPECT_EQ(match(g, doc), "complete") << "schema " << schema << "\ndoc " << doc << "\n" << g;
  }
  void expectRejects(std::string_view schema, std::initializer_list<std::string_view> docs) {
    std::string g = gbnf(schema);
    for (auto doc : docs) EXPECT_NE(match(g, doc), "complete") << "schema " << schema << "\ndoc " << doc << "\n" << g;
  }

  static inline testing::TempDir* dir_ = nullptr;
  static inline std::filesystem::path tiny_;
  static inline llama_model* vocabModel_ = nullptr;
  static inline const llama_vocab* vocab_ = nullptr;
  static inline llama_token byteToken_[256] = {};
};

constexpr std::string_view kPerson =
    R"({"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer"}},)"
    R"("required":["name","age"]})";
constexpr std::string_view kOptional =
    R"({"type":"object","properties":{"a":{"type":"string"},"b":{"type":"boolean"}},"additionalProperties":false})";
constexpr std::string_view kOpen =
    R"({"properties":{"id":{"type":"integer"}},"required":["id"],"additionalProperties":true})";
constexpr std::string_view kMap = R"({"type":"object","additionalProperties":{"type":"number"}})";
constexpr std::string_view kArray = R"({"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3})";
constexpr std::string_view kEnum = R"({"enum":["red",42,null,{"a":[true]}]})";
constexpr std::string_view kConst = R"({"const":"fixed"})";
constexpr std::string_view kNullable = R"({"type":["string","null"]})";
constexpr std::string_view kAnyOf =
    R"({"anyOf":[{"type":"integer"},{"type":"object","properties":{"k":{"type":"string"}},"required":["k"]}]})";
constexpr std::string_view kAllOf =
    R"({"allOf":[{"$ref":"#/$defs/base"},{"properties":{"extra":{"type":"boolean"}},"required":["extra"]}],)"
    R"("$defs":{"base":{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}}})";
constexpr std::string_view kTree =
    R"({"definitions":{"node":{"type":"object","properties":{"value":{"type":"integer"},)"
    R"("children":{"type":"array","items":{"$ref":"#/definitions/node"}}},"required":["value"],)"
    R"("additionalProperties":false}},"$ref":"#/definitions/node"})";
constexpr std::string_view kFormats =
    R"({"type":"object","properties":{"d":{"type":"string","format":"date"},"t":{"type":"string","format":"time"},)"
    R"("dt":{"type":"string","format":"date-time"},"u":{"type":"string","format":"uuid"},)"
    R"("e":{"type":"string","format":"email"}},"required":["d","t","dt","u"]})";
constexpr std::string_view kLength = R"({"type":"string","minLength":2,"maxLength":4})";
constexpr std::string_view kNumbers = R"({"type":"object","properties":{"n":{"type":"number","minimum":0,"maximum":1},)"
                                      R"("i":{"type":"integer","exclusiveMinimum":0}},"required":["n","i"]})";
constexpr std::string_view kOddKeys =
    R"({"type":"object","properties":{"naïve key":{"type":"boolean"},"a\"b":{"type":"null"},"x-y_z":{}},)"
    R"("required":["naïve key","a\"b"]})";
constexpr std::string_view kTrickyKeys =  // keys that need escaping inside a GBNF character class
    R"({"properties":{"-":{},"]":{"type":"null"},"^":{},"é":{},"ab":{}},"required":["]"],)"
    R"("additionalProperties":{"type":"integer"}})";
constexpr std::string_view kOneOfWithSiblings = R"({"type":"object","properties":{"kind":{"type":"string"}},"oneOf":[)"
                                                R"({"properties":{"a":{"type":"integer"}},"required":["a"]},)"
                                                R"({"properties":{"b":{"type":"integer"}},"required":["b"]}]})";

TEST_F(JsonGrammarTest, EveryGeneratedGrammarParsesInLibllama) {
  for (auto schema : {kPerson,
                      kOptional,
                      kOpen,
                      kMap,
                      kArray,
                      kEnum,
                      kConst,
                      kNullable,
                      kAnyOf,
                      kAllOf,
                      kTree,
                      kFormats,
                      kLength,
                      kNumbers,
                      kOddKeys,
                      kTrickyKeys,
                      kOneOfWithSiblings,
                      std::string_view("{}"),
                      std::string_view("true"),
                      std::string_view(R"({"type":"array","maxItems":0})")}) {
    std::string g = gbnf(schema);
    SamplerPtr sampler(llama_sampler_init_grammar(vocab_, g.c_str(), "root"));
    EXPECT_NE(sampler, nullptr) << schema << "\n" << g;
  }
  SamplerPtr any(llama_sampler_init_grammar(vocab_, anyJsonGbnf().c_str(), "root"));
  EXPECT_NE(any, nullptr) << anyJsonGbnf();
}

TEST_F(JsonGrammarTest, RequiredPropertiesInOrderWithTypedValues) {
  expectAccepts(kPerson, {R"({"name":"Ann","age":30})", "{ \"name\" : \"A\\\"n\\\\n\\u00e9\" ,\n  \"age\": -5 }",
                          R"({"name":"","age":0})", R"({"name":"abcdefghijkl","age":1})"});
  EXPECT_EQ(match(gbnf(kPerson), R"({"name":"Ann")"), "incomplete");
  expectRejects(kPerson, {
                             R"({"name":"Ann"})",                    // missing required key
                             R"({"name":"Ann","age":"30"})",         // wrong type
                             R"({"name":"Ann","age":3.5})",          // not an integer
                             R"({"name":"Ann","age":01})",           // leading zero
                             R"({"name":"Ann","age":30,"x":1})",     // undeclared property
                             R"({"name":"abcdefghijklm","age":1})",  // maxLength 12
                             "{\"name\":\"a\x01\",\"age\":1}",       // raw control character
                             R"({"name":"\x","age":1})",             // bad escape
                             R"({"name":"Ann","age":30} )",          // nothing after the root
                         });
}

TEST_F(JsonGrammarTest, WhitespaceIsAllowedButBounded) {
  std::string g = gbnf(kPerson);
  EXPECT_EQ(match(g, "{\"name\":\"A\"," + std::string(20, ' ') + "\"age\":1}"), "complete");
  EXPECT_EQ(match(g, "{\"name\":\"A\"," + std::string(21, ' ') + "\"age\":1}"), "rejected at 32");
}

TEST_F(JsonGrammarTest, OptionalPropertiesMayBeAbsentAndExtraOnesAreRefused) {
  expectAccepts(kOptional, {"{}", R"({"a":"x"})", R"({"b":true})", R"({ "a" : "x" , "b" : false })"});
  expectRejects(kOptional, {R"({"c":1})", R"({"a":"x","c":1})", R"({,"b":true})", R"({"a":"x",})", R"({"b":1})"});
}

TEST_F(JsonGrammarTest, AdditionalPropertiesTrueAllowsNewKeysButNotDeclaredOnesAgain) {
  expectAccepts(kOpen, {R"({"id":1})", R"({"id":1,"extra":[1,{"x":null}],"i":true,"idx":"s","":0})"});
  expectRejects(kOpen, {R"({"id":1,"id":2})", R"({"id":"1"})", R"({"x":1})"});
  expectAccepts(kTrickyKeys, {R"({"]":null})", R"({"-":1,"]":null,"x":2,"a":3,"abc":4,"éé":5,"":6})"});
  // Extra properties come after the declared ones and may not reuse a declared name.
  expectRejects(kTrickyKeys, {R"({"]":null,"x":1,"-":1})", R"({"]":null,"x":1,"]":1})", R"({"]":null,"x":1,"^":1})",
                              R"({"]":null,"x":1,"é":1})", R"({"]":null,"x":1,"ab":1})", R"({"]":null,"x":"s"})"});
  expectAccepts(kMap, {"{}", R"({"x":1.5e3,"y":-0.25})"});
  expectRejects(kMap, {R"({"x":"1"})"});
}

TEST_F(JsonGrammarTest, ArraysHonourItemsAndCounts) {
  expectAccepts(kArray, {"[1,2]", "[ 1 , 2 , 3 ]"});
  expectRejects(kArray, {"[]", "[1]", "[1,2,3,4]", R"([1,"2"])", "[1,2,]"});
  expectAccepts(R"({"type":"array","maxItems":0})", {"[]", "[ ]"});
  expectRejects(R"({"type":"array","maxItems":0})", {"[1]"});
}

TEST_F(JsonGrammarTest, EnumConstAndTypeLists) {
  expectAccepts(kEnum, {R"("red")", "42", "null", R"({ "a" : [ true ] })"});
  expectRejects(kEnum, {R"("blue")", "43", R"({"a":[false]})", R"("re")"});
  expectAccepts(kConst, {R"("fixed")"});
  expectRejects(kConst, {R"("fixe")", R"("fixed2")"});
  expectAccepts(kNullable, {R"("x")", "null"});
  expectRejects(kNullable, {"1", "true"});
}

TEST_F(JsonGrammarTest, AnyOfAllOfAndRefs) {
  expectAccepts(kAnyOf, {"7", R"({"k":"v"})"});
  expectRejects(kAnyOf, {R"("7")", "{}"});
  expectAccepts(kAllOf, {R"({"id":1,"extra":true})"});
  expectRejects(kAllOf, {R"({"id":1})", R"({"extra":true})"});
  expectAccepts(kTree, {R"({"value":1,"children":[{"value":2},{"value":3,"children":[]}]})"});
  expectRejects(kTree, {R"({"value":1,"children":[{"children":[]}]})", R"({"value":1,"other":2})"});
  expectAccepts(kOneOfWithSiblings, {R"({"kind":"x","a":1})", R"({"b":2})"});
  expectRejects(kOneOfWithSiblings, {R"({"a":1,"b":2})", R"({"kind":"x"})"});
}

TEST_F(JsonGrammarTest, StringFormatsAndLengths) {
  expectAccepts(kFormats, {R"({"d":"2024-02-29","t":"23:59:07.25Z","dt":"2024-02-29T08:00:00+01:00",)"
                           R"("u":"123e4567-e89b-12d3-a456-426614174000","e":"not checked"})"});
  const char* uuid = R"("u":"123e4567-e89b-12d3-a456-426614174000")";
  std::string a = std::format(R"({{"d":"2024-13-01","t":"00:00:00Z","dt":"2024-01-01T00:00:00Z",{}}})", uuid);
  std::string b = std::format(R"({{"d":"2024-01-01","t":"24:00:00Z","dt":"2024-01-01T00:00:00Z",{}}})", uuid);
  std::string c = std::format(R"({{"d":"2024-01-01","t":"00:00:00","dt":"2024-01-01T00:00:00Z",{}}})", uuid);
  std::string d = R"({"d":"2024-01-01","t":"00:00:00Z","dt":"2024-01-01T00:00:00Z","u":"123e4567"})";
  expectRejects(kFormats, {a, b, c, d});
  expectAccepts(kLength, {R"("ab")", R"("a\"cd")", "\"\xC3\xA9\xC3\xA9\""});  // an escape or UTF-8 char is one
  expectRejects(kLength, {R"("a")", R"("abcde")"});
}

TEST_F(JsonGrammarTest, NumericBoundsAreIgnoredButNumbersStayNumbers) {
  expectAccepts(kNumbers, {R"({"n":0.5,"i":3})", R"({"n":-1E-5,"i":-2})"});
  expectRejects(kNumbers, {R"({"n":.5,"i":1})", R"({"n":1,"i":1.0})", R"({"n":1.,"i":1})"});
}

TEST_F(JsonGrammarTest, OddPropertyNamesAreEscapedAndRuleNamesSanitized) {
  expectAccepts(kOddKeys, {R"({"naïve key":true,"a\"b":null,"x-y_z":[1]})", R"({"naïve key":false,"a\"b":null})"});
  expectRejects(kOddKeys, {R"({"naive key":true,"a\"b":null})"});
}

TEST_F(JsonGrammarTest, AnyValueAndAnyObject) {
  for (auto schema : {"{}", "true"}) expectAccepts(schema, {R"([1,"a",{"b":null}])", R"("x")", "3", "false"});
  std::string object = anyJsonGbnf();
  for (auto doc : {"{}", R"({"a":[1,2,{"b":"c"}],"a":0})"}) EXPECT_EQ(match(object, doc), "complete") << doc;
  for (auto doc : {"[1]", R"("x")", R"({"a":1,})"}) EXPECT_NE(match(object, doc), "complete") << doc;
}

TEST_F(JsonGrammarTest, PropertyOrderFollowsTheJsonObjectsIterationOrder) {
  auto schema = R"({"properties":{"b":{"type":"integer"},"a":{"type":"integer"}},"required":["b","a"]})";
  auto declared = jsonSchemaToGbnf(ordered_json::parse(schema));
  auto sorted = jsonSchemaToGbnf(nlohmann::json::parse(schema));
  ASSERT_TRUE(declared && sorted);
  EXPECT_EQ(match(*declared, R"({"b":1,"a":2})"), "complete");
  EXPECT_EQ(match(*sorted, R"({"a":2,"b":1})"), "complete");
}

TEST_F(JsonGrammarTest, UnsupportedKeywordsAreErrorsNamingKeywordAndPath) {
  EXPECT_EQ(error(R"({"type":"object","properties":{"zip":{"type":"string","pattern":"^[0-9]{5}$"}}})"),
            "json_schema: 'pattern' at /properties/zip is not supported");
  EXPECT_EQ(error(R"({"type":"array","uniqueItems":true})"), "json_schema: 'uniqueItems' at the root is not supported");
  EXPECT_EQ(error(R"({"properties":{"a/b":{"items":{"not":{}}}}})"),
            "json_schema: 'not' at /properties/a~1b/items is not supported");
  EXPECT_EQ(error(R"({"$defs":{"a":{"multipleOf":2}},"properties":{"x":{"$ref":"#/$defs/a"}}})"),
            "json_schema: 'multipleOf' at /$defs/a is not supported");
  EXPECT_EQ(error(R"({"type":"array","items":[{"type":"string"}]})"),
            "json_schema: 'items' at the root is not supported in its array (tuple) form");
  EXPECT_EQ(error(R"({"type":"string","maxLength":5000})"),
            "json_schema: 'maxLength' at the root is not supported above 1000");
  EXPECT_EQ(error(R"({"allOf":[{"type":"string","maxLength":3},{"maxLength":4}]})"),
            "json_schema: 'allOf' at the root is not supported when its parts set 'maxLength' differently");
  EXPECT_EQ(error(R"({"$ref":"https://example.com/s.json"})"),
            "json_schema: '$ref' at the root to 'https://example.com/s.json' is not supported (only '#/...' into this "
            "schema)");
  EXPECT_EQ(error(R"({"properties":{"a":{"$ref":"#/$defs/missing"}}})"),
            "json_schema: '$ref' at /properties/a points to '#/$defs/missing', which does not exist");
  EXPECT_EQ(error(R"({"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}]}},"$ref":"#/$defs/a"})"),
            "json_schema: '$ref' at /$defs/a/anyOf/0 refers back to '#/$defs/a' without an object or array in "
            "between, which is not supported");
}

TEST_F(JsonGrammarTest, MalformedSchemasAreErrors) {
  EXPECT_EQ(error(R"({"type":"strin"})"), "json_schema: 'type' at the root names unknown type 'strin'");
  EXPECT_EQ(error(R"({"type":"array","minItems":3,"maxItems":2})"),
            "json_schema: 'minItems' at the root is larger than 'maxItems'");
  EXPECT_EQ(error(R"({"type":"string","minLength":-1})"),
            "json_schema: 'minLength' at the root must be a non-negative integer");
  EXPECT_EQ(error(R"({"properties":{"x":false}})"),
            "json_schema: schema at /properties/x is false and accepts nothing");
  EXPECT_EQ(error(R"({"allOf":[{"type":"string"},{"type":"integer"}]})"),
            "json_schema: 'allOf' at the root combines types with nothing in common");
  EXPECT_EQ(error(R"({"properties":{"a":{}},"required":["b"],"additionalProperties":false})"),
            "json_schema: 'required' at the root names 'b', which additionalProperties false forbids");
  EXPECT_TRUE(error(R"({"required":"name"})").starts_with("json_schema: malformed schema: "))
      << error(R"({"required":"name"})");
  ordered_json doubling = {{"$ref", "#/$defs/a0"}};  // each level refers to the next twice: 2^20 visits
  for (int i = 0; i < 20; ++i) {
    auto next = ordered_json{{"$ref", std::format("#/$defs/a{}", i + 1)}};
    doubling["$defs"][std::format("a{}", i)] = {{"allOf", ordered_json::array({next, next})}};
  }
  doubling["$defs"]["a20"] = {{"type", "integer"}};
  auto r = jsonSchemaToGbnf(doubling);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "json_schema: schema is too large to convert");
  std::string deep = R"({"type":"string"})";
  for (int i = 0; i < 70; ++i) deep = R"({"type":"array","items":)" + deep + "}";
  EXPECT_TRUE(error(deep).ends_with("nests deeper than 64 levels, which is not supported")) << error(deep);
}

// The random fixture model is steered by the grammar alone; once the document is complete only end-of-generation
// tokens are allowed, so greedy decoding stops there (the fixture zeroes their output rows, but everything else
// is -inf by then).
TEST_F(JsonGrammarTest, GreedyGenerationWithTheGrammarYieldsAValidDocument) {
  auto g = jsonSchemaToGbnf(ordered_json::parse(kPerson));
  ASSERT_TRUE(g);
  auto [model, ctx] = loadTiny();
  ASSERT_TRUE(model && ctx);
  const llama_vocab* vocab = llama_model_get_vocab(model.get());

  std::string prompt = "Reply with a person as JSON:";
  std::vector<llama_token> tokens(64);
  int n = llama_tokenize(vocab, prompt.data(), static_cast<int>(prompt.size()), tokens.data(), 64, true, false);
  ASSERT_GT(n, 0);
  ASSERT_EQ(llama_decode(ctx.get(), llama_batch_get_one(tokens.data(), n)), 0);

  SamplerPtr chain(llama_sampler_chain_init(llama_sampler_chain_default_params()));
  llama_sampler_chain_add(chain.get(), llama_sampler_init_grammar(vocab, g->c_str(), "root"));
  llama_sampler_chain_add(chain.get(), llama_sampler_init_greedy());
  std::string text;
  bool ended = false;
  int generated = 0;
  for (; generated < 200 && !ended; ++generated) {
    llama_token t = llama_sampler_sample(chain.get(), ctx.get(), -1);
    if (llama_vocab_is_eog(vocab, t)) {
      ended = true;
      break;
    }
    char piece[64];
    int len = llama_token_to_piece(vocab, t, piece, sizeof piece, 0, false);
    ASSERT_GE(len, 0);
    text.append(piece, len);
    ASSERT_EQ(llama_decode(ctx.get(), llama_batch_get_one(&t, 1)), 0);
  }
  ASSERT_TRUE(ended) << "no end of generation after " << generated << " tokens: " << text;
  auto doc = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << text;
  ASSERT_TRUE(doc.contains("name") && doc["name"].is_string()) << text;
  ASSERT_TRUE(doc.contains("age") && doc["age"].is_number_integer()) << text;
  auto name = doc["name"].get<std::string>();
  EXPECT_LE(std::ranges::count_if(name, [](char c) { return (c & 0xC0) != 0x80; }), 12) << text;
  std::cout << "[ generated ] " << generated << " tokens: " << text << "\n";
}

// tool_choice auto: generation is free until the output holds the format's call opening
// ("<tool_call>", {"name", [{"name"); from there the calls' grammar takes over, fed the output from
// the token in which the trigger starts, and steers the random model to a complete, valid call.
TEST_F(JsonGrammarTest, AToolCallGrammarTakesOverFromItsTrigger) {
  auto [model, ctx] = loadTiny();
  ASSERT_TRUE(model && ctx);
  const llama_vocab* vocab = llama_model_get_vocab(model.get());
  auto params = nlohmann::json::parse(R"({"temperature": 0, "parallel_tool_calls": false, "tools": [{"type": "function",
      "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}},
      "required": ["city"], "additionalProperties": false}}}]})");
  auto tokensOf = [&](const std::string& text) {
    std::vector<llama_token> t(512);
    int n = llama_tokenize(vocab, text.data(), static_cast<int>(text.size()), t.data(), 512, false, false);
    t.resize(static_cast<size_t>(std::max(n, 0)));
    std::vector<std::pair<llama_token, size_t>> out;
    size_t at = 0;
    for (llama_token tok : t) {
      out.emplace_back(tok, at);
      char piece[64];
      at += static_cast<size_t>(std::max(0, llama_token_to_piece(vocab, tok, piece, sizeof piece, 0, false)));
    }
    return out;
  };
  struct Case {
    ToolFormat format;
    std::string trigger, wrong, so_far;
  };
  const Case cases[] = {
      {ToolFormat::kHermes, "<tool_call>", "Hm. <tool_call>\n{\"nom",
       "Let me see. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {"},
      {ToolFormat::kLlama3, "{\"name\"", "Hm. {\"name\": \"get_time\"",
       "Let me see. {\"name\": \"get_weather\", \"parameters\": {"},
      {ToolFormat::kMistral, "[{\"name\"", "Hm. [{\"name\": 7",
       "Let me see. [{\"name\": \"get_weather\", \"arguments\": {"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(toString(c.format)));
    auto sampling = readSampling(params, c.format);
    ASSERT_TRUE(sampling) << sampling.error().message;
    EXPECT_EQ(sampling->grammar_trigger, c.trigger);
    EXPECT_EQ(sampling->call_opener, c.trigger);
    // A call that has started wrong is refused (the job then goes on unconstrained).
    EXPECT_FALSE(samplerFromTrigger(model.get(), *sampling, tokensOf(c.wrong), c.wrong.find(c.trigger)));

    auto tokens = tokensOf(c.so_far);
    auto sampler = samplerFromTrigger(model.get(), *sampling, tokens, c.so_far.find(c.trigger));
    ASSERT_TRUE(sampler) << sampler.error().message;
    llama_memory_clear(llama_get_memory(ctx.get()), true);
    std::vector<llama_token> feed;
    for (auto& [tok, _] : tokens) feed.push_back(tok);
    ASSERT_EQ(llama_decode(ctx.get(), llama_batch_get_one(feed.data(), static_cast<int>(feed.size()))), 0);
    std::string text = c.so_far;
    bool ended = false;
    for (int generated = 0; generated < 100 && !ended; ++generated) {
      llama_token t = llama_sampler_sample(sampler->get(), ctx.get(), -1);
      if (llama_vocab_is_eog(vocab, t)) {
        ended = true;
        break;
      }
      char piece[64];
      int len = llama_token_to_piece(vocab, t, piece, sizeof piece, 0, false);
      ASSERT_GE(len, 0);
      text.append(piece, static_cast<size_t>(len));
      ASSERT_EQ(llama_decode(ctx.get(), llama_batch_get_one(&t, 1)), 0);
    }
    ASSERT_TRUE(ended) << text;
    auto parsed = parseToolCalls(text, "call_1", c.format);
    ASSERT_EQ(parsed.tool_calls.size(), 1u) << text;
    EXPECT_EQ(parsed.text, "Let me see.");
    auto args = nlohmann::json::parse(parsed.tool_calls[0]["function"]["arguments"].get<std::string>());
    EXPECT_TRUE(args["city"] == "Paris" || args["city"] == "Oslo") << text;
  }
}

}  // namespace
}  // namespace statim::llama
