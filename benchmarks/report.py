"""The two outputs of a run: a JSON document for machines, a markdown table for the CI log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.limits import CheckResult
from benchmarks.record import Number, Record


def document(
    records: Sequence[Record],
    machine: Mapping[str, Any],
    mode: str,
    check: CheckResult,
    seconds: float,
) -> dict[str, Any]:
    return {
        "suite": "fwdist-benchmarks",
        "mode": mode,
        "seconds": round(seconds, 1),
        "machine": dict(machine),
        "records": [r.to_json(machine) for r in records],
        "limits": {
            "ok": check.ok,
            "failures": check.failures,
            "warnings": check.warnings,
            "passed": check.passed,
        },
    }


def fmt_value(v: Number | None, unit: str) -> str:
    if v is None:
        return "—"
    if isinstance(v, int):
        text = f"{v:,}"
    elif abs(v) >= 100:
        text = f"{v:,.0f}"
    elif abs(v) >= 1:
        text = f"{v:.2f}"
    else:
        text = f"{v:.3g}"
    return f"{text} {unit}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row(r: Record) -> str:
    ratio = r.ratio
    if r.error:
        verdict = f"**error**: {r.error}"
    elif r.skipped:
        verdict = f"skipped: {r.skipped}"
    else:
        verdict = f"{r.better} is better" if r.peer else ""
    cells = [
        r.name,
        fmt_value(r.value, r.unit),
        r.peer or "",
        fmt_value(r.peer_value, r.unit) if r.peer else "",
        f"{ratio:.3f}×" if ratio is not None else "",
        verdict,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def markdown(
    records: Sequence[Record],
    machine: Mapping[str, Any],
    mode: str,
    check: CheckResult,
    seconds: float,
) -> str:
    lines = [
        f"## fwdist benchmarks ({mode}, {seconds:.0f} s)",
        "",
        f"{machine.get('cpu')}, {machine.get('cores')} cores, Python {machine.get('python')}, "
        f"fwdist {machine.get('fwdist_commit')}. Ratios are fwdist / peer, same run, same input.",
        "",
        "| metric | fwdist | peer | peer value | ratio | |",
        "|---|---:|---|---:|---:|---|",
    ]
    lines += [row(r) for r in records]
    lines += ["", "### Limits (benchmarks/limits.json)", ""]
    lines += [f"- **FAIL** {_cell(f)}" for f in check.failures]
    lines += [f"- warning: {_cell(w)}" for w in check.warnings]
    lines.append(
        f"- {len(check.passed)} checks passed" + ("" if check.failures else "; no failures")
    )
    notes = [(r.name, r.peer, r.note) for r in records if r.note]
    if notes:
        lines += ["", "<details><summary>What each figure compares</summary>", ""]
        seen: set[str] = set()
        for name, peer, note in notes:
            text = f"- {name}" + (f" vs {peer}" if peer else "") + f": {note}"
            if text not in seen:
                seen.add(text)
                lines.append(_cell(text))
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
