"""Write RESULTS.md's generated tables from ``benchmarks/results.json`` (the output of ``run_all.py``).

Run: python benchmarks/render_results.py [--check]

The block between ``<!-- results.json: begin -->`` and ``<!-- results.json: end -->`` in
``benchmarks/RESULTS.md`` is replaced by ``render(results)``; ``--check`` only compares (exit 1
when they differ). ``tests/benchmarks/test_bench_results.py`` runs the same comparison in the fast tier.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- results.json: begin -->", "<!-- results.json: end -->"


def _value(fig: dict) -> str:
    v = fig["value"]
    if isinstance(v, bool) or isinstance(v, str):
        text = str(v)
    elif isinstance(v, float):
        text = f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    else:
        text = f"{v:,}"
    extra = []
    if "q25" in fig and "q75" in fig:
        extra.append(f"IQR {fig['q25']:.3g}–{fig['q75']:.3g}")
    if fig.get("sd") is not None:
        extra.append(f"sd {fig['sd']:.3g}")
    if "ahead" in fig:
        extra.append(f"ahead on {fig['ahead']}/{fig['seeds']} seeds, behind on {fig['behind']}")
    if "fraction_of_best" in fig:
        extra.append(f"{fig['fraction_of_best']:.1%} of the table's best")
    unit = f" {fig['unit']}" if fig.get("unit") else ""
    return text + unit + (f" ({'; '.join(extra)})" if extra else "")


def render(results: dict) -> str:
    """Markdown for every benchmark and figure in ``results`` (deterministic)."""
    m = results["machine"]
    lines = [
        f"Generated from `benchmarks/results.json`: run {results['date']}, commit "
        f"`{(results.get('commit') or 'unknown')[:12]}`{' (local changes)' if results.get('dirty') else ''}, "
        f"{m['cpu']}, {m['cores']} cores, {m.get('memory_gib')} GiB; load average (1/5/15 min) "
        f"{results['load_before']} before, {results['load_after']} after.",
        "",
    ]
    for bench in results["benchmarks"].values():
        status = "ok" if bench["exit_code"] == 0 else f"FAILED (exit {bench['exit_code']})"
        # A benchmark kept from an earlier run (run_all.py --merge) says which run it is from.
        shown = f" `{' '.join(bench['args'])}`" if bench.get("args") else ""
        earlier = (
            f", run {bench['date']} at `{(bench.get('commit') or 'unknown')[:12]}`" if "date" in bench else ""
        )
        lines += [
            f"### {bench['script']}{shown} — {status}{earlier}, {bench['seconds']} s, load {bench['load_before']} → {bench['load_after']}",
            "",
        ]
        anchors = sorted({f["anchor"] for f in bench["figures"] if f.get("anchor")})
        limits = sorted({f["limit"] for f in bench["figures"] if f.get("limit")})
        for a in anchors:
            lines.append(f"- anchor: {a}")
        for lim in limits:
            lines.append(f"- limit: {lim}")
        if anchors or limits:
            lines.append("")
        if not bench["figures"]:
            lines += ["(no figures recorded)", ""]
            continue
        lines += ["| figure | value |", "|---|---|"]
        for fig in bench["figures"]:
            lines.append(f"| {fig['label'].replace('|', '/')} | {_value(fig)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def generated_block(markdown: str) -> str | None:
    if BEGIN not in markdown or END not in markdown:
        return None
    return markdown.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(HERE / "results.json"))
    parser.add_argument("--markdown", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    rendered = render(json.loads(Path(args.results).read_text()))
    path = Path(args.markdown)
    text = path.read_text()
    if args.check:
        ok = generated_block(text) == rendered
        print("RESULTS.md matches results.json" if ok else "RESULTS.md differs from results.json")
        sys.exit(0 if ok else 1)
    if BEGIN not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n{rendered}{END}{tail}")
    print(f"wrote the generated tables of {path}")


if __name__ == "__main__":
    main()
