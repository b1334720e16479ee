// JSON Schema -> GBNF, the grammar format of libllama's grammar sampler (llama_sampler_init_grammar),
// so that a model can only produce documents a response schema accepts (structured output).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "statim/error.h"

namespace statim::llama {

// Converts a JSON Schema (a practical subset of draft 2020-12 / draft-07) to a GBNF grammar whose start
// rule is "root". Every document the grammar accepts is valid against the schema, except for what the
// list of ignored keywords below lets through. Pure function; safe to call from any thread.
//
// Supported: type (string or array of types) object / array / string / number / integer / boolean / null;
// properties, required, additionalProperties (false, true or a schema; when absent, extra properties are
// allowed only if the object declares no properties); items, minItems, maxItems; minLength, maxLength,
// format date / time / date-time / uuid; enum and const of any JSON values; anyOf, oneOf (as anyOf);
// allOf (merged into one schema; conflicting keywords are an error); $ref to any "#/..." pointer in the
// same document (e.g. #/$defs/X, #/definitions/X), recursion included; {} and true (any JSON value).
// Ignored: minimum, maximum, exclusiveMinimum, exclusiveMaximum, other formats, annotations (title,
// description, default, examples, ...) and unknown keywords. oneOf's "exactly one" is not enforced.
// Bounded for generation: whitespace runs are at most 20 characters, integers at most 16 digits,
// fractions 16 digits and exponents 3 digits. Length and item bounds above 1000 are an error.
//
// Properties are generated in the object's iteration order: declaration order for ordered_json, but
// alphabetical for nlohmann::json (std::map) - parse the request with ordered_json to keep the caller's
// order. Optional properties may each be absent.
//
// Errors (code kInvalidArgument) name the keyword and its JSON pointer, e.g.
//   "json_schema: 'pattern' at /properties/zip is not supported".
Result<std::string> jsonSchemaToGbnf(const nlohmann::ordered_json& schema);
// Whether a jsonSchemaToGbnf error is about a keyword the converter cannot hold the output to
// (pattern, uniqueItems, ...), as opposed to a malformed schema.
bool isUnsupportedSchemaError(const Error& e);
Result<std::string> jsonSchemaToGbnf(const nlohmann::json& schema);

// A grammar for any JSON object (response_format {"type": "json_object"}): the root must be an object.
std::string anyJsonGbnf();

}  // namespace statim::llama
