#!/usr/bin/env python3
"""test_options.py - a plain option of core/spec_fields.def end to end, against the real binary:
`description` (issue 13, item 1), added by its table row alone.

- a description given on every type (PyTorch-named ones too) is answered by the definition's
  reply, GET /v1/layers/{name}, extract by name and extract "All", exactly as given (UTF-8,
  256 bytes at most);
- a layer without one lists none (answers as before the option), and extract "description"
  answers "";
- it is stored: after a restart on the same --data-dir, GET answers it again, and a PUT of the
  layer's own definition read back from GET changes nothing but the version;
- a non-string is 400 `invalid_type`, 257 bytes 422 `invalid_value`, both naming
  `options.description`; given twice or at the top level as API.md 1.2 says.

  NORMD=build/normd tests/server/test_options.py

Standard library only. Prints "options: N passed, M failed".
"""
import shutil
import sys
import tempfile

from harness import JsonServer, check, summary  # noqa: E402 (tests/server/harness.py)

TYPES = [("BatchNormalization", {"input": [3]}), ("Normalization", {"input": [2, 3]}),
         ("LayerNormalization", {"input": [4]}), ("InstanceNormalization", {"input": [2, 3]}),
         ("GroupNormalization", {"input": [4, 2], "options": {"groups": 2}}),
         ("RMSNormalization", {"input": [5]}),
         ("BatchNorm2d", {"options": {"num_features": 3}}),
         ("LayerNorm", {"options": {"normalized_shape": 4}})]

MISSING = object()  # define() gives no description
TEXT = "encoder block 3 \u00fcber \u2013 \U0001F600"  # 2-, 3- and 4-byte UTF-8 sequences


def define(srv, name, typ, extra, description=MISSING):
    body = {"name": name, "type": typ}
    body.update({k: dict(v) if isinstance(v, dict) else v for k, v in extra.items()})
    if description is not MISSING:
        body.setdefault("options", {})["description"] = description
    return srv.call("POST", "/v1/layers", body)


def extract(srv, name, keys):
    status, _, doc = srv.call("POST", "/v1/layers/%s/extract" % name, {"keys": keys})
    check(status == 200, "extract %s %s: %s %s" % (name, keys, status, doc))
    return doc or {}


def check_kept(srv, names):
    for name, want in names.items():
        status, _, info = srv.call("GET", "/v1/layers/" + name)
        opts = (info or {}).get("options", {})
        if want:
            check(status == 200 and opts.get("description") == want,
                  "GET %s: description %r, want %r" % (name, opts.get("description"), want))
        else:
            check(status == 200 and "description" not in opts,
                  "GET %s lists no description: %s" % (name, opts))
        check(extract(srv, name, ["description"]).get("description") == want,
              "extract description of %s" % name)
        all_opts = extract(srv, name, "All")
        check(all_opts.get("description", "") == want and ("description" in all_opts) == bool(want),
              "extract All of %s: %s" % (name, all_opts.get("description")))


def check_errors(srv):
    for value, status, code, word in ((5, 400, "invalid_type", "string"),
                                      (["a"], 400, "invalid_type", "string"),
                                      (None, 400, "invalid_type", "string"),
                                      ("x" * 257, 422, "invalid_value", "at most 256"),
                                      ("\u00e9" * 129, 422, "invalid_value", "258 bytes"),
                                      # read as a C string it would have lost "cd"
                                      ("ab\u0000cd", 422, "invalid_value", "\\u0000")):
        got, _, doc = define(srv, "bad", "BatchNormalization", {}, value)
        err = (doc or {}).get("error", {})
        check(got == status and err.get("code") == code and
              err.get("field") == "options.description" and word in err.get("message", ""),
              "description %r: %s %s" % (str(value)[:20], got, err))
    got, _, doc = srv.call("POST", "/v1/layers",
                           {"name": "bad", "type": "BatchNormalization", "description": "x"})
    err = (doc or {}).get("error", {})
    check(got == 422 and err.get("field") == "description" and "options" in err.get("message", ""),
          "a top-level description is told where options go: %s %s" % (got, err))
    got, _, _ = srv.call("GET", "/v1/layers/bad")
    check(got == 404, "no layer defined by the refused bodies (%s)" % got)


def main():
    data = tempfile.mkdtemp()
    srv = JsonServer("--data-dir", data)
    try:
        kept = {}
        for i, (typ, extra) in enumerate(TYPES):
            name = "d%d" % i
            want = TEXT if i % 2 == 0 else "\u00e9" * 128  # 256 bytes: the longest
            status, _, doc = define(srv, name, typ, extra, want)
            check(status == 201 and (doc or {}).get("options", {}).get("description") == want,
                  "%s with a description: %s %s" % (typ, status, doc))
            kept[name] = want
        status, _, _ = define(srv, "plain", "BatchNormalization", {"input": [3]})
        check(status == 201, "a layer without a description (%s)" % status)
        kept["plain"] = ""
        check_kept(srv, kept)
        check_errors(srv)
        srv.stop()
        srv.start()
        check_kept(srv, kept)  # stored, and read back
        status, _, info = srv.call("GET", "/v1/layers/d0")
        redo = {k: info[k] for k in ("name", "type", "convention", "input", "options")}
        status, _, doc = srv.call("PUT", "/v1/layers/d0", redo)
        check(status in (200, 201) and (doc or {}).get("options") == info["options"],
              "PUT of GET's own definition keeps the description: %s %s" % (status, doc))
    finally:
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)
    return summary("options")


if __name__ == "__main__":
    sys.exit(main())
