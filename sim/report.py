"""What a simulation tells a release engineer: a table, a markdown report, JSON and plots."""

from __future__ import annotations

import json
from pathlib import Path

from sim.runner import SimResult
from sim.stats import StrategyStats, hist_edges


def _num(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "never"
    return f"{v:.{digits}f}" if digits else f"{v:.0f}"


def _kb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e7 else f"{n / 1e3:.1f} KB"


COLUMNS = (
    "strategy",
    "acc p50",
    "p90",
    "p99",
    "mean",
    "days 50%",
    "90%",
    "99%",
    "KB/box sent",
    "KB/box wasted",
    "unfinished",
)


def table_rows(result: SimResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, s in result.strategies.items():
        per_box = max(1, s.boxes)
        rows.append(
            (
                name,
                _num(s.accesses_p50, 0),
                _num(s.accesses_p90, 0),
                _num(s.accesses_p99, 0),
                _num(s.accesses_mean, 1),
                _num(s.days_to_50),
                _num(s.days_to_90),
                _num(s.days_to_99),
                f"{s.air_bytes / per_box / 1e3:.1f}",
                f"{s.wasted_bytes / per_box / 1e3:.1f}",
                f"{s.unfinished_share:.1%}",
            )
        )
    return rows


def text_table(result: SimResult) -> str:
    rows = [COLUMNS, *table_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for k, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def headline(result: SimResult) -> list[str]:
    s = result.scenario
    upd = result.boxes - result.legacy
    return [
        f"scenario {s.name} ({s.source}): {s.run.boxes} boxes × {s.run.runs} run(s) pooled "
        f"= {result.boxes} box histories over {s.run.days:g} days, seed {s.run.seed}",
        f"legacy boxes without Bluetooth (never updated passively, excluded below): "
        f"{result.legacy} ({result.legacy / max(1, result.boxes):.1%}); updatable: {upd}",
        *result.release.describe(),
        f"{result.box_accesses} box accesses simulated in {result.seconds:.1f} s on "
        f"{result.workers} process(es)",
    ]


def markdown(result: SimResult) -> str:
    s = result.scenario
    out = [f"# fwdist sim: {s.name}", "", s.description, ""]
    out += [f"- {line.strip()}" for line in headline(result)]
    out += [
        "",
        "## Results",
        "",
        "Accesses: showings (and owner sessions) of a box until its update is complete. "
        "Percentiles are nearest-rank over all updatable boxes; *never* means that share of "
        "boxes had not finished when the simulation ended. Days: until that share of the "
        "updatable fleet runs the new version (installation waits for battery). "
        "Sent/wasted: bytes on the air per box, both directions; wasted = neither protocol "
        "overhead nor payload the box kept (lost frames, discarded objects, restarts).",
        "",
    ]
    out.append("| " + " | ".join(COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    for row in table_rows(result):
        out.append("| " + " | ".join(row) + " |")
    out += ["", "| strategy | what it is |", "|---|---|"]
    out += [f"| {n} | {st.description} |" for n, st in result.strategies.items()]
    if result.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    if s.notes:
        out += [
            "",
            "## The scenario's assumptions and their sources (from its file)",
            "",
            "```",
            s.notes,
            "```",
        ]
    out += [
        "",
        "## Plots",
        "",
        "![accesses](accesses.png)",
        "",
        "![fleet](fleet.png)",
        "",
        "![bytes per access](bytes_per_access.png)",
        "",
        "## Assumptions",
        "",
        "Every value the simulation used (scenario file first, documented defaults otherwise).",
        "",
        "| setting | value | meaning |",
        "|---|---|---|",
    ]
    out += [f"| `{k}` | {v} | {d} |" for k, v, d in s.assumptions()]
    return "\n".join(out) + "\n"


def plots(result: SimResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    stats: list[StrategyStats] = list(result.strategies.values())

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for st in stats:
        if st.access_counts:
            xs = sorted(st.access_counts)
            cum, total, ys = 0, max(1, st.boxes), []
            for x in xs:
                cum += st.access_counts[x]
                ys.append(cum / total)
            ax.step(xs, ys, where="post", label=st.name)
    ax.set_xscale("log")
    ax.set_xlabel("accesses until the update is complete")
    ax.set_ylabel("share of updatable boxes")
    ax.set_title(f"{result.scenario.name}: accesses per box")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    written.append(out / "accesses.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for st in stats:
        ax.plot([d for d, _ in st.curve], [v for _, v in st.curve], label=st.name)
    ax.set_xlabel("days after the release")
    ax.set_ylabel("share of updatable boxes on the new version")
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{result.scenario.name}: fleet completion")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    written.append(out / "fleet.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    edges = hist_edges()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for st in stats:
        total = max(1, sum(st.hist))
        ax.step(
            [e / 1024 for e in edges[:-1]],
            [h / total for h in st.hist],
            where="post",
            label=f"{st.name} (mean {st.bytes_per_session / 1024:.1f} KiB/session)",
        )
    ax.set_xlabel("bytes on the air in one access, KiB (last bin: 64 KiB and more)")
    ax.set_ylabel("share of accesses")
    ax.set_title(f"{result.scenario.name}: bytes per access while updating")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out / "bytes_per_access.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def write_report(result: SimResult, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(result))
    (out / "result.json").write_text(json.dumps(result.as_json(), indent=2, sort_keys=True) + "\n")
    return [out / "report.md", out / "result.json", *plots(result, out)]
