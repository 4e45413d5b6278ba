"""What a skops file may contain before it is loaded: an explicit allow-list and size bounds.

skops never unpickles, but loading still imports and instantiates every type named in the file's
`schema.json`, and a scikit-learn estimator can hold *functions* (a `FunctionTransformer`'s
`func`) that run on every `predict`. So the rule is an allow-list of classes, not of modules:
`numpy.testing._private.utils.runstring` is as much "numpy" as `numpy.ndarray` is. Functions,
bound methods, partials and `operator` callables are refused whatever their module.

Everything here reads only the zip's central directory and skops' audit tree (which imports
nothing); no object is constructed before `check_skops_file` has passed.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

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
    }
)

#: What a tabular pipeline in front of an estimator needs. FunctionTransformer is here because a
#: fitted ColumnTransformer stores `remainder="passthrough"` as one (with func=None); a function
#: in it is still refused below, so only the identity transformer can load.
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
TRUSTED_TYPES: Final = ESTIMATORS | PIPELINE | MODEL_INTERNALS | CONTAINERS

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


def check_skops_file(path: Path, uri: str) -> list[str]:
    """Check `path` may be loaded: zip bounds first, then every type in it.

    Returns the types to pass to `skops.io.load(trusted=…)` (all on TRUSTED_TYPES).
    ArtifactError(ArtifactTooLarge) or ArtifactError(UntrustedType) otherwise.
    """
    check_zip_bounds(path, uri)
    found = skops_types(path)
    refused = sorted(found.callables | (found.types - TRUSTED_TYPES))
    if refused:
        raise ArtifactError(
            uri,
            "UntrustedType",
            f"the skops file contains types that are not on the allow-list: {', '.join(refused)}"
            "; only scikit-learn estimators, transformers and their data are loaded, never "
            "functions (see TRUSTED_TYPES in mlmodel_artifact.skops_safety)",
        )
    return sorted(found.skops_untrusted)


def check_zip_bounds(path: Path, uri: str) -> None:
    """ArtifactError(ArtifactTooLarge) if the zip's declared sizes exceed the bounds above."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        _too_large(uri, f"it has {len(infos):,} entries (at most {MAX_ENTRIES:,})")
    for info in infos:
        limit = MAX_SCHEMA_BYTES if info.filename == SCHEMA_FILE else MAX_ENTRY_BYTES
        if info.file_size > limit:
            _too_large(uri, f"entry {info.filename!r} unpacks to {_size(info.file_size)} "
                       f"(at most {_size(limit)})")  # fmt: skip
        _check_ratio(uri, f"entry {info.filename!r}", info.file_size, info.compress_size)
    total = sum(info.file_size for info in infos)
    if total > MAX_TOTAL_BYTES:
        _too_large(uri, f"it unpacks to {_size(total)} (at most {_size(MAX_TOTAL_BYTES)})")
    _check_ratio(uri, "the archive", total, sum(info.compress_size for info in infos))


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


def skops_types(path: Path) -> FoundTypes:
    """Every type and callable named in the skops file, from skops' audit tree.

    `skops.io.get_untrusted_types` leaves out what skops trusts by default (every scikit-learn
    estimator, numpy ufuncs), so the tree is walked here to see all of it.
    """
    from skops.io._audit import get_tree
    from skops.io._utils import read_schema

    with zipfile.ZipFile(path) as archive:
        schema, context = read_schema(archive)
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
    return FoundTypes(frozenset(types | untrusted), frozenset(callables), frozenset(untrusted))


def _nodes(root: Any) -> Iterator[Any]:
    """Each node of skops' tree once (the tree can share nodes)."""
    from skops.io._audit import Node

    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        for child in node.children.values():
            if isinstance(child, Node):
                stack.append(child)
            elif isinstance(child, list | dict):
                values = child.values() if isinstance(child, dict) else child
                stack.extend(v for v in values if isinstance(v, Node))


def _type_children(node: Any) -> Iterator[str]:
    for child in node.children.values():
        if type(child) is type:
            yield f"{child.__module__}.{child.__name__}"
