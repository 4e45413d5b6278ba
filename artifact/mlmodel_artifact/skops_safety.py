"""What a skops file may contain before it is loaded: an explicit allow-list and size bounds.

skops never unpickles, but loading still imports and instantiates every type named in the file's
`schema.json`, and a scikit-learn estimator can hold *functions* (a `FunctionTransformer`'s
`func`) that run on every `predict`. So the rule is an allow-list of classes, not of modules:
`numpy.testing._private.utils.runstring` is as much "numpy" as `numpy.ndarray` is. Functions,
bound methods, partials and `operator` callables are refused whatever their module.

A class is callable too: skops stores a reference to a class (a `TypeNode`) wherever a function
could go, so `FunctionTransformer(func=dict)` names only allow-listed types and yet calls `dict`
on every `predict`. So a class reference is accepted only where it is data — a dict's key types,
the `dtype` of an encoder (a numpy scalar type), the constructor skops itself names for a tree or
a loss — and after loading `check_loaded` refuses any callable left in an estimator
(`FunctionTransformer.func`, a neighbours model's `weights` or `metric`, an SVM's `kernel`, …).

Everything before the load reads only the zip's directory and headers and skops' audit tree
(which imports nothing, though it reads the array entries the schema names: those reads are
bounded first); no object is constructed before `check_skops_file` has passed.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from mlmodel_artifact.errors import ArtifactError

# --- The allow-list. Names are `module.Class` exactly as skops reports them (and as an
# UntrustedType error prints them); tests/security checks every name imports to a class. ---

#: The estimators the trainer offers (trainer/mlmodel_trainer/estimators.py), by their defining
#: module: skops records where a class is defined, not the public alias.
ESTIMATORS: Final = frozenset(
    {
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.RandomForestRegressor",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.ensemble._forest.ExtraTreesRegressor",
        "sklearn.ensemble._gb.GradientBoostingClassifier",
        "sklearn.ensemble._gb.GradientBoostingRegressor",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model._base.LinearRegression",
        "sklearn.linear_model._ridge.Ridge",
        "sklearn.linear_model._ridge.RidgeClassifier",
        "sklearn.linear_model._coordinate_descent.Lasso",
        "sklearn.neighbors._classification.KNeighborsClassifier",
        "sklearn.neighbors._regression.KNeighborsRegressor",
        "sklearn.svm._classes.SVC",
        "sklearn.svm._classes.SVR",
        "sklearn.naive_bayes.GaussianNB",
        # Encodes labels for XGBoost (trainer: estimators.encode_labels); holds its members in a
        # Bunch (a dict with attribute access).
        "sklearn.ensemble._voting.VotingClassifier",
        "sklearn.utils._bunch.Bunch",
    }
)

#: XGBoost's and LightGBM's scikit-learn estimators and their boosters. Why they are safe to
#: construct, although their classes are not scikit-learn's:
#:
#: - skops builds them as it builds any estimator (`ObjectNode`: `cls.__new__` and then
#:   `__setstate__(attrs)`, or `__dict__.update(attrs)`), and only that way: `BOOSTING_OBJECTS`
#:   named by any other node (a `ReduceNode` would call `Booster(params, cache, model_file)`,
#:   which reads a path) or referenced as a class are refused before the load.
#: - The estimators define no `__setstate__` (scikit-learn's `BaseEstimator.__setstate__` updates
#:   `__dict__`); every attribute value is itself an allow-listed object, and `check_loaded`
#:   refuses a callable anywhere in them (a custom `objective`, `eval_metric`, `callbacks`).
#: - `xgboost.core.Booster.__setstate__` (3.2) creates an empty booster and hands its `handle`
#:   entry, a bytearray, to `XGBoosterUnserializeFromBuffer`: XGBoost's own UBJSON model and
#:   configuration format, parsed by its C++ JSON reader (malformed input is an XGBoostError, not a
#:   crash, in our tests). No pickle, no import, no file. Anything but a writable buffer fails at
#:   `from_buffer` with a TypeError; None leaves no handle, which `tree_checks` refuses.
#: - `lightgbm.basic.Booster.__setstate__` (4.7) hands its `_handle` (or `handle`) entry, a str,
#:   to `LGBM_BoosterLoadModelFromString`: LightGBM's text model format. No pickle, no import, no
#:   file. That parser trusts its input (it can read past the string or abort the process), so
#:   the string is checked in Python before the load (`tree_checks.lightgbm_text_problem`): it
#:   must be a JSON string in the schema, laid out exactly as LightGBM writes it.
#:
#: The loaded boosters are then bounds-checked like scikit-learn's trees (`tree_checks.py`).
BOOSTING_OBJECTS: Final = frozenset(
    {
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
        "xgboost.core.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "lightgbm.basic.Booster",
    }
)

#: What a tabular pipeline in front of an estimator needs. FunctionTransformer is here because a
#: fitted ColumnTransformer stores `remainder="passthrough"` as one (with func=None). A function
#: or a class reference in its `func` is refused before the load, and `check_loaded` requires
#: `func` and `inverse_func` to be None after it: only the identity transformer loads.
PIPELINE: Final = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.impute._base.SimpleImputer",
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.preprocessing._encoders.OrdinalEncoder",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._data.MinMaxScaler",
        "sklearn.preprocessing._data.MaxAbsScaler",
        "sklearn.preprocessing._data.RobustScaler",
        "sklearn.preprocessing._label.LabelEncoder",
        "sklearn.preprocessing._label.LabelBinarizer",
        "sklearn.preprocessing._function_transformer.FunctionTransformer",
    }
)

#: Objects the fitted estimators above hold, found by training each one and listing its file's
#: types: the fitted trees of forests and boosting, histogram-boosting predictors and binning,
#: gradient boosting's initial estimator, the loss and link objects of both boostings (each loss
#: a `--param loss=…` can pick), and the neighbour search trees with their distance metrics.
MODEL_INTERNALS: Final = frozenset(
    {
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.tree._classes.ExtraTreeRegressor",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.dummy.DummyClassifier",
        "sklearn.dummy.DummyRegressor",
        *(
            f"sklearn._loss.{module}.{prefix}{loss}"
            for loss in (
                "HalfSquaredError",
                "AbsoluteError",
                "HuberLoss",
                "PinballLoss",
                "HalfPoissonLoss",
                "HalfGammaLoss",
                "HalfBinomialLoss",
                "HalfMultinomialLoss",
                "ExponentialLoss",
            )
            for module, prefix in (("loss", ""), ("_loss", "Cy"))
        ),
        *(
            f"sklearn._loss.link.{link}"
            for link in (
                "Interval",
                "IdentityLink",
                "LogLink",
                "LogitLink",
                "HalfLogitLink",
                "MultinomialLogit",
            )
        ),
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
    }
)

#: Plain data: Python containers and scalars, numpy arrays, dtypes and scalar types (arrays are
#: read with allow_pickle=False), the random generators estimators keep, and scipy's CSR/CSC
#: matrices (read with scipy's npz loader, no pickle) for models fitted on sparse input.
CONTAINERS: Final = frozenset(
    {
        *(f"builtins.{t}" for t in ("dict", "list", "tuple", "set", "slice")),
        *(f"builtins.{t}" for t in ("str", "int", "float", "bool")),
        "builtins.bytearray",  # an XGBoost booster's model bytes
        "collections.OrderedDict",
        "numpy.ndarray",
        "numpy.dtype",
        *(f"numpy.{t}" for t in ("bool", "str_", "bytes_", "longlong", "ulonglong")),
        *(f"numpy.int{bits}" for bits in (8, 16, 32, 64)),
        *(f"numpy.uint{bits}" for bits in (8, 16, 32, 64)),
        *(f"numpy.float{bits}" for bits in (16, 32, 64)),
        "numpy.longdouble",
        "numpy.complex64",
        "numpy.complex128",
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
        "scipy.sparse._csr.csr_array",
        "scipy.sparse._csc.csc_array",
    }
)

#: The one list the loader consults.
TRUSTED_TYPES: Final = ESTIMATORS | PIPELINE | MODEL_INTERNALS | CONTAINERS | BOOSTING_OBJECTS

#: numpy and Python scalar types. A reference to one of these classes (not an instance) is data
#: in two places only: a dict's key types (skops rebuilds each key as `key_type(key)`) and the
#: `dtype` attribute of an estimator (OneHotEncoder's default `numpy.float64`). Any other class
#: reference — `dict`, `numpy.ndarray`, an estimator class — is refused: it would be a callable.
SCALAR_TYPES: Final = frozenset(
    {
        *(f"builtins.{t}" for t in ("str", "int", "float", "bool")),
        *(f"numpy.{t}" for t in ("bool", "str_", "longlong", "ulonglong", "longdouble")),
        *(f"numpy.int{bits}" for bits in (8, 16, 32, 64)),
        *(f"numpy.uint{bits}" for bits in (8, 16, 32, 64)),
        *(f"numpy.float{bits}" for bits in (16, 32, 64)),
    }
)

#: skops node kinds that stand for a callable rather than an object: never loaded, whatever the
#: module (skops itself trusts numpy and scipy ufuncs by default; we do not).
CALLABLE_NODES: Final = frozenset({"FunctionNode", "MethodNode", "PartialNode", "OperatorFuncNode"})

# --- Zip bounds, checked from the central directory before anything is decompressed. Python's
# zipfile stops each entry at its declared size (a longer stream fails its CRC), so bounding the
# declared sizes bounds what decompression can allocate. Measured with skops 0.16 and
# scikit-learn 1.9 (deflate level 6, as the trainer writes): a 20-tree forest on 50k rows x 20
# features is 38 MB in 102 entries (ratio 6:1, schema.json 17 KB per tree); a 200-iteration,
# 5-class histogram boosting is 6.8 MB in 3,029 entries (schema.json 2.7 MB, ratio 37:1). ---

#: Entries: ~5 per tree, ~3 per boosting predictor; 100k covers 10,000-tree forests.
MAX_ENTRIES: Final = 100_000
#: One entry (one array): 2 GiB.
MAX_ENTRY_BYTES: Final = 2 * 1024**3
#: schema.json is parsed whole as JSON (about 10x its size in Python objects); 128 MiB holds
#: the schema of ~7,000 fully grown trees.
MAX_SCHEMA_BYTES: Final = 128 * 1024**2
#: All entries together: 8 GiB (a 1,000-tree forest as above is ~2 GB).
MAX_TOTAL_BYTES: Final = 8 * 1024**3
#: Deflate reaches ~1,000:1 on zeros, real model arrays 3-40:1. The ratio is only checked above
#: RATIO_FLOOR_BYTES (per entry and for the whole archive), so small zero-filled arrays (a
#: sparse Lasso's 1.6 MB coefficients compress 960:1) still load; a bomb gets at most 64 MiB
#: unchecked, beyond that at most 200 bytes per byte fetched.
MAX_RATIO: Final = 200
RATIO_FLOOR_BYTES: Final = 64 * 1024**2

SCHEMA_FILE: Final = "schema.json"
#: A zip local file header (zipfile.structFileHeader): 30 bytes, the name and extra-field lengths
#: last; the data starts after them.
_LOCAL_HEADER: Final = struct.Struct("<4s2B4HL2L2H")
_LOCAL_MAGIC: Final = b"PK\x03\x04"


# A skops file: its path, or its bytes as read once (the bytes whose digest was checked).
Source = Path | bytes


def _open(source: Source) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")


def _length(source: Source) -> int:
    return len(source) if isinstance(source, bytes) else source.stat().st_size


def check_skops_file(source: Source, uri: str) -> list[str]:
    """Check a skops file may be loaded: zip bounds first, then every type in it.

    Returns the types to pass to `skops.io.load(trusted=…)` (all on TRUSTED_TYPES).
    ArtifactError(ArtifactTooLarge) or ArtifactError(UntrustedType) otherwise.
    """
    check_zip_bounds(source, uri)
    found = skops_types(source, uri)
    refused = sorted(found.callables | (found.types - TRUSTED_TYPES))
    if refused:
        raise ArtifactError(
            uri,
            "UntrustedType",
            f"the skops file contains types that are not on the allow-list: {', '.join(refused)}"
            "; only scikit-learn estimators, transformers and their data are loaded, never "
            "functions (see TRUSTED_TYPES in mlmodel_artifact.skops_safety)",
        )
    if found.misplaced:
        raise ArtifactError(
            uri,
            "UntrustedType",
            "the skops file names classes where a function or an object would go: "
            f"{', '.join(sorted(found.misplaced))}; a class is callable, so a class reference "
            "is loaded only as a dict's key type or an estimator's dtype",
        )
    if found.booster_problems:
        raise ArtifactError(
            uri,
            "ArtifactLoadFailed",
            f"the skops file holds {found.booster_problems[0]}; the model file is corrupt or "
            "crafted, so it was not loaded",
        )
    return sorted(found.skops_untrusted)


def check_zip_bounds(source: Source, uri: str) -> None:
    """ArtifactError(ArtifactTooLarge) if the zip's declared sizes exceed the bounds above, or
    if its entries overlap (then the declared sizes bound nothing)."""
    with _open(source) as raw, zipfile.ZipFile(raw) as archive:
        infos = archive.infolist()
        directory = archive.start_dir
    if len(infos) > MAX_ENTRIES:
        _too_large(uri, f"it has {len(infos):,} entries (at most {MAX_ENTRIES:,})")
    for info in infos:
        limit = MAX_SCHEMA_BYTES if info.filename == SCHEMA_FILE else MAX_ENTRY_BYTES
        if info.file_size > limit:
            _too_large(uri, f"entry {info.filename!r} unpacks to {_size(info.file_size)} "
                       f"(at most {_size(limit)})")  # fmt: skip
        _check_ratio(uri, f"entry {info.filename!r}", info.file_size, info.compress_size)
    check_zip_layout(source, uri, infos, directory)
    total = sum(info.file_size for info in infos)
    if total > MAX_TOTAL_BYTES:
        _too_large(uri, f"it unpacks to {_size(total)} (at most {_size(MAX_TOTAL_BYTES)})")
    _check_ratio(uri, "the archive", total, sum(info.compress_size for info in infos))


def check_zip_layout(
    source: Source, uri: str, infos: list[zipfile.ZipInfo], directory: int
) -> None:
    """Each entry's bytes are its own: local header plus data end before the next entry (or the
    central directory) starts, and all compressed sizes together fit in the file.

    The ratio bounds compare declared sizes with declared compressed sizes; entries that share
    their compressed bytes (several central-directory records reading one stream, or a stream
    quoting the next entry's header) make that sum far larger than the file, so a 1 MB file
    could declare forty 200 MB entries within the ratio. Measured on the file, not declared.
    """
    file_size = _length(source)
    compressed = sum(info.compress_size for info in infos)
    if compressed > file_size:
        _too_large(
            uri,
            f"its entries declare {_size(compressed)} of compressed data in a file of "
            f"{_size(file_size)}, so they overlap",
        )
    ordered = sorted(infos, key=lambda info: info.header_offset)
    with _open(source) as raw:
        for info, following in zip(ordered, [*ordered[1:], None], strict=True):
            raw.seek(info.header_offset)
            header = raw.read(_LOCAL_HEADER.size)
            if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_MAGIC:
                _too_large(
                    uri, f"entry {info.filename!r} has no local header where its record says"
                )
            name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
            end = (
                info.header_offset
                + _LOCAL_HEADER.size
                + name_length
                + extra_length
                + info.compress_size
            )
            limit = directory if following is None else following.header_offset
            if end > limit:
                what = "the central directory" if following is None else repr(following.filename)
                _too_large(
                    uri,
                    f"entry {info.filename!r} overlaps {what}, so its declared sizes do not "
                    "bound what it unpacks",
                )


def check_schema_reads(schema: Any, infos: list[zipfile.ZipInfo], file_size: int, uri: str) -> None:
    """Bound what skops reads while building its audit tree.

    skops reads every array entry the schema names into memory as the tree is built (before any
    audit), once per *reference*: a schema naming one 64 MiB entry a thousand times reads 64 GiB
    although the zip itself passes every bound. So the bounds on the whole archive apply to the
    sum over references.
    """
    sizes = {info.filename: info.file_size for info in infos}
    total = 0
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            name = node.get("file")
            if isinstance(name, str):
                total += sizes.get(name, 0)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    if total > MAX_TOTAL_BYTES:
        _too_large(
            uri,
            f"its schema reads {_size(total)} of arrays (at most {_size(MAX_TOTAL_BYTES)}; "
            "an entry named more than once counts each time)",
        )
    _check_ratio(uri, "what its schema reads", total, file_size)


def _check_ratio(uri: str, what: str, size: int, compressed: int) -> None:
    if size > RATIO_FLOOR_BYTES and size > MAX_RATIO * compressed:
        _too_large(
            uri,
            f"{what} unpacks to {_size(size)} from {_size(compressed)} (more than "
            f"{MAX_RATIO}:1 above {_size(RATIO_FLOOR_BYTES)}, the signature of a zip bomb)",
        )


def _too_large(uri: str, detail: str) -> None:
    raise ArtifactError(uri, "ArtifactTooLarge", f"the skops file was not unpacked: {detail}")


def _size(n: int) -> str:
    return f"{n / 1024**2:,.1f} MiB" if n >= 1024**2 else f"{n:,} bytes"


@dataclass(frozen=True)
class FoundTypes:
    """What a skops file would instantiate."""

    types: frozenset[str]  # every object and type reference, skops' defaults included
    callables: frozenset[str]  # functions, methods, partials: refused outright
    skops_untrusted: frozenset[str]  # what skops itself would ask to be trusted
    misplaced: frozenset[str] = frozenset()  # class references where a class is not data
    # LightGBM model texts that may not reach LightGBM's parser, and why.
    booster_problems: tuple[str, ...] = ()


def skops_types(source: Source, uri: str | None = None) -> FoundTypes:
    """Every type and callable named in the skops file, from skops' audit tree.

    `skops.io.get_untrusted_types` leaves out what skops trusts by default (every scikit-learn
    estimator, numpy ufuncs), so the tree is walked here to see all of it. Building the tree
    reads the array entries the schema names, so those reads are bounded first.
    """
    from skops.io._audit import get_tree
    from skops.io._utils import read_schema

    where = uri or (str(source) if isinstance(source, Path) else "the skops file")
    with _open(source) as raw, zipfile.ZipFile(raw) as archive:
        schema, context = read_schema(archive)
        check_schema_reads(schema, archive.infolist(), _length(source), where)
        root = get_tree(schema, context, trusted=None)  # audits only: constructs nothing
    types: set[str] = set()
    callables: set[str] = set()
    for node in _nodes(root):
        kind = type(node).__name__
        if kind == "JsonNode":
            continue  # a JSON literal, read with json.loads
        name = f"{node.module_name}.{node.class_name}"
        (callables if kind in CALLABLE_NODES else types).add(name)
        types.update(_type_children(node))
    # Anything skops itself flags (a method's function name, a non-bit-generator class behind a
    # Generator) must be on the list too.
    untrusted = set(root.get_unsafe_set())
    return FoundTypes(
        frozenset(types | untrusted),
        frozenset(callables),
        frozenset(untrusted),
        frozenset(_misplaced_types(root)) | frozenset(_misbuilt_boosting(root)),
        tuple(_booster_problems(schema)),
    )


def _misbuilt_boosting(root: Any) -> Iterator[str]:
    """XGBoost/LightGBM objects built by anything but skops' ObjectNode (__new__ + state)."""
    for node in _nodes(root):
        name = f"{getattr(node, 'module_name', '')}.{getattr(node, 'class_name', '')}"
        if name in BOOSTING_OBJECTS and type(node).__name__ not in ("ObjectNode", "TypeNode"):
            yield f"{name} (built by {type(node).__name__})"


def _booster_problems(schema: Any) -> Iterator[str]:
    """What is wrong with each LightGBM booster's model text in the raw schema.

    skops rebuilds a LightGBM Booster from a dict whose `_handle` (or `handle`) entry becomes the
    text LightGBM parses; each must be a JSON string (not an object that behaves like one) and
    pass `lightgbm_text_problem`, or be absent/null (no model, refused after the load).
    """
    from mlmodel_artifact.tree_checks import lightgbm_text_problem

    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(node.values())
        if (node.get("__module__"), node.get("__class__")) != ("lightgbm.basic", "Booster"):
            continue
        attrs = node.get("content")
        if not isinstance(attrs, dict) or attrs.get("__loader__") != "DictNode":
            yield "a LightGBM booster whose state is not a plain dict"
            continue
        entries = attrs.get("content")
        if not isinstance(entries, dict):
            yield "a LightGBM booster whose state is not a plain dict"
            continue
        for key in ("_handle", "handle"):
            if key not in entries:
                continue
            entry = entries[key]
            try:
                # skops' JsonNode constructs json.loads(content), always
                text = json.loads(entry["content"]) if entry["__loader__"] == "JsonNode" else entry
            except (TypeError, ValueError, AttributeError, KeyError):
                text = entry
            if text is None:
                continue
            problem = lightgbm_text_problem(text)
            if problem:
                yield f"a LightGBM booster that {problem}"


def _nodes(root: Any) -> Iterator[Any]:
    """Each node of skops' tree once (the tree can share nodes)."""
    yield root
    seen = {id(root)}
    for _, _, child in _edges(root):
        if id(child) not in seen:
            seen.add(id(child))
            yield child


def _edges(root: Any) -> Iterator[tuple[Any, tuple[Any, ...], Any]]:
    """(parent, slot, child) for every parent-child link of skops' tree, shared nodes included:
    a node reached from two places is one node with two links. `slot` is the child's key in
    `parent.children`, and for a dict of children also the dict key."""
    from skops.io._audit import Node

    seen = {id(root)}
    stack = [root]
    while stack:
        node = stack.pop()
        for key, child in node.children.items():
            if isinstance(child, Node):
                links: list[tuple[tuple[Any, ...], Any]] = [((key,), child)]
            elif isinstance(child, list):
                links = [((key,), c) for c in child if isinstance(c, Node)]
            elif isinstance(child, dict):
                links = [((key, k), c) for k, c in child.items() if isinstance(c, Node)]
            else:
                links = []
            for slot, kid in links:
                yield node, slot, kid
                if id(kid) not in seen:
                    seen.add(id(kid))
                    stack.append(kid)


def _resolve(node: Any) -> Any:
    """The node a CachedNode (a back-reference to an earlier node) stands for."""
    from skops.io._audit import CachedNode

    for _ in range(100):
        if not isinstance(node, CachedNode):
            break
        node = node.cached
    return node


def _misplaced_types(root: Any) -> Iterator[str]:
    """Class references (TypeNodes) anywhere but where a class is data.

    A TypeNode constructs the class itself, so wherever a function may go (a
    FunctionTransformer's `func`, a neighbours model's `weights`, a kwarg) it is a callable.
    Accepted: the constructor skops names for a tree or a loss (built by skops from the node's
    own, allow-listed type, never read from a shared node); the key types of a dict, in a list
    used for nothing else; and a numpy/Python scalar type as a dict's `dtype` entry (an
    encoder's dtype). Each link is judged, so a node shared into a second place is judged there
    too, also through a CachedNode.
    """
    from skops.io._general import DictNode, TypeNode
    from skops.io._sklearn import ReduceNode

    edges = [(parent, slot, child, _resolve(child)) for parent, slot, child in _edges(root)]
    key_lists = {
        id(target)
        for parent, slot, _, target in edges
        if isinstance(parent, DictNode) and slot == ("key_types",)
    }
    # A key-type list also linked from anywhere else is data there: its classes are not keys.
    key_lists -= {
        id(target)
        for parent, slot, _, target in edges
        if id(target) in key_lists and not (isinstance(parent, DictNode) and slot == ("key_types",))
    }
    for parent, slot, child, target in edges:
        if not isinstance(target, TypeNode):
            continue
        name = f"{target.module_name}.{target.class_name}"
        if isinstance(parent, ReduceNode) and slot == ("constructor",) and child is target:
            continue
        if name in SCALAR_TYPES and (
            id(parent) in key_lists
            or (isinstance(parent, DictNode) and slot == ("content", "dtype"))
        ):
            continue
        yield name


def _type_children(node: Any) -> Iterator[str]:
    for child in node.children.values():
        if type(child) is type:
            yield f"{child.__module__}.{child.__name__}"


# --- After the load: no callable is left where scikit-learn would call it. ---


def check_loaded(model: Any, uri: str) -> None:
    """ArtifactError(UntrustedType) if the loaded model holds a callable scikit-learn would call.

    The audit above already refuses functions and misplaced class references; this checks the
    result, so a callable that arrives any other way (an allow-listed object with `__call__`, a
    class in an unforeseen slot) is refused too: `FunctionTransformer.func` and `inverse_func`
    must be None; a neighbours model's `weights`, `metric` and `effective_metric_` and an SVM's
    `kernel` must be strings (or None); and no other estimator attribute may be callable, but
    for a boosting model's loss object (`_loss`) and a scalar type as `dtype`.
    """
    for where, value in _callable_slots(model):
        raise ArtifactError(
            uri,
            "UntrustedType",
            f"the loaded model's {where} is {_describe(value)}; functions and classes in a model "
            "file are never called (FunctionTransformer loads only with func=None, and metrics, "
            "weights and kernels only by name)",
        )


def _callable_slots(model: Any) -> Iterator[tuple[str, Any]]:
    import numpy as np
    from sklearn._loss.loss import BaseLoss
    from sklearn.neighbors._base import NeighborsBase
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.svm._base import BaseLibSVM

    seen: set[int] = set()
    # (where, the estimator attribute it is directly, the object)
    stack: list[tuple[str, str | None, Any]] = [(type(model).__name__, None, model)]
    while stack:
        where, attr, obj = stack.pop()
        if callable(obj) and not _allowed_callable(attr, obj, BaseLoss):
            yield where, obj
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, list | tuple):
            stack.extend((f"{where}[{i}]", None, v) for i, v in enumerate(obj))
        elif isinstance(obj, dict):
            stack.extend((f"{where}[{k!r}]", None, v) for k, v in obj.items())
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend((f"{where}[{i}]", None, v) for i, v in enumerate(obj.ravel()))
        elif type(obj).__module__.startswith(_WALKED_MODULES) and hasattr(obj, "__dict__"):
            name = type(obj).__name__
            named: tuple[str, ...] = ()
            if isinstance(obj, FunctionTransformer):
                for slot in ("func", "inverse_func"):
                    if getattr(obj, slot, None) is not None:
                        yield f"{name}.{slot}", getattr(obj, slot)
            if isinstance(obj, NeighborsBase):
                named = ("weights", "metric", "effective_metric_")
            if isinstance(obj, BaseLibSVM):
                named = ("kernel",)
            for slot in named:
                value = getattr(obj, slot, None)
                if value is not None and not isinstance(value, str):
                    yield f"{name}.{slot}", value
            stack.extend((f"{name}.{a}", a, v) for a, v in vars(obj).items())


#: Objects whose attributes `check_loaded` looks into: scikit-learn's, XGBoost's, LightGBM's.
_WALKED_MODULES: Final = ("sklearn.", "xgboost.", "lightgbm.")


def _allowed_callable(attr: str | None, value: Any, loss_type: type) -> bool:
    if attr == "_loss" and isinstance(value, loss_type):
        return True  # a loss object's __call__ computes a loss; boosting never calls it to predict
    return (
        attr == "dtype"
        and isinstance(value, type)
        and f"{value.__module__}.{value.__name__}" in SCALAR_TYPES
    )


def _describe(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__}"
    if callable(value):
        module = getattr(value, "__module__", None) or type(value).__module__
        return f"the callable {module}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return f"a {type(value).__name__}, not a name"
