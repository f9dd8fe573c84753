#!/usr/bin/env python3
"""test_docs.py - docs/API.md, api/openapi.yaml and api/routes.c name the same API.

- every route of api/routes.c's table (parsed with a regex) is a path and method of
  api/openapi.yaml;
- every path and method of api/openapi.yaml (OPTIONS aside: docs/API.md documents it once for
  every path) appears in docs/API.md as "`METHOD /path`";
- every error `code` of openapi.yaml's ErrorCode enum appears in docs/API.md as "`code`";
- every row of api/errors.def (the codes normd answers) is a code of openapi.yaml's ErrorCode
  and a row of its table and of docs/API.md section 4's, with the row's status in each, and
  every ErrorCode is a row of errors.def;
- neither document keeps a "<!-- ... pending ... -->" marker;
- every example in openapi.yaml matches its schema (the validator of test_schema.py, which
  reads OpenAPI 3.0's own keywords where the linters' validators do not);
- every layer option normd parses (the rows of core/spec_fields.def and of api/json_layer.c's
  `options[]` table, with their aliases, parsed with regexes) is a property of openapi.yaml's
  LayerOptions or one of its `x-aliases`, and appears in docs/API.md as "`name`".

  python3 tests/server/test_docs.py

Standard library and python3-yaml; needs no server. Prints "docs: N passed, M failed".
"""
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
from test_schema import Validator  # noqa: E402

from harness import check, summary  # noqa: E402 (tests/server/harness.py)

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def route_table(c_source):
    """(METHOD, pattern) of each entry of routes.c's `routes[]` table."""
    body = re.search(r"static const struct route routes\[\]\s*=\s*\{(.*?)\n\};", c_source, re.S)
    if not body:
        return []
    return re.findall(r'\{\s*"([A-Z]+)"\s*,\s*"(/[^"]*)"', body.group(1))


def layer_options(spec_fields_def, json_layer_c):
    """{name: [aliases]} of every option: the table's rows and options[]'s own rows."""
    opts = {}
    for name, alias in re.findall(r'^ND_SPEC_FIELD\("([^"]+)",\s*(?:NULL|"([^"]*)")',
                                  spec_fields_def, re.M):
        opts[name] = [alias] if alias else []
    body = re.search(r"static const struct option options\[\]\s*=\s*\{(.*?)\n\};",
                     json_layer_c, re.S)
    for name, aliases in re.findall(r'\{"([a-z_]+)",\s*\{([^}]*)\}', body.group(1) if body else ""):
        opts[name] = re.findall(r'"([^"]+)"', aliases)
    return opts


def error_rows(errors_def):
    """[(word, status)] of api/errors.def's API_CODE(NAME, status, "word", "message") rows."""
    return [(word, int(status)) for status, word in
            re.findall(r'^API_CODE\(\s*\w+,\s*(\d{3}),\s*"([a-z_]+)"', errors_def, re.M)]


def table_status(text, word):
    """The status of the table row "| `word` | 4xx ..." in text, or None."""
    m = re.search(r"^\s*\| `%s` \| (\d{3})\b" % re.escape(word), text, re.M)
    return int(m.group(1)) if m else None


def check_error_codes(doc, api_md):
    rows = error_rows(read("api", "errors.def"))
    check(len(rows) >= 18, "api/errors.def: its rows parsed (%d)" % len(rows))
    schema = doc["components"]["schemas"]["ErrorCode"]
    section = api_md.split("## 4. Errors", 1)[-1].split("\n## 5.", 1)[0]
    statuses = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"][
        "status"]["enum"]
    for word, status in rows:
        check(word in schema["enum"], "api/openapi.yaml's ErrorCode lacks %s" % word)
        check(table_status(schema["description"], word) == status,
              "api/openapi.yaml's ErrorCode table does not give %s status %d" % (word, status))
        check(table_status(section, word) == status,
              "docs/API.md section 4 does not give `%s` status %d" % (word, status))
        check(status in statuses, "api/openapi.yaml's Error status enum lacks %d" % status)
    words = {word for word, _ in rows}
    for code in schema["enum"]:
        check(code in words, "ErrorCode %s is no row of api/errors.def" % code)


def check_options(doc, api_md):
    opts = layer_options(read("core", "spec_fields.def"), read("api", "json_layer.c"))
    check(len(opts) >= 35 and "description" in opts and "epsilon" in opts,
          "the options parsed from spec_fields.def and json_layer.c (%d)" % len(opts))
    props = doc["components"]["schemas"]["LayerOptions"]["properties"]
    spellings = set(props)
    for p in props.values():
        spellings.update(p.get("x-aliases", []))
    for name, aliases in sorted(opts.items()):
        for spelling in [name] + aliases:
            check(spelling in spellings,
                  "api/openapi.yaml's LayerOptions lacks the option %s" % spelling)
            check("`%s`" % spelling in api_md, "docs/API.md does not name the option `%s`" % spelling)


def main():
    doc = yaml.safe_load(read("api", "openapi.yaml"))
    api_md = read("docs", "API.md")
    routes = route_table(read("api", "routes.c"))
    check(len(routes) >= 19, "routes.c: the route table parsed (%d routes)" % len(routes))

    paths = doc["paths"]
    for method, pattern in routes:
        item = paths.get(pattern, {})
        check(method.lower() in item,
              "routes.c's %s %s is not in api/openapi.yaml" % (method, pattern))

    for path, item in paths.items():
        for method in item:
            if method not in METHODS or method == "options":
                continue
            needle = "`%s %s`" % (method.upper(), path)
            check(needle in api_md, "docs/API.md does not name %s" % needle)
        check("options" in item, "api/openapi.yaml: %s has no OPTIONS operation" % path)
    check("`OPTIONS` any path" in api_md and "`HEAD` any `GET` route" in api_md,
          "docs/API.md documents HEAD and OPTIONS")

    codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
    check(len(codes) >= 17, "ErrorCode has its codes (%d)" % len(codes))
    for code in codes:
        check("`%s`" % code in api_md, "docs/API.md does not name the error code `%s`" % code)
    statuses = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"][
        "status"]["enum"]
    for status in statuses:
        check(re.search(r"\b%d\b" % status, api_md),
              "docs/API.md does not mention the status %d" % status)

    check_error_codes(doc, api_md)
    check_options(doc, api_md)

    check("../shared" not in api_md and "shared/API.md" not in api_md,
          "docs/API.md stands alone (no reference to ../shared)")
    check("../shared" not in read("api", "openapi.yaml"),
          "api/openapi.yaml stands alone (no reference to ../shared)")
    for name, text in (("docs/API.md", api_md), ("api/openapi.yaml", read("api", "openapi.yaml"))):
        check(not re.search(r"<!--.*(pending|TODO)", text),
              "%s has no pending-details marker left" % name)

    # every example against its schema
    v = Validator(doc)
    n = 0

    def media_examples(where, media):
        nonlocal n
        schema = media.get("schema")
        if schema is None:
            return
        if "example" in media:
            n += 1
            errs = v.errors(media["example"], schema)
            check(not errs, "%s example: %s" % (where, "; ".join(errs[:3])))
        for name, ex in (media.get("examples") or {}).items():
            ex = v.resolve(ex)
            if "value" in ex:
                n += 1
                errs = v.errors(ex["value"], schema)
                check(not errs, "%s example %s: %s" % (where, name, "; ".join(errs[:3])))

    for path, item in paths.items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            where = "%s %s" % (method.upper(), path)
            body = v.resolve(op.get("requestBody", {}))
            for mt, media in (body.get("content") or {}).items():
                if mt == "application/json":
                    media_examples(where + " request", media)
            for status, resp in op.get("responses", {}).items():
                resp = v.resolve(resp)
                for mt, media in (resp.get("content") or {}).items():
                    if mt == "application/json":
                        media_examples("%s %s" % (where, status), media)
    for name, schema in doc["components"]["schemas"].items():
        if "example" in schema:
            n += 1
            errs = v.errors(schema["example"], schema)
            check(not errs, "schema %s example: %s" % (name, "; ".join(errs[:3])))
    check(n >= 40, "examples checked against their schemas (%d)" % n)

    return summary("docs")


if __name__ == "__main__":
    sys.exit(main())
