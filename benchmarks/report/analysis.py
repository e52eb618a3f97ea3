"""Which depth of a NIP is most informative: the paper's depth analysis for our backbones.

``hacknip-bench analyze depth`` writes ``leaderboard/analysis/README.md`` and its figures:

* **nMAE heatmap** (HackNIP eq. 4): for every task and depth, the inner-CV error of that depth
  (training data only: the selection curves recorded in each fold of the XGBoost result files,
  fixed default hyperparameters), averaged over the outer folds and min-max normalized per task,
  ``nMAE_{t,L} = (E_{t,L} - min_L E_{t,L}) / (max_L E_{t,L} - min_L E_{t,L})``. E is the MAE for
  regression and 1 - ROC-AUC for classification, so 0 is the best depth of a task and 1 the worst.
* **UMAP** (umap-learn, ``random_state`` fixed) of the pooled embeddings of each Matbench task at
  its best depth L* (the depth chosen most often over the folds) and at the last depth,
  coloured by the target; a seeded random subset of at most ``umap_max`` structures.
* **JSD** (eq. 5) between the distributions of per-atom features at consecutive depths and
  between each depth and the last. Estimator: per channel, histograms of the per-atom values of
  the two depths on common bins (``bins`` equal bins over the pooled range of that channel),
  Jensen-Shannon divergence in bits (0 for identical distributions, 1 for disjoint ones),
  averaged over the channels. Channels are comparable across depths because CHGNet's and
  SevenNet's node updates are residual. Per-atom features come from one forward pass over a
  seeded subset of ``jsd_structures`` structures per task.
* **Collapse** of a depth's pooled embeddings: the participation ratio of the covariance
  spectrum, ``PR = (sum lambda)^2 / sum lambda^2`` (the effective number of dimensions), and the
  variance share of the first two principal components, at L* and at the last depth.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

#: The head whose selection curves are compared across tasks (fixed default hyperparameters).
ANALYSIS_HEAD = "xgboost"
MOLECULE_FAMILIES = ("moleculenet", "electrolytes")
SEED = 0


# -- the measures ---------------------------------------------------------------------------
def normalized_errors(errors: Sequence[float]) -> np.ndarray:
    """Min-max normalized errors of one task over its depths (eq. 4); all equal -> zeros."""
    errors = np.asarray(errors, dtype=float)
    span = errors.max() - errors.min()
    return np.zeros_like(errors) if span == 0 else (errors - errors.min()) / span


def jensen_shannon(p, q) -> float:
    """JSD in bits between two histograms (normalized here); 0 if identical, 1 if disjoint."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a):
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def feature_jsd(a: np.ndarray, b: np.ndarray, bins: int = 50) -> float:
    """Mean over channels of the JSD between per-atom values ``a`` and ``b`` ((n_atoms, dim) each)."""
    values = []
    for channel in range(a.shape[1]):
        x, y = a[:, channel], b[:, channel]
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        if high == low:
            values.append(0.0)  # one constant value at both depths
            continue
        edges = np.linspace(low, high, bins + 1)
        values.append(jensen_shannon(np.histogram(x, edges)[0] + 0.0, np.histogram(y, edges)[0] + 0.0))
    return float(np.mean(values))


def collapse(embeddings: np.ndarray) -> dict:
    """Participation ratio of the covariance spectrum and the variance share of the first 2 PCs."""
    centred = embeddings - embeddings.mean(axis=0)
    eigenvalues = np.clip(np.linalg.eigvalsh(np.cov(centred, rowvar=False)), 0, None)[::-1]
    total = eigenvalues.sum()
    if total == 0:
        return {"participation_ratio": 0.0, "top2_variance": 1.0}
    return {"participation_ratio": float(total ** 2 / np.sum(eigenvalues ** 2)),
            "top2_variance": float(eigenvalues[:2].sum() / total)}


# -- from result files ----------------------------------------------------------------------
def depth_errors(record: Mapping) -> np.ndarray | None:
    """Inner-CV error per depth, mean over the outer folds (None if the curves are not per depth)."""
    classification = record["task"]["task_type"] == "classification"
    per_fold = []
    for fold in record["folds"]:
        curve = fold.get("selection_curve") or []
        if curve and isinstance(curve[0], list):  # multi-label: one curve per label, averaged
            curve = [{"candidate": c[0]["candidate"], "score": float(np.mean([x["score"] for x in c]))}
                     for c in zip(*curve, strict=True)]
        scores = {tuple(map(tuple, c["candidate"])): c["score"] for c in curve}
        if not scores or any(len(k) != 1 for k in scores):
            return None
        depths = sorted(k[0][1] for k in scores)
        per_fold.append([(1 - scores[((0, d),)]) if classification else -scores[((0, d),)] for d in depths])
    return np.mean(per_fold, axis=0) if per_fold else None


def best_depth(record: Mapping) -> int:
    """The depth chosen most often over the folds (ties: the shallower)."""
    chosen = Counter()
    for fold in record["folds"]:
        depths = fold["best_depths"]
        for d in (depths if isinstance(depths[0], int) else [x for label in depths for x in label]):
            chosen[int(d)] += 1
    return min(chosen, key=lambda d: (-chosen[d], d))


def collect(results_dir) -> dict:
    """{backbone: {task: record}} of the analysis head's complete results with NIP embeddings
    (not the composition or physics baselines: they have no depths)."""
    from hacknip_ase.backbones import available_backbones

    from ..harness.results import iter_results

    nips = set(available_backbones())
    found: dict = defaultdict(dict)
    for _, record in iter_results(results_dir):
        model = record.get("model", {})
        if (model.get("kind") == "frozen" and model.get("head") == ANALYSIS_HEAD and record.get("status") == "complete"
                and model.get("backbone", {}).get("name") in nips):
            found[model["backbone"]["name"]][record["task"]["name"]] = record
    return dict(found)


# -- the report -----------------------------------------------------------------------------
def analyze_depth(results_dir="leaderboard/results", out_dir="leaderboard/analysis", *, data_dir=None,
                  backbones: Sequence[str] | None = None, umap_max: int = 2000, jsd_structures: int = 150,
                  bins: int = 50, sensitivity_bins: Sequence[int] = (20, 50, 100), cache_dir=None,
                  progress: bool = True) -> dict:
    """Compute every figure and table and write ``out_dir/README.md``; returns the numbers."""
    start, cpu_start = time.perf_counter(), time.process_time()
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    records = collect(results_dir)
    if backbones:
        records = {b: r for b, r in records.items() if b in backbones}
    summary: dict = {"backbones": {}, "bins": bins, "umap_max": umap_max, "jsd_structures": jsd_structures}
    for backbone, by_task in sorted(records.items()):
        tasks = sorted(by_task, key=lambda t: (by_task[t]["task"]["family"] in MOLECULE_FAMILIES, t))
        curves = {t: depth_errors(by_task[t]) for t in tasks}
        curves = {t: c for t, c in curves.items() if c is not None}
        entry = {"nmae": {t: normalized_errors(c).tolist() for t, c in curves.items()},
                 "best_depth": {t: best_depth(by_task[t]) for t in tasks},
                 "n_depths": int(by_task[tasks[0]]["model"]["backbone"]["n_depths"]),
                 "family": {t: by_task[t]["task"]["family"] for t in tasks}}
        entry["heatmap"] = _plot_heatmap(backbone, entry, out / "figures" / f"nmae_{backbone}.png")
        entry.update(_embedding_analysis(backbone, by_task, entry, out, data_dir=data_dir, umap_max=umap_max,
                                         jsd_structures=jsd_structures, bins=bins, sensitivity_bins=sensitivity_bins,
                                         cache_dir=cache_dir, progress=progress))
        summary["backbones"][backbone] = entry
    summary["seconds"] = {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu_start}
    (out / "depth_analysis.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "README.md").write_text("\n".join(render(summary, out)) + "\n")
    return summary


def _sample(n: int, limit: int) -> np.ndarray:
    return np.sort(np.random.default_rng(SEED).permutation(n)[:limit])


def _embedding_analysis(backbone, by_task, entry, out: Path, *, data_dir, umap_max, jsd_structures, bins,
                        sensitivity_bins, cache_dir, progress) -> dict:
    """UMAP and collapse (Matbench tasks), JSD across depths (every task with structures)."""
    from hacknip_ase import featurize, get_backbone

    from ..harness.run import load_task
    from ..tasks import get_task

    nip = get_backbone(backbone)
    umaps, collapses, jsd, sensitivity = {}, {}, {}, {}
    for name, record in by_task.items():
        task = get_task(name)
        if not task.is_present(data_dir):
            continue
        options = {"relax": record["task"].get("relaxation", {}).get("recipe", "forcefield")}
        data = load_task(task, nip, data_dir=data_dir, progress=progress, **options)
        if data.inputs and isinstance(data.inputs[0], Mapping):  # mixtures: take the molecules
            inputs = [data.molecules[m] for m in sorted(data.molecules)]
            targets = None
        else:
            inputs, targets = data.inputs, np.asarray(data.targets, dtype=float)
        last, best = entry["n_depths"] - 1, entry["best_depth"][name]
        if task.family == "matbench":
            rows = _sample(len(inputs), umap_max)
            X = featurize([inputs[i] for i in rows], nip, cache_dir=cache_dir, progress=progress,
                          on_error="skip", ids=[str(i) for i in rows])
            kept = np.array([int(i) for i in X.ids])
            collapses[name] = {"best": collapse(X.embeddings[:, best]), "last": collapse(X.embeddings[:, last])}
            umaps[name] = _plot_umap(backbone, name, X.embeddings, targets[kept], best, last,
                                     out / "figures" / f"umap_{backbone}_{name}.png")
        rows = _sample(len(inputs), jsd_structures)
        nodes = _node_features(nip, [inputs[i] for i in rows])
        jsd[name] = {"consecutive": [feature_jsd(nodes[:, d], nodes[:, d + 1], bins) for d in range(last)],
                     "to_last": [feature_jsd(nodes[:, d], nodes[:, last], bins) for d in range(last + 1)]}
        if not sensitivity and task.family == "matbench":  # the estimator's bin count, on one task
            sensitivity = {"task": name, "bins": {str(b): [feature_jsd(nodes[:, d], nodes[:, d + 1], b)
                                                           for d in range(last)] for b in sensitivity_bins}}
    figure = _plot_jsd(backbone, jsd, out / "figures" / f"jsd_{backbone}.png") if jsd else None
    return {"umap": umaps, "collapse": collapses, "jsd": jsd, "jsd_sensitivity": sensitivity, "jsd_figure": figure}


def _node_features(nip, structures, batch: int = 16) -> np.ndarray:
    """Per-atom features of every depth, stacked over structures: (n_atoms_total, n_depths, dim)."""
    from hacknip_ase.errors import InvalidStructureError

    chunks = []
    for begin in range(0, len(structures), batch):
        try:
            chunks += nip.forward(structures[begin: begin + batch]).node_features
        except InvalidStructureError:  # one bad structure: the others of the batch still count
            for s in structures[begin: begin + batch]:
                try:
                    chunks += nip.forward([s]).node_features
                except InvalidStructureError:
                    continue
    return np.concatenate(chunks)


# -- figures --------------------------------------------------------------------------------
def _plot_heatmap(backbone: str, entry: dict, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(entry["nmae"])
    grid = np.array([entry["nmae"][t] for t in tasks])
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * grid.shape[1], 0.8 + 0.38 * len(tasks)))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [str(d) for d in range(grid.shape[1])])
    ax.set_yticks(range(len(tasks)), [f"{t}{' (mol)' if entry['family'][t] in MOLECULE_FAMILIES else ''}"
                                      for t in tasks])
    for i, t in enumerate(tasks):
        ax.scatter([entry["best_depth"][t]], [i], marker="*", color="white", s=60)
    ax.set_xlabel("depth (0 = embedding layer)")
    ax.set_title(f"{backbone}: inner-CV nMAE per depth (eq. 4); * = depth chosen most often")
    fig.colorbar(image, ax=ax, label="nMAE (0 best, 1 worst)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _plot_umap(backbone, task, embeddings, targets, best, last, path: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        import umap
    except ImportError:
        from hacknip_ase.errors import HackNIPError

        raise HackNIPError("the UMAP projections need umap-learn: pip install 'hacknip-ase[analysis]'") from None
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    shown = {}
    for ax, (label, depth) in zip(axes, (("L*", best), ("last", last)), strict=True):
        points = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=SEED).fit_transform(embeddings[:, depth])
        scatter = ax.scatter(points[:, 0], points[:, 1], c=targets, s=3, cmap="plasma")
        ax.set_title(f"{label} = depth {depth}")
        ax.set_xticks([])
        ax.set_yticks([])
        shown[label] = depth
    fig.colorbar(scatter, ax=axes, label="target")
    fig.suptitle(f"{backbone}, {task}: UMAP of pooled embeddings ({len(embeddings)} structures)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"figure": path.name, "n": int(len(embeddings)), **shown}


def _plot_jsd(backbone: str, jsd: dict, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for task, values in sorted(jsd.items()):
        axes[0].plot(range(1, len(values["consecutive"]) + 1), values["consecutive"], marker="o", label=task)
        axes[1].plot(range(len(values["to_last"])), values["to_last"], marker="o", label=task)
    axes[0].set_xlabel("depth L (JSD between L-1 and L)")
    axes[1].set_xlabel("depth L (JSD between L and the last depth)")
    for ax in axes:
        ax.set_ylabel("mean per-channel JSD (bits)")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{backbone}: Jensen-Shannon divergence of per-atom features across depths")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


# -- text -----------------------------------------------------------------------------------
def render(summary: Mapping, out: Path) -> list[str]:
    from tabulate import tabulate

    lines = ["# Depth analysis: which layer of a NIP describes a material best", "",
             "Generated by `hacknip-bench analyze depth` from the result files and the feature cache "
             f"(no new embeddings where cached); {summary['seconds']['wall']:.0f} s wall, "
             f"{summary['seconds']['cpu']:.0f} s CPU. Methods: the docstring of `benchmarks/report/analysis.py`. "
             "The nMAE values come from inner-CV selection curves on training data (XGBoost, fixed "
             "hyperparameters), averaged over the outer folds; classification tasks use 1 - ROC-AUC.", ""]
    for backbone, entry in summary["backbones"].items():
        last = entry["n_depths"] - 1
        crystals = [d for t, d in entry["best_depth"].items() if entry["family"][t] not in MOLECULE_FAMILIES]
        molecules = [d for t, d in entry["best_depth"].items() if entry["family"][t] in MOLECULE_FAMILIES]
        lines += [f"## {backbone} (depths 0-{last})", "", f"![nMAE {backbone}](figures/{entry['heatmap']})", ""]
        rows = [[t, entry["family"][t], entry["best_depth"][t], " ".join(f"{v:.2f}" for v in entry["nmae"].get(t, []))]
                for t in entry["best_depth"]]
        lines += [tabulate(rows, headers=["task", "family", "L* (most chosen)", "nMAE by depth 0..last"],
                           tablefmt="github"), ""]
        lines += [f"Median L*: crystals {_median(crystals)} (n={len(crystals)}), molecules {_median(molecules)} "
                  f"(n={len(molecules)}); the last depth is {last}.", ""]
        if entry["collapse"]:
            rows = [[t, c["best"]["participation_ratio"], c["last"]["participation_ratio"], c["best"]["top2_variance"],
                     c["last"]["top2_variance"]] for t, c in entry["collapse"].items()]
            lines += ["Collapse of the pooled embeddings (participation ratio: effective dimensions; top-2: variance "
                      "share of the first two principal components):", "",
                      tabulate(rows, headers=["task", "PR at L*", "PR at last", "top-2 at L*", "top-2 at last"],
                               tablefmt="github", floatfmt=".3g"), ""]
        if entry["umap"]:
            lines += [" ".join(f"![umap {t}](figures/{u['figure']})" for t, u in entry["umap"].items()), ""]
        if entry["jsd"]:
            lines += [f"![jsd {backbone}](figures/{entry['jsd_figure']})", ""]
            sens = entry["jsd_sensitivity"]
            if sens:
                rows = [[b, " ".join(f"{v:.3f}" for v in values)] for b, values in sens["bins"].items()]
                lines += [f"JSD estimator sensitivity on {sens['task']} (consecutive depths, by histogram bins):", "",
                          tabulate(rows, headers=["bins", "JSD(L-1, L) for L = 1..last"], tablefmt="github"), ""]
    lines += _verdict(summary)
    return lines


def _median(values) -> str:
    return f"{np.median(values):g}" if values else "-"


def _verdict(summary: Mapping) -> list[str]:
    """Plain statements against the paper's ORB findings (shallow for crystals, deep for molecules)."""
    lines = ["## Against the paper's ORB findings", ""]
    for backbone, entry in summary["backbones"].items():
        last = entry["n_depths"] - 1
        crystal = [d for t, d in entry["best_depth"].items() if entry["family"][t] not in MOLECULE_FAMILIES]
        molecule = [d for t, d in entry["best_depth"].items() if entry["family"][t] in MOLECULE_FAMILIES]
        if crystal:
            shallow = np.median(crystal) < last
            lines.append(f"- {backbone}, crystals: median L* {np.median(crystal):g} of {last}: "
                         + ("shallower than the last layer, as the paper found for ORB." if shallow else
                            "the last layer, unlike the paper's ORB (shallow layers best)."))
        if molecule:
            deep = np.median(molecule) >= (np.median(crystal) if crystal else 0)
            lines.append(f"- {backbone}, molecules: median L* {np.median(molecule):g} of {last}: "
                         + ("at least as deep as for crystals, as the paper found." if deep else
                            "shallower than for crystals, unlike the paper."))
        collapsed = [t for t, c in entry["collapse"].items()
                     if c["last"]["participation_ratio"] < c["best"]["participation_ratio"]]
        if entry["collapse"]:
            lines.append(f"- {backbone}: the last depth has fewer effective dimensions than L* on {len(collapsed)} of "
                         f"{len(entry['collapse'])} Matbench tasks ({', '.join(collapsed) or 'none'}).")
    return lines + [""]
