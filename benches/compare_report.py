"""Turn a benches/compare.sh run (raw.tsv + meta.env) into table.md and
plot.png, and optionally rewrite the compare block of a Markdown file
(compare.sh passes docs/benchmarks.md).

usage: compare_report.py RESULT_DIR [--readme docs/benchmarks.md]

Every row sets a sitefs figure against a named baseline measured in the same
run. Lower is better for every metric here, so the ratio is baseline /
sitefs, spelt out ("17.5x faster", "1.10x slower") to leave no doubt about
its direction.
"""
import argparse
import collections
import os
import statistics
import sys
from pathlib import Path

BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"
# kind of raw sample (s, µs, bytes, KiB) -> (unit, words for better / worse)
KINDS = {
    "time": ("s", "faster", "slower"),
    "us": ("µs", "faster", "slower"),
    "bytes": ("B", "smaller", "larger"),
    "kb": ("KiB", "smaller", "larger"),
}


def load(result):
    samples = collections.defaultdict(list)
    for line in (result / "raw.tsv").read_text().splitlines():
        metric, variant, value = line.split("\t")
        samples[metric, variant].append(float(value))
    meta = dict(
        line.split("=", 1) for line in (result / "meta.env").read_text().splitlines() if "=" in line
    )
    return samples, meta


def rows(meta):
    """(label, sitefs key, [(baseline label, key)...], kind, statistic)."""
    k, slow, envs = meta["k"], meta["slow_n"], meta["envs"]
    out = [
        ("store ingest of the wheel set, with bytecode", ("ingest", "sitefs"),
         [("`venv` + `pip install`", ("create", "pip"))], "time", "median"),
        ("`env create`, warm store", ("create", "sitefs"),
         [("uv, warm cache, hard links", ("create", "uv")),
          ("uv `--compile-bytecode`", ("create", "uvc")),
          ("`venv` + `pip install`", ("create", "pip"))], "time", "median"),
        (f"disk per env (`df` delta; sitefs, uv over {k} envs, others over {slow})", ("disk", "sitefs"),
         [("uv, hard links", ("disk", "uv")),
          ("uv `--compile-bytecode`", ("disk", "uvc")),
          ("`venv` + `pip install`", ("disk", "pip"))], "bytes", "mean"),
    ]
    adopted = int(slow) - 1
    out += [
        (f"`sitefs adopt` of {adopted} pip venv{'s' if adopted != 1 else ''}: their own files (`du`, mounts excluded)",
         ("adopt_files", "sitefs"), [("the same venvs before", ("adopt_files", "pip"))], "bytes", "mean"),
        ("— the store their adoption made", ("adopt_store", "sitefs"),
         [("one pip venv (`du`)", ("adopt_store", "pip"))], "bytes", "mean"),
        ("— adopt time, first venv (cold store: ingest + bytecode)", ("adopt_first", "sitefs"), [], "time", "median"),
        ("— adopt time, each further venv", ("adopt_next", "sitefs"), [], "time", "median"),
    ]
    for mode in meta["modes"].split():
        m = f"open={mode}"
        out += [
            (f"import stack, warm, {m}", (f"import_warm.{mode}", "sitefs"),
             [("pip venv", (f"import_warm.{mode}", "pip"))], "time", "median"),
            (f"import stack, cold (drop_caches), {m}", (f"import_cold.{mode}", "sitefs"),
             [("pip venv", (f"import_cold.{mode}", "pip"))], "time", "median"),
            (f"`pip list`, {m}", (f"piplist.{mode}", "sitefs"),
             [("pip venv", (f"piplist.{mode}", "pip"))], "time", "median"),
            (f"`importlib.metadata.entry_points()`, {m}", (f"entrypoints.{mode}", "sitefs"),
             [("pip venv", (f"entrypoints.{mode}", "pip"))], "time", "median"),
            (f"open + read 4 KiB + close, {m}", (f"openread.{mode}", "sitefs"),
             [("pip venv", (f"openread.{mode}", "pip"))], "us", "median"),
            (f"`sitefs mount` of the env until it returns (live), {m}", (f"mount.{mode}", "sitefs"),
             [], "time", "median"),
            (f"daemon RSS per mount, {m}", (f"rss.{mode}", "sitefs"), [], "kb", "median"),
            (f"— PSS of daemon + watchdog per mount, {m}", (f"pss.{mode}", "sitefs"), [], "kb", "median"),
        ]
    for mode in meta["modes"].split():
        out.append(
            (f"page cache, {envs} envs importing numpy at once, open={mode}", ("pagecache", f"sitefs-{mode}"),
             [(f"{envs} pip venvs", ("pagecache", "pip")),
              (f"{envs} uv venvs (hard links)", ("pagecache", "uv"))], "bytes", "median"))
    return out


def stat(values, how):
    return statistics.median(values) if how == "median" else statistics.fmean(values)


def paired(base, sitefs, b, s, how):
    """The (baseline, sitefs) pair a ratio compares. Runs recorded in
    alternating pairs (as many of each) compare pair by pair: the median
    of their ratios, which the VM's drift between pairs cancels out of."""
    if how != "median" or len(base) != len(sitefs) or len(base) < 2 or 0 in sitefs:
        return b, s
    return statistics.median(x / y for x, y in zip(base, sitefs)), 1.0


def unit(value, kind):
    """(divisor, suffix) that suits value: every figure of a cell uses one."""
    if kind == "time":
        return (1, " s") if value >= 10 else (1e-3, " ms")
    if kind == "us":
        return 1, " µs"
    scale = 1024 if kind == "kb" else 1
    for div, suffix in ((1 << 30, " GiB"), (1 << 20, " MiB")):
        if abs(value) * scale >= div:
            return div / scale, suffix
    return 1024 / scale, " KiB"


def num(value, div):
    v = value / div
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"


def figure(values, how, kind):
    """Statistic, with the min–max of the samples when there are several."""
    value = stat(values, how)
    div, suffix = unit(value, kind)
    text = num(value, div) + suffix
    if len(values) > 1 and how == "median":
        text += f" ({num(min(values), div)}–{num(max(values), div)})"
    return text


def ratio_words(base, sitefs, kind):
    better, worse = KINDS[kind][1:]
    if sitefs <= 0:
        return float("inf"), f"∞ ({better})"
    r = base / sitefs
    x = r if r >= 1 else 1 / r
    text = f"{x:.0f}x" if x >= 100 else f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"
    return r, f"{text} {better if r >= 1 else worse}"


def build(samples, meta):
    """Markdown table lines and the (label, ratio) pairs to plot."""
    lines = ["| measurement | sitefs | baseline (same run) | baseline figure | sitefs vs baseline |",
             "|---|---|---|---|---|"]
    bars = []
    for label, key, baselines, kind, how in rows(meta):
        if key not in samples:
            continue
        s = stat(samples[key], how)
        first = True
        for blabel, bkey in baselines or [("—", None)]:
            if bkey is not None and bkey not in samples:
                continue
            cells = [label if first else "", figure(samples[key], how, kind) if first else ""]
            if bkey is None:
                cells += ["—", "", ""]
            else:
                b = stat(samples[bkey], how)
                r, words = ratio_words(*paired(samples[bkey], samples[key], b, s, how), kind)
                cells += [blabel, figure(samples[bkey], how, kind), words]
                bars.append((f"{label}\nvs {blabel}", r, words))
            lines.append("| " + " | ".join(cells) + " |")
            first = False
    return lines, bars


def machine(meta):
    return (f"{meta['cpu']} × {meta['cores']} cores, {meta['ram_gib']} GiB RAM, "
            f"kernel {meta['kernel']}")


def load_note(meta):
    wall, cores = float(meta["wall_s"]), int(meta["cores"])
    others = max(0.0, float(meta["cpu_all_s"]) - float(meta["cpu_own_s"]))
    share = 100 * others / (wall * cores) if wall > 0 else 0
    if share >= 5:
        return (f"**other jobs were running**: processes outside this run used about {share:.0f}% of the "
                f"machine's CPU during it ({others:.0f} of {wall * cores:.0f} CPU-seconds), so the "
                "figures are noisier than on an idle machine")
    return f"the machine was otherwise quiet (other processes used about {share:.0f}% of its CPU)"


def header(meta):
    return [
        f"- date: {meta['date']}; machine: {machine(meta)}; host {meta['host']}",
        f"- sitefs {meta['sitefs']}, Python {meta['python']}, pip {meta['pip']}, uv {meta['uv']}; "
        f"{meta['wheels']} pinned wheels",
        f"- medians of N = {meta['n']} runs (ingest, pip and uv `--compile-bytecode`: {meta['slow_n']}), "
        "min–max in brackets; sitefs and baseline runs interleaved",
        "- times are wall times; `sitefs store add` includes its own `syncfs`, while pip and uv leave "
        "dirty pages behind (benches/ingest.sh also times them with a `sync` after)",
        f"- work tree on a {meta['workfs']}; page cache: {meta['cgroup']} of a memory cgroup holding the "
        "imports (and the sitefs daemons), after `drop_caches` (`pagecache_meminfo` in raw.tsv: the "
        "machine-wide `Cached:` delta)",
        f"- whole run: {float(meta['wall_s']) / 60:.1f} min; {load_note(meta)}",
    ]


def plot(bars, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, ratios, words = (list(col)[::-1] for col in zip(*bars))
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(bars) + 1.5))
    colors = ["tab:green" if r >= 1 else "tab:red" for r in ratios]
    ax.barh(range(len(bars)), ratios, color=colors)
    ax.set_xscale("log")
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_yticks(range(len(bars)), labels, fontsize=7)
    for i, (r, w) in enumerate(zip(ratios, words)):
        ax.text(r, i, f" {w}", va="center", fontsize=7)
    ax.set_xlabel("baseline / sitefs (log scale; right of 1 = sitefs is faster or smaller)")
    ax.set_title(f"sitefs vs uv and pip, {meta['date']}\n{machine(meta)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")


def update_readme(readme, result, meta, table):
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"error: {readme} has no {BEGIN} ... {END} block; add the two markers where the table goes")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    rel = os.path.relpath(result, readme.parent)
    block = [
        BEGIN,
        f"Latest `sudo benches/compare.sh` run, {meta['date']}, on {machine(meta)}; "
        f"medians of {meta['n']} runs ({meta['slow_n']} for the slow ones), {load_note(meta)}. "
        f"Raw samples and plot: `{rel}/`.",
        "",
        *table,
        END,
    ]
    readme.write_text(head + "\n".join(block) + tail)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("result", type=Path)
    ap.add_argument("--readme", type=Path)
    args = ap.parse_args()
    result = args.result.resolve()
    samples, meta = load(result)
    table, bars = build(samples, meta)
    title = f"# sitefs compared with uv and pip ({meta['date']})"
    (result / "table.md").write_text("\n".join([title, "", *header(meta), "", *table, ""]))
    plot(bars, meta, result / "plot.png")
    if args.readme:
        update_readme(args.readme.resolve(), result, meta, table)


if __name__ == "__main__":
    main()
