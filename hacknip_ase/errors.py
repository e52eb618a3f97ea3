"""Typed errors. Every error the package raises on bad input is a ``ValueError``."""


class HackNIPError(ValueError):
    """Base class of all hacknip-ase input and configuration errors."""


class InvalidStructureError(HackNIPError):
    """A structure cannot be passed through a backbone."""


class EmptyStructureError(InvalidStructureError):
    """The structure has no atoms."""


class NonFiniteStructureError(InvalidStructureError):
    """Positions or cell contain NaN or inf."""


class OverlappingAtomsError(InvalidStructureError):
    """Two atoms (or an atom and its periodic image) are closer than allowed."""


class SingularCellError(InvalidStructureError):
    """A periodic structure has a cell of (near) zero volume."""


class UnsupportedElementError(InvalidStructureError):
    """The structure holds an element the backbone was not trained on."""


class StructureParseError(InvalidStructureError):
    """A CIF, SMILES or other structure text could not be parsed."""


class StructureTypeError(InvalidStructureError, TypeError):
    """An input is not a structure (ase Atoms, pymatgen Structure/Molecule)."""


class InputNotFoundError(HackNIPError, FileNotFoundError):
    """An input file or folder does not exist."""


class UnknownFormatError(HackNIPError):
    """The format of an input file cannot be told from its name, or is not supported."""


class FeatureFileError(HackNIPError):
    """A file is not a hacknip-ase features file."""


class InvalidOptionError(HackNIPError):
    """An option has a value outside its valid range or set."""


class UnknownOptionError(InvalidOptionError, TypeError):
    """A keyword option is not one the receiving backbone or function takes."""


class DeviceError(InvalidOptionError):
    """The torch device does not exist on this machine or cannot be parsed."""


class UnknownBackboneError(HackNIPError):
    """The backbone name is not in the registry."""


class UnknownModelError(HackNIPError):
    """The model variant is not one the backbone knows."""


class WeightsError(HackNIPError):
    """Model weights are missing, corrupt or could not be obtained."""


class WeightsNotFoundError(WeightsError):
    """The weights file does not exist."""


class CorruptWeightsError(WeightsError):
    """The weights file exists but cannot be loaded or fails its checksum."""


class UntrustedCheckpointError(WeightsError):
    """A checkpoint needs full unpickling and was given without an explicit opt-in."""


class DownloadError(WeightsError):
    """A download failed (typically: no network)."""


class NoResultsError(HackNIPError):
    """Atoms have no calculated results to store."""


class UnknownTaskError(HackNIPError):
    """The benchmark task name is not in the registry."""


class DataNotFoundError(HackNIPError):
    """A benchmark data file is missing."""


class PredictorMismatchError(HackNIPError):
    """A saved predictor does not fit the backbone or weights it is used with."""


class DataFormatError(HackNIPError):
    """A benchmark data file has an unexpected layout or content, or fails its checksum."""


class PredictorFileError(PredictorMismatchError):
    """A file is not a readable hacknip-ase predictor (damaged, truncated or of another format)."""


class UntrustedPredictorError(HackNIPError):
    """A saved predictor needs unpickling, which was not explicitly allowed (``trust=True``)."""


# own data (tables, SMILES)
class EmbeddingFailedError(InvalidStructureError):
    """RDKit could not build 3D coordinates for a parsed molecule."""


class MoleculeBuildError(InvalidStructureError):
    """A SMILES could not be turned into a usable 3D molecule; ``stage`` says where it failed
    ("parse", "embed" or "relax") and ``reason`` why."""

    def __init__(self, smiles: str, stage: str, reason: str) -> None:
        super().__init__(f"{smiles!r}: {stage} failed: {reason}")
        self.smiles, self.stage, self.reason = smiles, stage, reason


class TableError(HackNIPError):
    """A table of training or prediction data is empty, lacks a named column, or holds values
    that cannot be used (a non-numeric target, duplicate ids)."""


class PartialOccupancyError(InvalidStructureError):
    """A structure has partially occupied sites and the chosen policy does not reduce them."""


class MissingDependencyError(HackNIPError, ImportError):
    """An optional package a requested feature needs is not installed; the message names the
    ``pip install`` that brings it."""


class WorkFolderError(HackNIPError):
    """The resume folder of a distributed run belongs to another run (other input or options)."""
