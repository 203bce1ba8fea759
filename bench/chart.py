"""The benchmark's results as a Markdown table (with ratios) and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ORDER = (
    "ours-default",
    "ours-one-process",
    "ours-best",
    "spark",
    "sdk-default",
    "sdk-best",
    "naive",
    "floor",
    "floor-loop",
)
COLOURS = {
    "ours-default": "#6baed6",
    "ours-best": "#08519c",
    "sdk-default": "#fdae6b",
    "sdk-best": "#e6550d",
    "naive": "#969696",
    "floor": "#31a354",
    "floor-loop": "#a1d99b",
    "ours-one-process": "#9ecae1",
    "spark": "#756bb1",
}
RSS_TARGET_MB = 400
# Contenders whose memory should not grow with the input: the memory panel shows them.
BOUNDED = ("ours-default", "ours-one-process", "ours-best", "spark", "floor", "floor-loop")


def _ok(data: dict[str, Any]) -> list[dict[str, Any]]:
    runs = [r for r in data["runs"] if r["status"] == "ok" and r["contender"] in ORDER]
    return sorted(runs, key=_sort_key)


def _sort_key(r: dict[str, Any]) -> tuple[Any, ...]:
    order = ORDER.index(r["contender"]) if r["contender"] in ORDER else len(ORDER)
    return r["latency_ms"], r["rows"], r["format"] != "parquet", order


def _find(
    runs: list[dict[str, Any]], name: str, latency: int, rows: int | None, fmt: str | None
) -> dict[str, Any] | None:
    for r in runs:
        if r["contender"] != name or r["latency_ms"] != latency:
            continue
        if (rows is None or r["rows"] == rows) and (fmt is None or r["format"] == fmt):
            return r
    return None


def _largest(runs: list[dict[str, Any]], name: str, fmt: str) -> dict[str, Any] | None:
    same = [r for r in runs if r["contender"] == name and r["latency_ms"] == 0]
    same = [r for r in same if r["format"] == fmt]
    return max(same, key=lambda r: r["rows"], default=None)


def _ratio(r: dict[str, Any], base: dict[str, Any] | None) -> str:
    if base is None or base is r:
        return "n/a"
    return f"{r['events_per_s'] / base['events_per_s']:.2f}x"


def _rows_text(rows: int) -> str:
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows // 1000}k"


def table(data: dict[str, Any]) -> str:
    """Markdown: null sink with ratios to the SDK's best and to the floor (same input), then
    the latency runs with ratios to the SDK's defaults; then what was skipped or failed."""
    runs = _ok(data)
    lines = [
        "| contender | input | events/s | wall s | CPU s | peak RSS MB | all RSS | all PSS "
        "| sandbox CPU s | x SDK best | x floor |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in (r for r in runs if r["latency_ms"] == 0):
        sdk = _find(runs, "sdk-best", 0, r["rows"], r["format"])
        vs_sdk = _ratio(r, sdk)
        if sdk is None:
            # The SDK did not run at this size (see below): compare with its rate on the
            # largest input it did run, which its per-event cost keeps about constant.
            sdk = _largest(runs, "sdk-best", r["format"])
            vs_sdk = _ratio(r, sdk) + (f" (vs {_rows_text(sdk['rows'])})" if sdk else "")
        floor = _find(runs, "floor", 0, r["rows"], r["format"])
        lines.append(_row(r) + f" {vs_sdk} | {_ratio(r, floor)} |")
    latency = [r for r in runs if r["latency_ms"]]
    if latency:
        ms = latency[0]["latency_ms"]
        lines += [
            "",
            f"With the sandbox at `--latency-ms {ms}`:",
            "",
            "| contender | input | events/s | wall s | CPU s | peak RSS MB | all RSS | all PSS "
            "| sandbox CPU s | x SDK defaults | x SDK best |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in latency:
            sdk_default = _find(runs, "sdk-default", ms, None, r["format"])
            sdk_best = _find(runs, "sdk-best", ms, None, r["format"])
            lines.append(_row(r) + f" {_ratio(r, sdk_default)} | {_ratio(r, sdk_best)} |")
    others = [r for r in data["runs"] if r["status"] != "ok"]
    if others:
        lines.append("")
        for r in sorted(others, key=_sort_key):
            sink = f"latency {r['latency_ms']} ms" if r["latency_ms"] else "null sink"
            lines.append(
                f"- {r['label']}, {_rows_text(r['rows'])} {r['format']}, {sink}: "
                f"**{r['status']}**: {r.get('reason')}"
            )
    notes = [r for r in runs if r.get("note")]
    for r in notes:
        lines.append(f"- {r['label']} at latency {r['latency_ms']} ms: {r['note']}")
    return "\n".join(lines)


def _row(r: dict[str, Any]) -> str:
    return (
        f"| {r['label']} | {_rows_text(r['rows'])} {r['format']} | {r['events_per_s']:,.0f} "
        f"| {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:,.0f} "
        f"| {r.get('peak_tree_rss_mb', r['peak_rss_mb']):,.0f} "
        f"| {r.get('peak_tree_pss_mb', 0):,.0f} | {r['sandbox_cpu_s']:.1f} |"
    )


def draw(data: dict[str, Any], path: Path) -> None:
    """Left: events/s per contender, null sink and latency side by side (log scale).
    Right: peak RSS of the bounded contenders at every size, against the 400 MB target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _ok(data)
    null_rows = [r["rows"] for r in runs if r["latency_ms"] == 0]
    if not null_rows:
        return
    small = min(null_rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [3, 2]})

    groups: list[tuple[str, list[dict[str, Any]]]] = [
        (
            f"null sink\n{_rows_text(small)} rows, Parquet",
            [
                r
                for r in runs
                if r["latency_ms"] == 0 and r["rows"] == small and r["format"] == "parquet"
            ],
        )
    ]
    latency = [r for r in runs if r["latency_ms"] and r["format"] == "parquet"]
    if latency:
        groups.append((f"sandbox latency {latency[0]['latency_ms']} ms\nParquet", latency))
    width = 0.8 / len(ORDER)
    for g, (_, members) in enumerate(groups):
        for r in members:
            i = ORDER.index(r["contender"])
            x = g + (i - (len(ORDER) - 1) / 2) * width
            bar = left.bar(x, r["events_per_s"], width * 0.95, color=COLOURS[r["contender"]])
            text = f"{r['events_per_s'] / 1000:,.0f}k"
            if r["rows"] != small:
                text += f"\n({_rows_text(r['rows'])})"
            left.bar_label(bar, [text], fontsize=7, padding=2)
    left.set_yscale("log")
    left.set_xticks(range(len(groups)), [name for name, _ in groups])
    left.set_ylabel("events per second (log scale)")
    left.set_title("Throughput (higher is better)")
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=COLOURS[name])  # type: ignore[attr-defined]
        for name in ORDER
    ]
    labels = [_label(data, name) for name in ORDER]
    left.legend(
        handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3
    )
    left.set_ylim(top=left.get_ylim()[1] * 2)

    inputs = sorted(
        {(r["rows"], r["format"]) for r in runs if r["latency_ms"] == 0},
        key=lambda k: (k[0], k[1] != "parquet"),
    )
    width = 0.8 / len(BOUNDED)
    for x, (rows, fmt) in enumerate(inputs):
        for i, name in enumerate(BOUNDED):
            found = _find(runs, name, 0, rows, fmt)
            if found is None:
                continue
            r = found
            pos = x + (i - (len(BOUNDED) - 1) / 2) * width
            rss = r.get("peak_tree_rss_mb", r["peak_rss_mb"])  # its worker process included
            bar = right.bar(pos, rss, width * 0.95, color=COLOURS[name])
            right.bar_label(bar, [f"{rss:,.0f}"], fontsize=7, padding=1)
    right.axhline(RSS_TARGET_MB, color="#de2d26", linestyle="--", linewidth=1)
    right.text(
        -0.45, RSS_TARGET_MB * 1.02, f"target {RSS_TARGET_MB} MB", color="#de2d26", fontsize=8
    )
    right.set_xticks(range(len(inputs)), [f"{_rows_text(n)} {f}" for n, f in inputs])
    right.set_ylabel("peak RSS, all its processes together, MB")
    right.set_ylim(top=max(RSS_TARGET_MB * 1.25, right.get_ylim()[1] * 1.08))
    right.set_title("Memory (null sink)")
    sdk = [r for r in runs if r["contender"].startswith("sdk") and r["latency_ms"] == 0]
    if sdk:
        worst = max(sdk, key=lambda r: r["peak_rss_mb"])
        right.annotate(
            f"(the SDK: {worst['peak_rss_mb'] / 1024:.1f} GB at {_rows_text(worst['rows'])} "
            "rows, not drawn)",
            (0.5, -0.16),
            xycoords="axes fraction",
            ha="center",
            fontsize=8,
        )

    machine = data.get("machine", {})
    fig.suptitle(
        f"uploader benchmark: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('date', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _label(data: dict[str, Any], name: str) -> str:
    for r in data["runs"]:
        if r["contender"] == name:
            return str(r["label"])
    return name


def _short(name: str) -> str:
    short = {
        "ours-default": "ours dflt",
        "ours-one-process": "ours 1 proc",
        "ours-best": "ours best",
        "floor-loop": "floor loop",
    }
    return short.get(name, name)
