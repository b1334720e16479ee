#!/usr/bin/env python3
"""Writes schemas.json: the schemas of OpenAI's published API specification (the openai-openapi
repository's openapi.json, MIT licensed: LICENSE here) that statim's OpenAI-compatible answers
must validate against, with every schema they refer to. test_openai_schemas.py validates real
answers against them.

    tests/e2e/openai_spec/extract.py path/to/openai-openapi/openapi.json <commit>
"""
import json
import sys
from pathlib import Path

ROOTS = ["CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "CreateCompletionResponse",
         "CreateEmbeddingResponse", "ListModelsResponse", "Model", "Response", "ResponseItemList",
         "ResponseStreamEvent", "ErrorResponse"]


def main(spec_path: str, commit: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    schemas = spec["components"]["schemas"]
    keep: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str) and v.startswith("#/components/schemas/"):
                    name = v.rsplit("/", 1)[1]
                    if name not in keep:
                        keep.add(name)
                        walk(schemas[name])
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for root in ROOTS:
        keep.add(root)
        walk(schemas[root])
    out = {"source": {"repository": "https://github.com/openai/openai-openapi", "commit": commit,
                      "file": "openapi.json", "license": "MIT (LICENSE beside this file)",
                      "openapi": spec["openapi"], "version": spec["info"]["version"]},
           "components": {"schemas": {k: schemas[k] for k in sorted(keep)}}}
    (Path(__file__).parent / "schemas.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(keep)} schemas")


if __name__ == "__main__":
    main(*sys.argv[1:])
