"""One batch of structures through the simulator: every strained, displaced or relaxed copy they
need in shared forward passes, then each structure's descriptors filled from the results."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from ase import Atoms, units

from ..errors import InvalidStructureError
from .elastic import elastic_tensor, strained, voigt_strain, vrh_moduli
from .eos import fit_eos
from .phonons import (
    displacement_plan,
    force_constants,
    frequencies_from_force_constants,
    phonon_repeats,
    spectrum_summary,
)
from .records import CIJ_POSITIONS, PhysicsResult, PhysicsSettings, columns_of
from .references import ElementalReferences
from .simulator import Request, Runner, relax


def compute_physics(structures: Sequence[Atoms], source, settings: PhysicsSettings | None = None,
                    references: ElementalReferences | None = None, runner: Runner | None = None) -> list[PhysicsResult]:
    """Physics descriptors of a few structures, all their copies batched through ``source``.

    ``references`` is needed for "formation" (else that column is NaN, "no elemental reference").
    A structure the simulator rejects gets all columns NaN ("rejected by the backbone").
    """
    settings = settings or PhysicsSettings()
    runner = runner or Runner(source, settings.max_batch_atoms, settings.max_force_batch_atoms)
    wanted = set(settings.quantities)
    results = [PhysicsResult.empty() for _ in structures]
    atoms_list = [plain_atoms(a) for a in structures]
    periodic = [bool(a.pbc.all()) for a in atoms_list]
    needs_stress = bool(wanted & {"elastic"}) or settings.relax
    base = [Request(i, "base", a, stress=needs_stress and periodic[i]) for i, a in enumerate(atoms_list)]
    rejected = runner.run(base)

    if settings.relax:
        start = time.process_time()
        for i, atoms in enumerate(atoms_list):
            if i in rejected or not periodic[i]:
                continue
            try:
                relaxed, converged, steps = relax(atoms, source, fmax=settings.relax_fmax, steps=settings.relax_steps)
            except InvalidStructureError as exc:  # e.g. atoms driven together: the backbone refuses the step
                results[i].details["relaxation"] = {"converged": False, "error": f"{type(exc).__name__}: {exc}"}
                continue
            results[i].details["relaxation"] = {"converged": converged, "steps": steps}
            atoms_list[i] = relaxed
            base[i] = Request(i, "base", relaxed, stress=True)  # every quantity then refers to the relaxed structure
        runner.cpu_seconds["relax"] = runner.cpu_seconds.get("relax", 0.0) + time.process_time() - start
        rejected |= runner.run([base[i] for i in range(len(base)) if "relaxation" in results[i].details])

    derived: list[Request] = []
    plans: dict[int, dict] = {}
    symmetry = getattr(source, "point_symmetry", None)  # an unknown simulator's Hessian gets no symmetry imposed
    for i, atoms in enumerate(atoms_list):
        if i in rejected or not periodic[i]:
            continue
        if settings.relax and not results[i].details["relaxation"]["converged"]:
            continue
        plan = plans.setdefault(i, {})
        if "eos" in wanted:
            plan["eos"] = [Request(i, "eos", strained(atoms, np.eye(3) * s)) for s in settings.eos_strains]
            derived += plan["eos"]
        if "elastic" in wanted:
            plan["elastic"] = [Request(i, "elastic", strained(atoms, voigt_strain(c, sign * settings.elastic_strain)),
                                       stress=True)
                               for c in range(6) for sign in (1.0, -1.0)]
            derived += plan["elastic"]
        if "phonon" in wanted:
            repeats = phonon_repeats(atoms, settings.phonon_min_length)
            n_super = len(atoms) * int(np.prod(repeats))
            details = results[i].details["phonon_supercell"] = {"repeats": list(repeats), "atoms": n_super}
            if n_super <= settings.phonon_max_atoms:
                displacements = displacement_plan(atoms, repeats, settings.phonon_symprec, symmetry)
                copies = displacements.displaced(settings.phonon_displacement)
                details["displaced_copies"] = len(copies)
                plan["phonon"] = (repeats, displacements, [Request(i, "phonon", c, forces=True) for c in copies])
                derived += plan["phonon"][2]
    rejected |= runner.run(derived)

    for i, result in enumerate(results):
        if i in rejected:
            results[i] = PhysicsResult.empty("rejected by the backbone")
            continue
        _fill_result(result, atoms_list[i], base[i], plans.get(i, {}), periodic[i], wanted, settings, references)
    return results


def plain_atoms(atoms) -> Atoms:
    from ..structures import as_atoms

    copy = as_atoms(atoms).copy()
    copy.calc = None
    return copy


def _fill_result(result: PhysicsResult, atoms: Atoms, base: Request, plan: dict, periodic: bool,
                 wanted: set, settings: PhysicsSettings, references) -> None:
    if settings.relax and periodic and not result.details["relaxation"]["converged"]:
        for quantity in wanted:  # the energies too: with relax=True they are the relaxed structure's
            result.fail(columns_of(quantity), "relaxation did not converge")
        return
    energy, _, stress = base.result
    n = len(atoms)
    if "energy" in wanted:
        result.set("energy_per_atom", energy / n)
    if "formation" in wanted:
        if references is None:
            result.fail("formation_energy_per_atom", "no elemental reference")
        else:
            mu = sum(references.energy(z) for z in atoms.numbers)
            result.set("formation_energy_per_atom", (energy - mu) / n)
            if not np.isfinite(mu):
                result.fail("formation_energy_per_atom", "no elemental reference")
    if not periodic:
        for quantity in ("eos", "elastic", "phonon"):
            if quantity in wanted:
                result.fail(columns_of(quantity), "not periodic: no stress or phonons")
        return
    if "eos" in wanted:
        volumes = [r.atoms.get_volume() for r in plan["eos"]]
        fit, reason = fit_eos(volumes, [r.result[0] for r in plan["eos"]], settings.eos)
        if reason:
            result.fail(columns_of("eos"), reason)
        else:
            result.set("eos_bulk_modulus", fit["bulk_modulus"])
            result.set("eos_bulk_modulus_derivative", fit["bprime"])
            result.set("eos_volume_per_atom", fit["v0"] / n)
            result.set("eos_volume_ratio", fit["v0"] / atoms.get_volume())
    if "elastic" in wanted:
        stresses = [r.result[2] for r in plan["elastic"]]
        if stress is None or any(s is None for s in stresses):
            result.fail(columns_of("elastic"), "not periodic: no stress or phonons")
        else:
            result.set("pressure", -float(np.mean(stress[:3])) / units.GPa)
            c = elastic_tensor(np.array(stresses[0::2]), np.array(stresses[1::2]), settings.elastic_strain)
            if not np.all(np.isfinite(c)):
                result.fail(columns_of("elastic"), "non-finite NIP output")
            else:
                result.elastic_tensor = c
                for name, (i, j) in CIJ_POSITIONS.items():
                    result.set(name, c[i, j])
                moduli = vrh_moduli(c)
                for name in ("bulk_modulus_voigt", "shear_modulus_voigt", "elastic_min_eigenvalue",
                             "bulk_modulus_reuss", "shear_modulus_reuss", "bulk_modulus_vrh", "shear_modulus_vrh"):
                    if name in moduli:
                        result.set(name, moduli[name])
                    else:
                        result.fail(name, "elastic tensor not positive definite")
    if "phonon" in wanted:
        if "phonon" not in plan:
            result.fail(columns_of("phonon"), "supercell over the atom cap")
        else:
            repeats, displacements, requests = plan["phonon"]
            forces = [r.result[1] for r in requests]
            if not all(np.all(np.isfinite(f)) for f in forces):
                result.fail(columns_of("phonon"), "non-finite NIP output")
                return
            matrix = force_constants(repeats, displacements.first_rows(forces, settings.phonon_displacement))
            result.frequencies = frequencies_from_force_constants(matrix, displacements.supercell.get_masses())
            summary, reason = spectrum_summary(result.frequencies, settings.imaginary_tol)
            if reason:
                result.fail(columns_of("phonon"), reason)
            for name, value in summary.items():
                result.set(name, value)
