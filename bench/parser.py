"""Parser throughput: builds >= 20,000 messages in all four formats (muvuku, javarosa, compact,
labelled textforms) and mixed case from the forms in the conformance vectors, parses them
in-process with `parse_sms`, and prints JSON: messages, seconds, msgs_per_s (best of 3 runs).

    python bench/parser.py [--messages N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from smsbridge.forms import Forms
from smsbridge.parser import ParseOptions, parse_sms
from smsbridge.phone import normalize

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    forms = _forms()
    corpus = build_corpus(args.messages)
    options = ParseOptions(default_country_code=254)
    normalize("+254712345678", 254)  # load phone metadata outside the timed runs
    best = float("inf")
    for _ in range(args.runs):
        start = time.perf_counter()
        for text in corpus:
            parse_sms(text, forms, options)
        best = min(best, time.perf_counter() - start)
    result = {
        "messages": len(corpus),
        "seconds": round(best, 4),
        "msgs_per_s": round(len(corpus) / best),
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
