"""Bad input of every kind: a typed HackNIPError naming the cause; the CLIs print one line and exit 2.

Each row builds its own bad input (structures, files, options, predictor files, CLI arguments);
the message must name what is wrong (the ``match`` column).
"""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from hacknip_ase import errors, featurize, get_backbone
from hacknip_ase.featureset import FeatureSet
from hacknip_ase.heads import Predictor, load_predictor
from hacknip_ase.readers import read_structures

from .featurize_support import chgnet

REPO = Path(__file__).resolve().parents[1]


def _overlap():
    atoms = bulk("Si")
    atoms.positions[1] = atoms.positions[0] + [0.1, 0, 0]
    return atoms


def _americium():
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.numbers[:] = 95
    return atoms


def _structure(make):
    return lambda tmp: chgnet().embed([make()])


def _predictor(tmp: Path) -> Path:
    """A small real predictor file to damage (ridge on random embeddings, CHGNet's identity)."""
    rng = np.random.default_rng(0)
    predictor = Predictor.fit(rng.normal(size=(30, 5, 64)).astype(np.float32), rng.normal(size=30),
                              backbone=chgnet().info, head="ridge", depths=2, target_name="y")
    path = tmp / "ok.hnp"
    predictor.save(path)
    return path


def _rewrite(path: Path, out: Path, edit) -> Path:
    """Copy a predictor zip member by member, letting ``edit(name, data)`` change or drop (None) one."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = edit(name, source.read(name))
            if data is not None:
                target.writestr(name, data)
    return out


def _without_arrays(tmp):
    return load_predictor(_rewrite(_predictor(tmp), tmp / "bad.hnp", lambda n, d: None if n == "arrays.npz" else d))


def _without_pickled(tmp):
    def edit(name, data):
        if name != "predictor.json":
            return data
        meta = json.loads(data)
        del meta["head"]["pickled"]
        return json.dumps(meta)

    return load_predictor(_rewrite(_predictor(tmp), tmp / "bad.hnp", edit))


def _object_array(tmp):
    def edit(name, data):
        if name != "arrays.npz":
            return data
        buffer = io.BytesIO()
        np.savez(buffer, evil=np.array([{"a": 1}], dtype=object))
        return buffer.getvalue()

    return load_predictor(_rewrite(_predictor(tmp), tmp / "bad.hnp", edit))


def _other_weights(tmp):
    from ase.calculators.calculator import Calculator  # noqa: F401 - the calculator path checks the sha too
    from hacknip_ase import EmbeddingCalculator

    path = _predictor(tmp)
    predictor = load_predictor(path)
    predictor.backbones[0]["weights_sha256"] = "f" * 64
    predictor.save(tmp / "other.hnp")
    return EmbeddingCalculator(chgnet(), heads={"y": tmp / "other.hnp"})


def _write(name: str, text: str | bytes):
    def make(tmp):
        path = tmp / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path
    return make


def _other_runs_folder(tmp: Path):
    from hacknip_ase.distributed import RayEngine

    (tmp / "w.npz.shards").mkdir()
    (tmp / "w.npz.shards" / "plan.json").write_text(json.dumps({"format": "hacknip-shards", "entries": 7}))
    return RayEngine("chgnet", cache=False).run_to_file(read_structures(_write("s.xyz", "1\n\nSi 0 0 0\n")(tmp)),
                                                            tmp / "w.npz")


#: case -> (callable(tmp_path), error class, text the message must contain)
CASES = {
    # structures
    "empty structure": (_structure(Atoms), errors.EmptyStructureError, "no atoms"),
    "NaN position": (_structure(lambda: Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]])),
                     errors.NonFiniteStructureError, "NaN"),
    "inf cell": (_structure(lambda: Atoms("Si", cell=[np.inf, 3, 3], pbc=True)), errors.NonFiniteStructureError, "cell"),
    "overlapping atoms": (_structure(_overlap), errors.OverlappingAtomsError, "0.100 A"),
    "singular cell": (_structure(lambda: Atoms("Si2", positions=[[0, 0, 0], [1, 1, 1]],
                                               cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=True)),
                      errors.SingularCellError, "singular"),
    "unsupported element": (_structure(_americium), errors.UnsupportedElementError, "Am"),
    "not a structure": (lambda tmp: featurize(["Si"], chgnet(), cache=False, progress=False),
                        errors.StructureTypeError, "str"),
    # files
    "missing input": (lambda tmp: featurize(tmp / "nope", chgnet(), progress=False), errors.InputNotFoundError, "nope"),
    "unknown format": (lambda tmp: read_structures(_write("a.pdb", "ATOM")(tmp)), errors.UnknownFormatError, "a.pdb"),
    "garbage CIF": (lambda tmp: list(read_structures(_write("x.cif", "garbage\n")(tmp))),
                    errors.StructureParseError, "x.cif"),
    "damaged extxyz": (lambda tmp: list(read_structures(_write("x.xyz", "2\n\nSi 0 0 0\n")(tmp))),
                       errors.StructureParseError, "x.xyz"),
    "matbench without structures": (lambda tmp: len(read_structures(_write(
        "matbench_x.json", json.dumps({"columns": ["y"], "data": [[1.0]]}))(tmp))), errors.StructureParseError, "structure"),
    "features file of garbage": (lambda tmp: FeatureSet.load(_write("f.npz", b"PK junk")(tmp)),
                                 errors.FeatureFileError, "f.npz"),
    "features file of another kind": (lambda tmp: (np.savez(tmp / "o.npz", a=np.zeros(2)), FeatureSet.load(tmp / "o.npz")),
                                      errors.FeatureFileError, "o.npz"),
    # options
    "unknown backbone": (lambda tmp: get_backbone("schnet"), errors.UnknownBackboneError, "schnet"),
    "unknown model": (lambda tmp: get_backbone("chgnet", model="9.9"), errors.UnknownModelError, "9.9"),
    "unknown option": (lambda tmp: get_backbone("chgnet", colour="red"), errors.UnknownOptionError, "colour"),
    "missing GPU": (lambda tmp: get_backbone("chgnet", device="cuda:7"), errors.DeviceError, "cuda:7"),
    "unparsable device": (lambda tmp: get_backbone("chgnet", device="gpu please"), errors.DeviceError, "gpu please"),
    "zero batch size": (lambda tmp: featurize([bulk("Si")], chgnet(), batch_size=0), errors.InvalidOptionError, "batch_size"),
    "unknown on_error": (lambda tmp: featurize([bulk("Si")], chgnet(), on_error="ignore"), errors.InvalidOptionError,
                         "on_error"),
    "missing weights": (lambda tmp: get_backbone("chgnet", weights=tmp / "none.pth"), errors.WeightsNotFoundError,
                        "none.pth"),
    "corrupt weights": (lambda tmp: get_backbone("chgnet", weights=_write("w.pth", b"\0" * 64)(tmp)),
                        errors.CorruptWeightsError, "w.pth"),
    "ids of the wrong length": (lambda tmp: featurize([bulk("Si")], chgnet(), ids=["a", "b"], cache=False),
                                errors.InvalidOptionError, "2 ids for 1"),
    "table without a structure column": (lambda tmp: read_structures(_write("t.csv", "id,smiles\na,CCO\n")(tmp)),
                                         errors.TableError, "'structure' column"),
    # the Ray engine (refused before Ray starts)
    "ray option with the local engine": (lambda tmp: featurize([bulk("Si")], chgnet(), actors=2),
                                         errors.InvalidOptionError, "engine='ray'"),
    "shard size not a multiple of the batch": (lambda tmp: featurize([bulk("Si")], "chgnet", engine="ray", batch_size=4,
                                                                     shard_size=10), errors.InvalidOptionError, "multiple"),
    "work folder of another run": (_other_runs_folder, errors.WorkFolderError, "w.npz.shards"),
    # predictor files
    "predictor not a zip": (lambda tmp: load_predictor(_write("p.hnp", b"junk")(tmp)), errors.PredictorFileError, "p.hnp"),
    "predictor without arrays": (_without_arrays, errors.PredictorFileError, "arrays.npz"),
    "predictor head spec damaged": (_without_pickled, errors.PredictorFileError, "pickled"),
    "predictor with an object array": (_object_array, errors.PredictorFileError, "allow_pickle"),
    "predictor for other weights": (_other_weights, errors.PredictorMismatchError, "sha256"),
    # results and tasks
    "storing results never computed": (lambda tmp: __import__("hacknip_ase.storage").storage.db_data(bulk("Si")),
                                       errors.NoResultsError, "get_properties"),
    "unknown benchmark task": (lambda tmp: __import__("benchmarks.tasks").tasks.get_task("matbench_nosuch"),
                               errors.UnknownTaskError, "matbench_nosuch"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_a_typed_error_naming_the_cause(case, tmp_path):
    make, error, text = CASES[case]
    with pytest.raises(error) as info:
        make(tmp_path)
    assert isinstance(info.value, errors.HackNIPError)
    assert text in str(info.value), str(info.value)


def test_the_table_covers_twenty_error_classes():
    assert len({error for _, error, _ in CASES.values()}) >= 20


#: argv -> text the one line must contain
CLI_CASES = {
    "missing input": (["hacknip", "featurize", "/no/such/path", "-o", "{tmp}/x.npz"], "/no/such/path"),
    "garbage CIF": (["hacknip", "featurize", "{tmp}/bad.cif", "-o", "{tmp}/x.npz", "--no-cache", "-q"], "bad.cif"),
    "unknown format": (["hacknip", "featurize", "{tmp}/a.pdb", "-o", "{tmp}/x.npz"], "a.pdb"),
    "zero batch size": (["hacknip", "featurize", "{tmp}/ok.cif", "-o", "{tmp}/x.npz", "--batch-size", "0"], "batch_size"),
    "missing GPU": (["hacknip", "featurize", "{tmp}/ok.cif", "-o", "{tmp}/x.npz", "--device", "cuda:7"], "cuda:7"),
    "unknown model": (["hacknip", "featurize", "{tmp}/ok.cif", "-o", "{tmp}/x.npz", "--model", "9.9"], "9.9"),
    "missing --out": (["hacknip", "featurize", "{tmp}/ok.cif"], "--out"),
    "not an integer": (["hacknip", "featurize", "{tmp}/ok.cif", "-o", "x.npz", "--batch-size", "many"], "many"),
    "unknown command": (["hacknip", "frobnicate"], "frobnicate"),
    "ray option, local engine": (["hacknip", "featurize", "{tmp}/ok.cif", "-o", "{tmp}/x.npz", "--actors", "2"],
                                 "--actors only apply with --engine ray"),
    "shard size of the Ray engine": (["hacknip", "featurize", "{tmp}/ok.cif", "-o", "{tmp}/x.npz", "--engine", "ray",
                                      "--shard-size", "10", "--batch-size", "4"], "multiple of batch_size"),
    "unknown task": (["hacknip-bench", "run", "--task", "matbench_nosuch"], "matbench_nosuch"),
    "unknown head": (["hacknip-bench", "run", "--task", "matbench_jdft2d", "--head", "svm"], "svm"),
}


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    from ase.io import write

    tmp = tmp_path_factory.mktemp("cli")
    write(tmp / "ok.cif", bulk("Si"))
    (tmp / "bad.cif").write_text("garbage\n")
    (tmp / "a.pdb").write_text("ATOM\n")
    return tmp


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_prints_one_line_and_exits_2(case, cli_files):
    from benchmarks.cli import main as bench_main
    from hacknip_ase.cli import main

    argv, text = CLI_CASES[case]
    argv = [a.replace("{tmp}", str(cli_files)) for a in argv]
    entry = {"hacknip": main, "hacknip-bench": bench_main}[argv[0]]
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stderr", stderr)
        try:
            code = entry(argv[1:])
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
    lines = stderr.getvalue().strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and text in lines[0] and "Traceback" not in lines[0], lines


def test_console_script_shows_no_traceback(cli_files):
    done = subprocess.run([sys.executable, "-m", "hacknip_ase.cli", "featurize", str(cli_files / "bad.cif"), "-o",
                           str(cli_files / "x.npz"), "--no-cache", "-q"], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "bad.cif" in done.stderr and "Traceback" not in done.stderr
