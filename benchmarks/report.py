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


def row(r: Record, continued: bool = False) -> str:
    """One table row; ``continued`` blanks the name and fwdist value repeated from the row above."""
    ratio = r.ratio
    if r.error:
        verdict = f"**error**: {r.error}"
    elif r.skipped:
        verdict = f"skipped: {r.skipped}"
    else:
        verdict = f"{r.better} is better" if r.peer else ""
    cells = [
        "" if continued else r.name,
        "" if continued else fmt_value(r.value, r.unit),
        r.peer or "",
        fmt_value(r.peer_value, r.unit) if r.peer else "",
        f"{ratio:.3f}×" if ratio is not None else "",
        verdict,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def notes(records: Sequence[Record]) -> list[str]:
    """One line per distinct note; ``name vs peer: note`` when the notes differ by peer."""
    by_name: dict[str, list[Record]] = {}
    for r in records:
        if r.note:
            by_name.setdefault(r.name, []).append(r)
    lines = []
    for name, group in by_name.items():
        if len({r.note for r in group}) == 1:
            lines.append(f"- {name}: {group[0].note}")
        else:
            lines += [f"- {name} vs {r.peer}: {r.note}" for r in group]
    return [_cell(line) for line in lines]


def markdown(
    records: Sequence[Record],
    machine: Mapping[str, Any],
    mode: str,
    check: CheckResult,
    seconds: float,
) -> str:
    """The table a person reads in the CI log, then the limit check, then what each figure means."""
    lines = [
        f"## fwdist benchmarks ({mode}, {seconds:.0f} s)",
        "",
        f"{machine.get('cpu')}, {machine.get('cores')} cores, Python {machine.get('python')}, "
        f"fwdist {machine.get('fwdist_commit')}. Ratios are fwdist / peer, same run, same input.",
        "",
        "| metric | fwdist | peer | peer value | ratio | |",
        "|---|---:|---|---:|---:|---|",
    ]
    previous: Record | None = None
    for r in records:
        continued = previous is not None and previous.name == r.name and previous.value == r.value
        lines.append(row(r, continued))
        previous = r
    lines += ["", "### Limits (benchmarks/limits.json)", ""]
    lines += [f"- **FAIL** {_cell(f)}" for f in check.failures]
    lines += [f"- warning: {_cell(w)}" for w in check.warnings]
    lines += [f"- ok: {_cell(ok)}" for ok in check.passed]
    if not check.failures:
        lines.append(f"- no failures ({len(check.passed)} checks passed)")
    explained = notes(records)
    if explained:
        lines += ["", "<details><summary>What each figure compares</summary>", ""]
        lines += explained
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
