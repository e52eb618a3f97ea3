"""What ``hacknip fit`` reports: rows used and skipped, the inner-CV estimate, and its plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: How many skipped rows the report lists (all of them go to ``<model>.skipped.csv``).
REPORT_EXAMPLES = 10


@dataclass
class FitReport:
    """What ``hacknip fit`` did: rows used and skipped, inner-CV scores, files written, seconds."""

    predictor: object
    n_rows: int
    n_used: int
    skipped: list[tuple[str, str]]  #: (id, reason)
    scores: dict[str, float]  #: of the held-out inner-CV predictions (see :func:`held_out_scores`)
    n_scored: int
    files: dict[str, str]
    seconds: dict[str, float]
    notes: list[str]

    def text(self) -> str:
        p = self.predictor
        units = f" {p.units}" if p.units else ""
        lines = [f"model: {self.files['model']}",
                 f"rows: {self.n_rows} read, {self.n_used} used, {len(self.skipped)} skipped"]
        by_stage: dict[str, int] = {}
        for _, reason in self.skipped:
            stage = reason.split(":", 1)[0]
            by_stage[stage] = by_stage.get(stage, 0) + 1
        if self.skipped:
            lines.append("  skipped by stage: " + ", ".join(f"{s}: {n}" for s, n in sorted(by_stage.items())))
            lines += [f"  {i}: {r[:160]}" for i, r in self.skipped[:REPORT_EXAMPLES]]
            if "skipped" in self.files:
                lines.append(f"  all skipped rows: {self.files['skipped']}")
        sel = p.selection
        how = f"{sel['cv']}-fold CV" if sel["cv"] else f"one {sel['validation_fraction']:.0%} hold-out"
        lines.append(f"chosen depth(s): {p.metadata()['depths_label']} of {p.backbone_label} "
                     f"({len(sel['curve'])} candidates scored by {how} on the training rows, seed "
                     f"{sel['random_state']})")
        metric = ", ".join(f"{k} {v:.4g}{units if k in ('MAE', 'RMSE') else ''}" for k, v in self.scores.items())
        lines.append(f"inner-CV estimate ({self.n_scored} rows): {metric}")
        lines.append("  = out-of-fold predictions of the chosen configuration from the selection's own inner "
                     f"{how}: each row predicted by a head ({type(p.head).__name__}) fitted without it. The depth was "
                     "picked on these same folds, so this is slightly optimistic; it is not a test-set score.")
        if sel.get("tuning"):
            lines.append(f"  (before tuning; the saved head uses the tuned parameters {sel['tuning']['best_params']})")
        lines += self.notes
        lines.append("plots: " + ", ".join(v for k, v in self.files.items() if k in ("parity", "roc", "selection")))
        lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return "\n".join(lines)


def held_out_scores(y_true, y_pred, task: str) -> dict[str, float]:
    """MAE, RMSE, R^2 (regression) or ROC-AUC (classification, ``y_pred`` = P(class 1))."""
    from sklearn import metrics

    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if task == "classification":
        return {"ROC-AUC": float(metrics.roc_auc_score(y_true, y_pred)),
                "accuracy": float(metrics.accuracy_score(y_true, y_pred >= 0.5))}
    return {"MAE": float(metrics.mean_absolute_error(y_true, y_pred)),
            "RMSE": float(np.sqrt(metrics.mean_squared_error(y_true, y_pred))),
            "R^2": float(metrics.r2_score(y_true, y_pred))}


def plot_fit(predictor, y_true, y_pred, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    sel = predictor.selection
    units = f" ({predictor.units})" if predictor.units else ""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if predictor.task == "classification":
        from sklearn.metrics import roc_auc_score, roc_curve

        fpr, tpr, _ = roc_curve(y_true, y_pred)
        ax.plot(fpr, tpr, lw=1.5, label=f"ROC-AUC {roc_auc_score(y_true, y_pred):.3f}")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate")
        key = "roc"
    else:
        ax.scatter(y_true, y_pred, s=8, alpha=0.6)
        lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        mae = float(np.mean(np.abs(y_true - y_pred)))
        ax.set(xlabel=f"{predictor.target_name}{units}", ylabel=f"predicted{units}")
        ax.text(0.04, 0.96, f"MAE {mae:.3g}, n={len(y_true)}", transform=ax.transAxes, va="top")
        key = "parity"
    ax.set_title(f"inner-CV held-out, depth {predictor.metadata()['depths_label']}", fontsize=9)
    fig.tight_layout()
    files[key] = str(out.with_name(f"{out.stem}.{key}.png"))
    fig.savefig(files[key], dpi=120)
    plt.close(fig)

    curve = sel["curve"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    sign = -1.0 if sel["scoring"].startswith("neg_") else 1.0
    scores = [sign * c["score"] for c in curve]
    ax.errorbar(range(len(curve)), scores, yerr=[c["std"] for c in curve], marker="o", capsize=3)
    ax.set_xticks(range(len(curve)), [c["label"] for c in curve])
    name = sel["scoring"].removeprefix("neg_").replace("_", " ")
    ax.set(xlabel="depth", ylabel=f"inner-CV {name}{units if sign < 0 else ''}")
    ax.set_title("depth selection (training rows only)", fontsize=9)
    fig.tight_layout()
    files["selection"] = str(out.with_name(f"{out.stem}.selection.png"))
    fig.savefig(files["selection"], dpi=120)
    plt.close(fig)
    return files
