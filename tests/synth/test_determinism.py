"""The generator is a function of its configuration: same seed, same bytes; another seed, other data."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

from synth.__main__ import main
from synth.generator import Config, merged_lines, municipality_lines, write

SMALL = {"start": date(2025, 3, 1), "municipalities": ("657", "167"), "scale": 0.05, "warmup_years": 1}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    write(Config(seed=5, **SMALL), str(a))  # type: ignore[arg-type]
    write(Config(seed=5, **SMALL), str(b))  # type: ignore[arg-type]
    assert a.stat().st_size > 10_000
    assert a.read_bytes() == b.read_bytes()


def test_cli_same_seed_same_bytes(tmp_path: Path) -> None:
    args = [
        "--seed",
        "2",
        "--years",
        "1",
        "--municipalities",
        "657",
        "--start",
        "2025-11-01",
        "--scale",
        "0.05",
    ]
    assert main([*args, "--out", str(tmp_path / "1.ndjson"), "--quiet"]) == 0
    assert main([*args, "--out", str(tmp_path / "2.ndjson"), "--quiet"]) == 0
    assert digest(tmp_path / "1.ndjson") == digest(tmp_path / "2.ndjson")


def test_different_seed_different_data(tmp_path: Path) -> None:
    a, b = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    write(Config(seed=5, **SMALL), str(a))  # type: ignore[arg-type]
    write(Config(seed=6, **SMALL), str(b))  # type: ignore[arg-type]
    assert a.read_bytes() != b.read_bytes()
    cprs = [
        {json.loads(line)["data"].get("child", {}).get("cpr") for line in p.read_text().splitlines()} - {None}
        for p in (a, b)
    ]
    assert cprs[0] != cprs[1]


def test_a_municipality_does_not_depend_on_the_others() -> None:
    alone = list(municipality_lines("657", Config(seed=9, **SMALL))[0])  # type: ignore[arg-type]
    merged, _ = merged_lines(Config(seed=9, **SMALL))  # type: ignore[arg-type]
    together = [line for line in merged if '"municipality": "657"' in line]
    assert alone == together


def test_split_files_equal_the_merged_file_per_municipality(tmp_path: Path) -> None:
    cfg = Config(seed=3, **SMALL)  # type: ignore[arg-type]
    write(cfg, str(tmp_path / "all.ndjson"))
    write(cfg, str(tmp_path / "m-{municipality}.ndjson"))
    merged = (tmp_path / "all.ndjson").read_text().splitlines()
    for code in cfg.municipalities:
        own = (tmp_path / f"m-{code}.ndjson").read_text().splitlines()
        assert own == [line for line in merged if f'"municipality": "{code}"' in line]
        assert own


def test_record_ids_are_stable_for_a_seed_and_unique_per_municipality() -> None:
    cfg = Config(seed=4, **SMALL)  # type: ignore[arg-type]
    first = [json.loads(line)["record_id"] for line in merged_lines(cfg)[0]]
    again = [json.loads(line)["record_id"] for line in merged_lines(cfg)[0]]
    assert first == again
    assert len(set(first)) == len(first)
    assert all(rid.startswith("syn4-") for rid in first)


def test_the_late_share_does_not_change_what_happens() -> None:
    """Late lines are the same records, only moved: the seed decides the content."""
    on_time = Config(seed=8, late_share=0.0, **SMALL)  # type: ignore[arg-type]
    late = Config(seed=8, late_share=0.2, **SMALL)  # type: ignore[arg-type]
    a = list(merged_lines(on_time)[0])
    b = list(merged_lines(late)[0])
    assert sorted(a) == sorted(b)
    assert a != b
