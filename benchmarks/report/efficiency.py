"""The data-efficiency study's figures and text (the study itself: :mod:`benchmarks.harness.efficiency`).

:func:`make_figures` draws MAE against training size (log x, mean +- std over subsets) with the
crossover, and the per-neuron update-ratio distributions (HackNIP eq. 2-3) of the fine-tuned
backbone and its head at a small and at the largest fraction run; :func:`format_report` prints
the study as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..harness.config import DEFAULT_RESULTS_DIR
from ..harness.efficiency import FINETUNE, summarize_study
from ..harness.subsets import fraction_label

FIGURES_DIR = Path("leaderboard") / "figures"


def make_figures(task_name: str, backbone: str = "chgnet", *, results_dir=DEFAULT_RESULTS_DIR,
                 figures_dir=FIGURES_DIR) -> dict:
    """Draw the MAE-vs-size and update-ratio figures of a task's study; returns the report."""
    report = summarize_study(task_name, backbone, results_dir=results_dir)
    points, found = report["points"], report.pop("found")
    if not points:
        return report
    figures_dir = Path(figures_dir)
    report["figures"]["mae_vs_size"] = str(_plot_curves(task_name, backbone, points, report["crossover"],
                                                        figures_dir / f"efficiency_{task_name}_{backbone}.png"))
    ratios = found.get(FINETUNE, {})
    if ratios:
        report["figures"]["update_ratios"] = str(_plot_ratios(task_name, backbone, ratios,
                                                              figures_dir / f"update_ratios_{task_name}_{backbone}.png"))
        report["ratio_fractions"] = ratio_fractions(ratios)
    return report


def ratio_fractions(by_fraction: Mapping[float, list]) -> list[float]:
    """The fractions whose update ratios are compared: 1 % and 100 %, else the smallest and largest run."""
    have = sorted(f for f, rs in by_fraction.items() if rs)
    if 0.01 in have and 1.0 in have:
        return [0.01, 1.0]
    return sorted({have[0], have[-1]})


def _plot_curves(task, backbone, points, cross, path) -> Path:
    from .figures import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for approach, by_f in points.items():
        fr = sorted(by_f)
        x = [by_f[f]["n_train"] for f in fr]
        y = np.array([by_f[f]["mean"] for f in fr])
        e = np.array([by_f[f]["std"] for f in fr])
        label = f"{backbone} fine-tuned" if approach == FINETUNE else f"{backbone} frozen + {approach.split('_', 1)[1]}"
        ax.errorbar(x, y, yerr=e, marker="o", ms=4, capsize=3, lw=1.4, label=label)
    if cross.get("n_train"):
        ax.axvline(cross["n_train"], color="0.5", ls="--", lw=1)
    n_test = sorted({n for by_f in points.values() for p in by_f.values() for n in p["n_test"]})
    folds = sorted({f for by_f in points.values() for p in by_f.values() for f in p["folds"]})
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    sizes = sorted({round(p["n_train"]) for by_f in points.values() for p in by_f.values()})
    ax.set_xticks(sizes)  # ticks at the training sizes run, as plain counts
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training structures (random subset of the training fold)")
    ax.set_ylabel("test MAE (mean ± std over subsets)")
    ax.set_title(f"{task}: data efficiency ({', '.join(folds)}; {'/'.join(map(str, n_test))} test rows)\n"
                 f"{cross['text']}", fontsize=7)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _plot_ratios(task, backbone, by_fraction, path) -> Path:
    """Histograms of log10 per-neuron update ratios: backbone and head, per compared fraction."""
    from .figures import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, part in zip(axes, ("backbone", "head"), strict=True):
        for fraction in ratio_fractions(by_fraction):
            values = np.concatenate([np.asarray(f["update_ratios"][part]["values"], dtype=float)
                                     for r in by_fraction[fraction] for f in r["folds"]] or [np.zeros(0)])
            values = values[values > 0]
            if values.size == 0:
                continue
            n_train = np.mean([f["n_train"] for r in by_fraction[fraction] for f in r["folds"]])
            ax.hist(np.log10(values), bins=50, density=True, histtype="step", lw=1.4,
                    label=f"fraction {fraction_label(fraction)} (n≈{n_train:.0f}); median {np.median(values):.2g}")
        ax.set_xlabel("log10 per-neuron update ratio ||Δw_i|| / ||w_i||")
        ax.set_ylabel("density")
        ax.set_title(f"{'fine-tuned ' + backbone + ' backbone' if part == 'backbone' else 'fine-tuning head (MLP)'}",
                     fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(f"{task}: update ratios from initial to kept weights (HackNIP eq. 2-3)", fontsize=9)
    return _save(fig, path)


def format_report(report: Mapping) -> str:
    """The study as text: one line per approach and fraction, then the crossover."""
    lines = [f"{report['task']} ({report['backbone']}): MAE by training fraction"]
    for approach, by_f in report["points"].items():
        for fraction, p in by_f.items():
            lines.append(f"  {approach:16s} f={fraction_label(fraction):6s} n_train≈{p['n_train']:7.0f}  "
                         f"MAE {p['mean']:.4g} ± {p['std']:.2g} ({p['n_subsets']} subsets, {','.join(p['folds'])}, "
                         f"{'/'.join(map(str, p['n_test']))} test rows)  {p['seconds_per_fold']:.0f} s per fold")
    lines.append(f"  crossover: {report['crossover']['text']}")
    for name, path in report.get("figures", {}).items():
        lines.append(f"  figure {name}: {path}")
    return "\n".join(lines)
