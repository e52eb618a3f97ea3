"""ASE calculator that returns a frozen NIP's layer-wise embeddings next to its energy."""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .backbones import DEFAULT_BACKBONE, Backbone, get_backbone
from .outputs import register_embedding_outputs

_FORCE_PROPERTIES = {"forces", "stress"}


class EmbeddingCalculator(Calculator):
    """Layer-wise NIP embeddings, the NIP's energy/forces/stress, and learned properties.

    Parameters
    ----------
    backbone : str or Backbone
        Registry name ("chgnet", "sevennet", "orb", "mace") or a built backbone.
    device : str
        Torch device used when ``backbone`` is a name.
    heads : dict, str or list, optional
        Property name -> saved predictor path (or loaded predictor); each adds a property
        computed from the same forward pass. ``"matbench"`` (or a list of names) attaches the
        pretrained heads shipped for this backbone (:mod:`hacknip_ase.pretrained`).
    physics : bool, str, list of str or PhysicsSettings, optional
        NIP-simulated physics (:mod:`hacknip_ase.physics`) as properties: True (all), a list of
        property names (:data:`~hacknip_ase.physics.PHYSICS_OUTPUTS`: e.g. "bulk_modulus_vrh"
        GPa, "elastic_tensor" (6, 6) GPa, "gamma_max_frequency" cm^-1,
        "formation_energy_per_atom" eV/atom), or a :class:`~hacknip_ase.physics.PhysicsSettings`.
        They are computed only when one of them is asked for (one strained/displaced batch per
        structure, seconds, not milliseconds).
    cache_dir : path, optional
        Root of the cache of the NIP's elemental reference energies (formation energy);
        default ``cache_dir()/physics``.
    **backbone_options
        Passed to the backbone adapter (``model=``, ``weights=``, ``expand_supercell=`` ...).

    Notes
    -----
    ``embeddings`` has shape (n_depths, dim): mean-pooled features after each depth
    (depth 0 = embedding layer). ``node_embeddings`` has shape (n_atoms, n_depths, dim).
    ``stress`` is only given for fully periodic structures. Results are reused while the
    atoms do not change (ASE's ``check_state``), also through ``Atoms.get_properties``.

    Physics properties of a structure that is not fully periodic (stress, EOS, elastic tensor,
    phonons) are NaN, not an error, so that one ``get_properties`` call works for crystals and
    molecules alike; the reason of every NaN is in :attr:`physics_reasons` (property -> reason)
    after the calculation, and is also cleared when a calculation fails.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "embeddings", "node_embeddings"]

    def __init__(self, backbone: str | Backbone = DEFAULT_BACKBONE, *, device: str = "cpu",
                 heads: dict | str | list | None = None, physics=False, cache_dir=None,
                 **backbone_options) -> None:
        register_embedding_outputs()
        if isinstance(backbone, Backbone):
            self.backbone = get_backbone(backbone, **backbone_options)
        else:
            self.backbone = get_backbone(backbone, device=device, **backbone_options)
        self.heads = {}
        super().__init__()
        self.implemented_properties = list(type(self).implemented_properties)
        if isinstance(heads, str | list | tuple):
            from .pretrained import pretrained_heads

            heads = pretrained_heads(self.backbone.name, heads if isinstance(heads, str) else list(heads))
        for name, head in (heads or {}).items():
            self.add_head(name, head)
        self.physics_settings = None
        self.physics_reasons: dict[str, str] = {}
        self._physics_outputs: list[str] = []
        self._references = None
        if physics is not False and physics is not None:
            self._enable_physics(physics, cache_dir)

    def _enable_physics(self, physics, cache_dir) -> None:
        from .physics import PHYSICS_OUTPUTS, PhysicsSettings, elemental_references, outputs_for, register_physics_outputs

        if isinstance(physics, PhysicsSettings):
            settings = physics
        elif physics is True:
            settings = PhysicsSettings()
        else:
            names = [physics] if isinstance(physics, str) else list(physics)
            settings = PhysicsSettings(quantities=outputs_for(names))
        register_physics_outputs()
        self.physics_settings = settings
        self._physics_outputs = [name for name in PHYSICS_OUTPUTS if name in outputs_for(settings.quantities, names=True)]
        self.implemented_properties += [name for name in self._physics_outputs if name not in self.implemented_properties]
        if "formation" in settings.quantities:
            self._references = elemental_references(self.backbone, settings, cache_dir)

    def add_head(self, name: str, predictor) -> None:
        """Attach a trained predictor (object or file path) as the property ``name``."""
        from .heads.predictor import load_predictor  # heads are optional for embeddings

        if not hasattr(predictor, "predict_embeddings"):
            predictor = load_predictor(predictor)
        predictor.check_backbone(self.backbone.info)
        for prop in predictor.register_outputs(name):
            if prop not in self.implemented_properties:
                self.implemented_properties.append(prop)
        self.heads[name] = predictor
        self.reset()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        # Atoms.get_properties passes all_changes every time; reuse what is still valid.
        if atoms is not None and self.atoms is not None and not self.check_state(atoms) \
                and all(name in self.results for name in properties):
            return
        # A failed pass must not leave the previous structure's results behind: the base class
        # has already taken the new atoms, so stale results would be served for them.
        self.results = {}
        self.physics_reasons = {}
        super().calculate(atoms, properties, system_changes)
        if "stress" in properties and not self.atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a fully periodic structure")
        need_forces = bool(_FORCE_PROPERTIES & set(properties))
        output = self.backbone.forward([self.atoms], forces=need_forces)
        nodes = output.node_features[0]
        embeddings = output.embeddings()
        results = {
            "energy": float(output.energy[0]),
            "free_energy": float(output.energy[0]),
            "embeddings": embeddings[0].astype(float),
            "node_embeddings": nodes.astype(float),
        }
        if need_forces:
            results["forces"] = output.forces[0]
            if output.stress[0] is not None:
                results["stress"] = output.stress[0]
        for name, predictor in self.heads.items():
            results.update(predictor.predict_properties(name, embeddings, periodic=bool(self.atoms.pbc.all()),
                                                        atoms=self.atoms, backbone=self.backbone))
        if set(properties) & set(self._physics_outputs):
            results.update(self._physics())
        self.results = results

    def _physics(self) -> dict:
        """All enabled physics outputs of ``self.atoms``; reasons of the NaN ones in ``physics_reasons``."""
        from .physics import PHYSICS_COLUMNS, compute_physics

        result = compute_physics([self.atoms], self.backbone, self.physics_settings, self._references)[0]
        values = result.as_dict()
        values["elastic_tensor"] = result.elastic_tensor if result.elastic_tensor is not None else np.full((6, 6), np.nan)
        reasons = dict(zip(PHYSICS_COLUMNS, result.reasons, strict=True))
        reasons["elastic_tensor"] = reasons["elastic_c11"]
        out = {name: values[name] for name in self._physics_outputs}
        self.physics_reasons = {name: reasons[name] for name in self._physics_outputs if reasons[name]}
        return out
