"""What a frozen-embedding row fits on every training part, beyond the head itself.

A :class:`Recipe` names the extra feature sources (``descriptors``: "composition"), the
feature-family candidates depth selection scores (``candidates``), the target transform (a name,
or "auto": chosen by inner CV) and the hyperparameter search (``tune_trials``,
``tune_cpu_budget``). All of it goes to :meth:`hacknip_ase.heads.Predictor.fit`, so every choice
is made on the training part only. The default recipe is the paper's protocol: one depth of one
backbone, no transform, default hyperparameters. A descriptor may also be another NIP
(multi-NIP): its embeddings, every depth, are one more source to select from.

:data:`PRESETS` are named pipelines run as if they were heads (``--head auto``); their result
file is ``<backbone>__<preset>.json``. A non-default recipe given option by option gets a file
stem that spells it out (:meth:`Recipe.label`), so it never overwrites the plain head's row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from hacknip_ase.backbones import available_backbones
from hacknip_ase.composition import NAME as COMPOSITION
from hacknip_ase.sources import NAMES as SOURCE_NAMES

#: what a recipe may add beside the run's embeddings: descriptor sources, or another NIP's
#: embeddings (multi-NIP: "chgnet" run with "sevennet" added)
DESCRIPTORS = (*SOURCE_NAMES, *available_backbones())
CANDIDATES = ("single", "concat", "multi", "all")


@dataclass(frozen=True)
class Recipe:
    head: str = "xgboost"  #: the estimator ("ridge", "xgboost", "mlp", "modnet")
    descriptors: tuple[str, ...] = ()  #: extra feature sources, e.g. ("composition",)
    candidates: str = "single"  #: DepthSelector candidates (see hacknip_ase.heads.selection)
    transform: str | None = None  #: None, a transform name, or "auto" (inner CV)
    tune_trials: int = 0  #: Optuna trials of the head's hyperparameters (0: defaults)
    tune_cpu_budget: float | None = None  #: CPU seconds per training part for the search
    preset: str | None = field(default=None, compare=False)  #: the preset's name, if it is one

    def __post_init__(self):
        unknown = [d for d in self.descriptors if d not in DESCRIPTORS]
        if unknown:
            raise ValueError(f"unknown descriptor source(s) {unknown}; valid: {', '.join(DESCRIPTORS)}")
        if self.candidates not in CANDIDATES:
            raise ValueError(f"unknown candidates {self.candidates!r}; valid: {', '.join(CANDIDATES)}")

    @property
    def is_plain(self) -> bool:
        return replace(self, head="xgboost") == Recipe()

    def label(self) -> str:
        """The row's name (file stem part): the head, the preset, or head + what differs."""
        if self.preset:
            return self.preset
        if self.is_plain:
            return self.head
        parts = [self.head, *self.descriptors]
        if self.candidates != "single":
            parts.append(self.candidates)
        if self.transform:
            parts.append(f"t{self.transform}")
        if self.tune_trials:
            parts.append(f"tune{self.tune_trials}")
        return "-".join(parts)

    def fit_options(self) -> dict:
        """Keyword arguments of :meth:`Predictor.fit` this recipe sets."""
        return {"candidates": self.candidates, "transform": self.transform, "tune_trials": self.tune_trials,
                "tune_cpu_budget": self.tune_cpu_budget}

    def as_dict(self) -> dict:
        record = asdict(self)
        record["descriptors"] = list(self.descriptors)
        return record


#: hacknip-auto: every choice by inner CV on the training part: feature family (a depth, all
#: depths, composition alone, a depth + composition, everything), target transform (none /
#: log10 / log1p), then XGBoost's hyperparameters (10 TPE trials, the first the defaults, or 60
#: CPU-s per training part, whichever comes first: the budget that lets the six Matbench tasks
#: run in ~1.5 CPU-h on this 2-core machine; a 240 CPU-s search found nothing better than the
#: defaults on jdft2d fold 0 in 7 trials).
PRESETS = {
    "auto": Recipe(head="xgboost", descriptors=(COMPOSITION,), candidates="all", transform="auto", tune_trials=10,
                   tune_cpu_budget=60.0, preset="auto"),
}


def recipe_for(head: str, **options) -> Recipe:
    """The recipe of ``head`` (a head name or a preset) with ``options`` (None values ignored) applied.

    A preset takes extra feature sources only (its other choices are its own): ``auto`` with
    ``descriptors=("physics-phonons",)`` is the preset ``auto-physics-phonons``, whose inner CV
    also scores those sources alone and beside the embeddings.
    """
    options = {k: v for k, v in options.items() if v is not None and v != ()}
    if head in PRESETS:
        preset = PRESETS[head]
        extra = tuple(d for d in options.pop("descriptors", ()) if d not in preset.descriptors)
        if options:
            raise ValueError(f"the preset {head!r} fixes its own options; drop {', '.join(sorted(options))}")
        if not extra:
            return preset
        return replace(preset, descriptors=preset.descriptors + extra, preset="-".join([preset.preset, *extra]))
    if "descriptors" in options:
        options["descriptors"] = tuple(options["descriptors"])
    return Recipe(head=head, **options)
