"""Parser throughput: builds >= 20,000 messages in all four formats (muvuku, javarosa, compact,
labelled textforms) and mixed case from the forms in the conformance vectors, parses them
in-process with `parse_sms`, and prints JSON: messages, seconds, msgs_per_s (best of 3 runs).

    python bench/parser.py [--messages N] [--runs R] [--reference CMD]

`--reference CMD` also times a reference parser on the same corpus, in the same run: the bench
writes the corpus to a temporary JSON file -- {"forms": {...}, "messages": [...], "timezone",
"locale", "settings": {app settings, e.g. default_country_code}, "runs"} -- and runs
`CMD <corpus-file>`, which must print one JSON object with at least messages, seconds and
msgs_per_s. The output then carries that object under "reference" and "speedup" (our msgs_per_s /
the reference's). The reference is any command speaking that contract, e.g. a node harness
around CHT's own smsparser, kept outside this repository (CHT's code never goes in it).
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from smsbridge.phone import normalize
from smsbridge.smsparser.forms import Forms
from smsbridge.smsparser.parser import ParseOptions, parse_sms

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors" / "smsparser.json"

_SAMPLE = {
    "integer": ["24", "3", "1000", "7"],
    "month": ["3", "11"],
    "boolean": ["1", "0"],
    "date": ["2012-03-12", "2013-01-05"],
    "bsDate": ["2068-11-29", "2070-01-01"],
    "phone_number": ["+254712345678", "0712345678"],
    "bsYear": ["2068", "2080"],
    "bsMonth": ["11", "1"],
    "bsDay": ["29", "5"],
}


def _forms() -> Forms:
    """Every uppercase-coded, labelled form of the vectors, keyed by its meta.code."""
    forms: dict[str, Any] = {}
    for v in json.loads(VECTORS.read_text(encoding="utf-8")):
        d = v.get("form_def")
        if not isinstance(d, dict) or not isinstance(d.get("fields"), dict) or not d["fields"]:
            continue
        code = (d.get("meta") or {}).get("code")
        fields = d["fields"].values()
        if not isinstance(code, str) or not code.isalnum() or code != code.upper():
            continue
        if not all(isinstance(f, dict) and isinstance(f.get("labels"), dict) for f in fields):
            continue
        forms.setdefault(code, d)
    return Forms(forms)


def _value(field: dict[str, Any], rng: random.Random) -> str:
    if field.get("list"):
        return str(rng.choice(field["list"])[0])
    return rng.choice(_SAMPLE.get(field.get("type", ""), ["sarah", "16A", "Main"]))


def _case(s: str, rng: random.Random) -> str:
    return rng.choice([s, s.lower(), s.upper(), s.swapcase()])


def build_corpus(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    forms = _forms()
    corpus: list[str] = []
    codes = sorted(forms)
    while len(corpus) < n:
        code = rng.choice(codes)
        fields = forms[code]["fields"]
        keys = list(fields)
        values = [_value(fields[k], rng) for k in keys]
        tiny = [fields[k]["labels"].get("tiny") for k in keys]
        tiny = [t if isinstance(t, str) else (t or {}).get("en", "") for t in tiny]
        fmt = len(corpus) % 4
        if fmt == 0:
            corpus.append(f"1!{code}!" + "#".join(values))
        elif fmt == 1:
            corpus.append(
                f"J1!{code}!" + "#".join(f"{t}#{v}" for t, v in zip(tiny, values, strict=True))
            )
        elif fmt == 2:
            corpus.append(
                _case(code, rng) + " " + " ".join(v if " " not in v else f'"{v}"' for v in values)
            )
        else:
            corpus.append(
                _case(code, rng)
                + " "
                + "#".join(f"{_case(t, rng)} {v}" for t, v in zip(tiny, values, strict=True))
            )
    return corpus


COUNTRY_CODE = 254
REFERENCE_KEYS = ("messages", "seconds", "msgs_per_s")


class ReferenceFailed(Exception):
    """The reference command failed or did not speak the contract."""


def run_reference(cmd: str, forms: Forms, corpus: list[str], runs: int) -> dict[str, Any]:
    """Write the corpus file, run `cmd <file>`, return the JSON object it printed."""
    doc = {
        "forms": dict(forms),
        "messages": corpus,
        "timezone": "UTC",
        "locale": None,
        "settings": {"default_country_code": COUNTRY_CODE},
        "runs": runs,
    }
    with tempfile.TemporaryDirectory(prefix="bench-parser-") as tmp:
        path = Path(tmp) / "corpus.json"
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        try:
            proc = subprocess.run(
                [*shlex.split(cmd), str(path)], capture_output=True, text=True, check=False
            )
        except OSError as exc:
            raise ReferenceFailed(f"cannot run {cmd!r}: {exc}") from exc
    if proc.returncode != 0:
        raise ReferenceFailed(f"{cmd!r} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise ReferenceFailed(f"{cmd!r} did not print one JSON object: {exc}") from exc
    if not isinstance(result, dict) or any(k not in result for k in REFERENCE_KEYS):
        raise ReferenceFailed(f"{cmd!r} must print a JSON object with {', '.join(REFERENCE_KEYS)}")
    if not isinstance(result["msgs_per_s"], int | float) or result["msgs_per_s"] <= 0:
        raise ReferenceFailed(f"{cmd!r} gave no positive msgs_per_s")
    if result["messages"] != len(corpus):
        raise ReferenceFailed(
            f"{cmd!r} timed {result['messages']} messages, the corpus has {len(corpus)}"
        )
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--reference",
        metavar="CMD",
        help="also time `CMD <corpus.json>` on the same corpus (see the module docstring)",
    )
    args = ap.parse_args(argv)
    forms = _forms()
    corpus = build_corpus(args.messages)
    options = ParseOptions(default_country_code=COUNTRY_CODE)
    normalize("+254712345678", COUNTRY_CODE)  # load phone metadata outside the timed runs
    best = float("inf")
    for _ in range(args.runs):
        start = time.perf_counter()
        for text in corpus:
            parse_sms(text, forms, options)
        best = min(best, time.perf_counter() - start)
    result: dict[str, Any] = {
        "messages": len(corpus),
        "seconds": round(best, 4),
        "msgs_per_s": round(len(corpus) / best),
    }
    if args.reference:
        try:
            ref = run_reference(args.reference, forms, corpus, args.runs)
        except ReferenceFailed as exc:
            print(f"bench/parser.py: reference: {exc}", file=sys.stderr)
            return 1
        result["reference"] = ref
        result["speedup"] = round((len(corpus) / best) / ref["msgs_per_s"], 2)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
