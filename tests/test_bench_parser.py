"""bench/parser.py --reference: the corpus file a reference command gets and the figures it adds.

The reference here is a stand-in script that keeps a copy of the corpus file and prints fixed
figures: these tests check the plumbing, not anybody's speed."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "parser.py"

FAKE_REFERENCE = """\
import json, shutil, sys
seen, corpus = sys.argv[1], sys.argv[2]
shutil.copyfile(corpus, seen)
n = len(json.load(open(corpus, encoding="utf-8"))["messages"])
print(json.dumps({"messages": n, "seconds": 0.5, "msgs_per_s": 2 * n, "engine": "fake"}))
"""


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), "--messages", "12", "--runs", "1", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def reference_cmd(tmp_path: Path, source: str) -> tuple[str, Path]:
    script = tmp_path / "reference.py"
    script.write_text(source, encoding="utf-8")
    seen = tmp_path / "seen.json"
    return shlex.join([sys.executable, str(script), str(seen)]), seen


def test_reference_gets_the_whole_corpus_and_its_figures_are_reported(tmp_path: Path) -> None:
    cmd, seen = reference_cmd(tmp_path, FAKE_REFERENCE)
    proc = bench("--reference", cmd)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    corpus = json.loads(seen.read_text(encoding="utf-8"))

    assert len(corpus["messages"]) == out["messages"] == 12
    assert all(isinstance(m, str) and m for m in corpus["messages"])
    assert {m[:2] for m in corpus["messages"]} >= {"1!", "J1"}  # several formats
    assert corpus["forms"] and all("fields" in d for d in corpus["forms"].values())
    assert corpus["timezone"] == "UTC"
    assert corpus["settings"] == {"default_country_code": 254}
    assert corpus["runs"] == 1

    assert out["reference"] == {"messages": 12, "seconds": 0.5, "msgs_per_s": 24, "engine": "fake"}
    assert out["speedup"] == pytest.approx(out["msgs_per_s"] / 24, rel=0.01)


def test_without_reference_the_output_is_unchanged() -> None:
    proc = bench()
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)) == {"messages", "seconds", "msgs_per_s"}


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("import sys\nsys.exit('boom')\n", "exited 1: boom"),
        ("print('not json')\n", "did not print one JSON object"),
        ("print('{\"messages\": 12}')\n", "messages, seconds, msgs_per_s"),
        (
            'print(\'{"messages": 3, "seconds": 1, "msgs_per_s": 3}\')\n',
            "timed 3 messages, the corpus has 12",
        ),
    ],
)
def test_a_reference_breaking_the_contract_fails_the_bench(
    tmp_path: Path, source: str, complaint: str
) -> None:
    cmd, _ = reference_cmd(tmp_path, source)
    proc = bench("--reference", cmd)
    assert proc.returncode == 1
    assert complaint in proc.stderr
    assert proc.stdout == ""
