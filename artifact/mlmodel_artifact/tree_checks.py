"""Index checks on fitted structures, run after a skops load and before the first `predict`.

An allow-listed class can still hold crafted numbers. scikit-learn's compiled code follows the
indices inside fitted trees, neighbour search trees and libsvm models without bounds checks
(skops leaves `sklearn.tree._tree.Tree` and the histogram-boosting `TreePredictor` off its
default trust for this reason), so a forged index reads memory outside its array: a crash, or
process memory in the predictions. This module checks what that code follows:

- decision trees (forests, gradient boosting, histogram boosting): every internal node's
  children are later nodes inside the tree (which also rules out loops); every split feature is
  a column of the input the tree is given (the width rule below); a categorical split's bitset
  and feature map entries exist; a gradient boosting's tree grid is as wide as the raw
  predictions it adds into;
- neighbour search trees (KDTree, BallTree): sample indices, node ranges and children inside
  their arrays, points as wide as the input;
- SVC/SVR: support vectors as wide as the input, coefficient, intercept and class-count arrays
  of the sizes libsvm assumes.

The width rule. Every number inside the file is the author's, so no bound may come from the
structure being checked (`Tree(n_features, …)` is an argument in the schema). A bound holds
only where scikit-learn itself enforces it at predict time: an estimator with `n_features_in_`
refuses input of any other width, one without it skips that check. Hence:

1. the model's `n_features_in_` must equal the card's feature count — the width the server
   feeds (a Pipeline's is its first step's);
2. every estimator that owns a checked structure (tree, histogram predictor, search tree, libsvm
   model) must have an integer `n_features_in_`, and its structures are bounded by it — never by
   `tree.n_features`, which must equal it (feature importances index an array of that size);
3. the members of an ensemble (an estimator with `estimators_`: a forest's trees, gradient
   boosting's trees and `init_`) are handed the ensemble's input without a check of their own,
   so each must declare exactly the ensemble's width.

A width change inside a Pipeline (a ColumnTransformer, a OneHotEncoder) needs no derivation of
its own: the step after it is bounded by its own `n_features_in_`, which its `predict` checks
against what the previous step actually produced. A file whose steps disagree fails that check
(and with it the card's sample) with a ValueError, never with an out-of-bounds read.

Leaf values, thresholds and coefficients are plain numbers and need no check; numpy-only
estimators (linear models, naive Bayes) index through numpy, which checks bounds itself.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from mlmodel_artifact.errors import ArtifactError

_TREE_LEAF = -1  # sklearn.tree._tree.TREE_LEAF
_BOOSTING_MODULES = ("xgboost.", "lightgbm.")


def check_trees(model: Any, uri: str, n_features: int) -> None:
    """ArtifactError(ArtifactLoadFailed) naming the first structure with an index out of range.

    `n_features` is the width of the input the model is given: the card's feature count.
    """
    for owner, problem in _problems(model, n_features):
        raise ArtifactError(
            uri,
            "ArtifactLoadFailed",
            f"the fitted {type(owner).__name__} {problem}; the model file is corrupt or "
            "crafted, so it is not used",
        )


def _width(estimator: Any) -> int | None:
    """`n_features_in_` if it is an integer, else None (missing, or anything else)."""
    try:
        value = estimator.n_features_in_
    except Exception:  # a Pipeline's is a property that fails without a first step
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return None
    return int(value)


def _problems(model: Any, n_features: int) -> Iterator[tuple[Any, str]]:
    """(estimator, what is wrong) for each breach of the width rule or of an index bound."""
    from sklearn.ensemble._gb import BaseGradientBoosting
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.neighbors import BallTree, KDTree
    from sklearn.svm._base import BaseLibSVM
    from sklearn.tree._tree import Tree

    top = _width(model)
    if top != n_features:
        declared = (
            "declares no input width (n_features_in_)"
            if top is None
            else f"takes {top} input columns (n_features_in_)"
        )
        yield model, f"{declared} but the model card names {n_features} features"
        return
    boostings: list[tuple[Any, int]] = []
    seen: set[tuple[int, int | None, bool]] = set()
    # (owner, object, width of the owner's input, whether the object is an ensemble's member)
    stack: list[tuple[Any, Any, int | None, bool]] = [(model, model, n_features, False)]
    while stack:
        owner, obj, width, member = stack.pop()
        if (id(obj), width, member) in seen:  # a node shared by two owners is checked for each
            continue
        seen.add((id(obj), width, member))
        if isinstance(obj, Tree | TreePredictor | KDTree | BallTree):
            problem = _problem(owner, obj, width)
            if problem:
                yield owner, problem
            continue
        if hasattr(obj, "get_params"):  # an estimator
            own = _width(obj)
            if member and own is not None and own != width:
                takes = "declares no input width" if width is None else f"takes {width} columns"
                yield (
                    obj,
                    f"is a member of an ensemble that {takes} but declares {own} (n_features_in_)",
                )
                continue
            # Without n_features_in_ (an unfitted template such as a forest's `estimator`) the
            # width is None, and any structure it owns is refused.
            owner, width, member = obj, own, hasattr(obj, "estimators_")
            if isinstance(obj, BaseLibSVM):
                problem = _problem(obj, obj, width)
                if problem:
                    yield obj, problem
            if isinstance(obj, BaseGradientBoosting) and width is not None:
                boostings.append((obj, width))
            if type(obj).__module__.startswith(_BOOSTING_MODULES):
                problem = _boosting_problem_of(obj, width)
                if problem:
                    yield obj, problem
                continue  # the booster is checked whole; nothing else in it is followed
        stack.extend((owner, child, width, member) for child in _children(obj))
    for boosting, width in boostings:  # only once every tree in them is known to be sound
        problem = _boosting_problem(boosting, width)
        if problem:
            yield boosting, problem


def _boosting_problem(model: Any, width: int) -> str:
    """Gradient boosting adds tree k of each stage into column k of the raw predictions
    (compiled, unchecked), and those come from the init estimator and the loss: the grid of trees
    must be exactly as wide."""
    estimators = model.estimators_
    if not isinstance(estimators, np.ndarray) or estimators.ndim != 2 or not estimators.size:
        return "has a grid of trees that is not a two-dimensional array"
    try:
        raw = model._raw_predict_init(np.zeros((1, width), dtype=np.float32))
    except Exception as exc:
        return f"cannot compute its initial predictions ({type(exc).__name__}: {exc})"
    if np.ndim(raw) != 2 or estimators.shape[1] != np.shape(raw)[1]:
        return (
            f"adds {estimators.shape[1]} trees per stage into {np.shape(raw)[-1]} columns of "
            "initial predictions"
        )
    return ""


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, list | tuple):
        return list(obj)
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, np.ndarray):
        return list(obj.ravel()) if obj.dtype == object else []
    if type(obj).__module__.startswith("sklearn.") and hasattr(obj, "__dict__"):
        return list(vars(obj).values())
    return []


def _problem(owner: Any, structure: Any, width: int | None) -> str:
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.neighbors import BallTree, KDTree
    from sklearn.tree._tree import Tree

    if width is None:
        return (
            "has no n_features_in_, so scikit-learn would not check the width of its input "
            "and nothing bounds the indices in its fitted structures"
        )
    if isinstance(structure, KDTree | BallTree):
        return _search_tree_problem(structure.__getstate__(), width)
    if isinstance(structure, Tree):
        return _sklearn_tree_problem(structure, width)
    if isinstance(structure, TreePredictor):
        return _predictor_problem(owner, structure, width)
    return _svm_problem(structure, width)


def _sklearn_tree_problem(tree: Any, width: int) -> str:
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    leaf = left == _TREE_LEAF
    if not np.array_equal(leaf, right == _TREE_LEAF):
        return "has a tree node with one child"
    if int(tree.n_features) != width:
        return f"has a tree built for {int(tree.n_features)} input columns, not its {width}"
    return _index_problem(left, right, np.asarray(tree.feature), ~leaf, width)


def _predictor_problem(owner: Any, predictor: Any, width: int) -> str:
    """A histogram-boosting tree; categorical splits also index the owner's feature map."""
    nodes = predictor.nodes
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    internal = ~nodes["is_leaf"].astype(bool)
    problem = _index_problem(left, right, nodes["feature_idx"], internal, width)
    if problem:
        return problem
    categorical = internal & nodes["is_categorical"].astype(bool)
    if not categorical.any():
        return ""
    if np.any(nodes["bitset_idx"][categorical] >= len(predictor.raw_left_cat_bitsets)):
        return "has a categorical split with a bitset index out of range"
    is_categorical = np.asarray(getattr(getattr(owner, "_bin_mapper", None), "is_categorical_", []))
    features = nodes["feature_idx"][categorical]
    if np.any(features >= is_categorical.size) or not is_categorical[features].all():
        return "has a categorical split on a feature its binning does not mark categorical"
    return ""


def _index_problem(
    left: np.ndarray, right: np.ndarray, features: np.ndarray, internal: np.ndarray, width: int
) -> str:
    n = len(left)
    here = np.arange(n)[internal]
    for side, children in (("left", left[internal]), ("right", right[internal])):
        if np.any(children <= here) or np.any(children >= n):
            return f"has a tree whose {side} child index is outside its {n} nodes (or loops back)"
    split = features[internal]
    if np.any(split < 0) or np.any(split >= width):
        return f"has a tree splitting on a feature index outside its {width} input columns"
    return ""


def _search_tree_problem(state: tuple[Any, ...], width: int) -> str:
    """KDTree/BallTree state: (data, idx_array, node_data, node_bounds, …, n_nodes at 6, …,
    sample_weight at 12). Queries walk node i to 2i+1 and 2i+2 and read samples through
    idx_array[idx_start:idx_end], all unchecked."""
    data, order, nodes, bounds = (np.asarray(a) for a in state[:4])
    n_nodes, weights = state[6], state[12]
    if data.ndim != 2 or order.shape != (len(data),) or len(nodes) != n_nodes or n_nodes < 1:
        return "has a search tree whose array sizes do not match"
    if data.shape[1] != width:
        return f"has a search tree of {data.shape[1]}-column points for {width} input columns"
    n = len(data)
    if np.any(order < 0) or np.any(order >= n):
        return f"has a search tree with a sample index outside its {n} samples"
    start, end = nodes["idx_start"], nodes["idx_end"]
    if np.any(start < 0) or np.any(start > end) or np.any(end > n):
        return f"has a search tree node whose sample range is outside its {n} samples"
    inner = np.flatnonzero(nodes["is_leaf"] == 0)
    if np.any(2 * inner + 2 >= n_nodes):
        return f"has a search tree with a child node outside its {n_nodes} nodes"
    if bounds.ndim != 3 or bounds.shape[1] < n_nodes or bounds.shape[2] != data.shape[1]:
        return "has a search tree whose node bounds do not match its nodes"
    if weights is not None and np.shape(weights) != (n,):
        return "has a search tree whose sample weights do not match its samples"
    return ""


def _svm_problem(model: Any, width: int) -> str:
    """What libsvm's predict assumes of SVC/SVR (scikit-learn checks only the class counts)."""
    # A numpy array, or a scipy matrix for a model fitted on sparse input.
    shape: tuple[int, ...] = tuple(getattr(model.support_vectors_, "shape", ()))
    n_class = len(model._n_support)
    pairs = n_class * (n_class - 1) // 2
    if len(shape) != 2 or n_class < 2:
        return "has support vectors or class counts of the wrong shape"
    n_vectors, vector_width = shape
    if model.kernel != "precomputed" and n_vectors and vector_width != width:
        return f"has support vectors {vector_width} wide for {width} input columns"
    if np.shape(model._dual_coef_) != (n_class - 1, n_vectors):
        return "has dual coefficients that do not match its support vectors"
    if np.shape(model._intercept_) != (pairs,) or np.shape(model.support_) != (n_vectors,):
        return "has intercepts or support indices that do not match its classes"
    if any(np.size(p) not in (0, pairs) for p in (model._probA, model._probB)):
        return "has probability parameters that do not match its classes"
    if hasattr(model, "classes_") and (
        np.any(model._n_support < 0) or int(np.sum(model._n_support)) != n_vectors
    ):
        return "has class counts that do not add up to its support vectors"
    return ""


# --- XGBoost and LightGBM. Their boosters are parsed by the libraries' own model loaders (the
# XGBoost JSON/UBJSON model, the LightGBM text model), and neither checks the indices it then
# follows at predict time: a child index outside the tree crashes the process, a loop hangs it, a
# split feature or leaf index outside its array reads other memory (measured with XGBoost 3.2 and
# LightGBM 4.7). LightGBM's text parser itself is no safer (a line without '=' reads past the
# string; a wrong `tree_sizes` aborts the process), so a LightGBM model's text is checked here
# before LightGBM sees it (`lightgbm_text_problem`, from skops_safety), and an XGBoost model,
# whose loader reports malformed input as an error, is read back as JSON and checked after the
# load (`_xgboost_problem`), both before the first prediction. ---

#: What `LightGBM`'s text model may hold, line by line (lightgbm 4.x `GBDT::SaveModelToString`).
_LGB_HEADER_KEYS = frozenset(
    {
        "version",
        "num_class",
        "num_tree_per_iteration",
        "label_index",
        "max_feature_idx",
        "objective",
        "feature_names",
        "monotone_constraints",
        "feature_infos",
        "tree_sizes",
    }
)
#: Per tree: arrays of one entry per internal node, of one per leaf, and scalars. Categorical
#: splits (`num_cat` > 0, `cat_boundaries`, `cat_threshold`) and linear trees are refused: the
#: trainer never writes them (categories are one-hot encoded), so they are not checked.
_LGB_NODE_ARRAYS = {
    "split_feature": "int",
    "split_gain": "float",
    "threshold": "float",
    "decision_type": "int",
    "left_child": "int",
    "right_child": "int",
    "internal_value": "float",
    "internal_weight": "float",
    "internal_count": "int",
}
_LGB_LEAF_ARRAYS = {"leaf_value": "float", "leaf_weight": "float", "leaf_count": "int"}
_LGB_SCALARS = {"num_leaves": "int", "num_cat": "int", "is_linear": "int", "shrinkage": "float"}
_LGB_TREE_LINES = 22  # Tree::Tree reads at most this many key=value lines
_INT = re.compile(r"-?[0-9]{1,10}")
_FLOAT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_OBJECTIVE = re.compile(r"[a-z_]{1,40}(?: [a-z_]{1,40}:-?[0-9.eE+-]{1,30}){0,8}")
_INT32 = 2**31 - 1


class _Refused(Exception):
    """One problem with a LightGBM text model (internal to lightgbm_text_problem)."""


def lightgbm_text_problem(text: object) -> str:
    """Empty if `text` is a LightGBM text model laid out exactly as LightGBM writes it, with
    every index inside its array; else what is wrong. Reads the text only, with Python."""
    try:
        _check_lightgbm_text(text)
    except _Refused as exc:
        return str(exc)
    return ""


def _check_lightgbm_text(text: object) -> None:
    if not isinstance(text, str):
        raise _Refused("is not stored as LightGBM's text model format")
    if not text.isascii() or "\r" in text or "\0" in text:
        raise _Refused("has a text model with characters LightGBM does not write")
    first_tree = text.find("\nTree=")
    end = text.find("\nend of trees\n")
    if not text.startswith("tree\n") or first_tree < 0 or end < first_tree:
        raise _Refused("has a text model without the header, trees and end LightGBM writes")
    header = _lgb_header(text[5 : first_tree + 1])
    width = _lgb_int(header, "max_feature_idx") + 1
    if not 0 < width <= _INT32:
        raise _Refused("has a text model with no input features")
    for key in ("feature_names", "feature_infos", "monotone_constraints"):
        if key in header and len(header[key].split(" ")) != width:
            raise _Refused(f"has a text model whose {key} do not match its {width} features")
    n_class = _lgb_int(header, "num_class")
    if header.get("version") != "v4" or not 1 <= n_class <= 10_000:
        raise _Refused("has a text model of another version or class count")
    if _lgb_int(header, "num_tree_per_iteration") != n_class or _lgb_int(header, "label_index") < 0:
        raise _Refused("has a text model with other than one tree per class and iteration")
    if not _OBJECTIVE.fullmatch(header.get("objective", "")):
        raise _Refused("has a text model with an objective LightGBM does not write")
    sizes = [_lgb_number(t, "int", "tree_sizes") for t in header.get("tree_sizes", "").split(" ")]
    starts = [m.start() + 1 for m in re.finditer(r"\nTree=", text[: end + 1])] + [end + 1]
    if len(sizes) != len(starts) - 1 or len(sizes) % n_class:
        raise _Refused("has a text model whose tree_sizes do not match its trees")
    for i, (start, stop) in enumerate(itertools.pairwise(starts)):
        if sizes[i] != stop - start:
            raise _Refused(f"has a text model whose tree_sizes do not match tree {i}")
        _lgb_tree(text[start:stop], i, width)


def _lgb_header(block: str) -> dict[str, str]:
    header: dict[str, str] = {}
    for line in block.split("\n"):
        if not line or line == "average_output":
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in _LGB_HEADER_KEYS or key in header:
            raise _Refused(f"has a text model header line LightGBM does not write: {line[:40]!r}")
        if "=" in value and key not in ("feature_names", "monotone_constraints"):
            raise _Refused(f"has a text model header line with two '=': {line[:40]!r}")
        header[key] = value
    missing = _LGB_HEADER_KEYS - {"monotone_constraints"} - set(header)
    if missing:
        raise _Refused(f"has a text model without {', '.join(sorted(missing))}")
    return header


def _lgb_int(fields: dict[str, str], key: str) -> int:
    return int(_lgb_number(fields.get(key, ""), "int", key))


def _lgb_number(token: str, kind: str, key: str) -> float:
    pattern = _INT if kind == "int" else _FLOAT
    if not pattern.fullmatch(token):
        raise _Refused(f"has a text model whose {key} is not a list of numbers: {token[:20]!r}")
    value = int(token) if kind == "int" else float(token)
    if kind == "int" and abs(value) > _INT32:
        raise _Refused(f"has a text model whose {key} holds a number beyond 32 bits")
    return value


def _lgb_tree(block: str, index: int, width: int) -> None:
    lines = block.split("\n")
    if lines[0] != f"Tree={index}":
        raise _Refused(f"has a text model whose tree {index} does not start with Tree={index}")
    fields: dict[str, str] = {}
    rest = lines[1:]
    while rest and rest[0]:
        key, sep, value = rest.pop(0).partition("=")
        known = key in _LGB_NODE_ARRAYS or key in _LGB_LEAF_ARRAYS or key in _LGB_SCALARS
        if not sep or not known or key in fields or "=" in value:
            raise _Refused(f"has a text model with a line LightGBM does not write in tree {index}")
        fields[key] = value
    if len(fields) > _LGB_TREE_LINES or any(rest):
        raise _Refused(f"has a text model with more lines than LightGBM reads in tree {index}")
    scalars = {
        k: _lgb_number(v, _LGB_SCALARS[k], k) for k, v in fields.items() if k in _LGB_SCALARS
    }
    leaves = int(scalars.get("num_leaves", 0))
    if leaves < 1 or scalars.get("num_cat") != 0 or scalars.get("is_linear", 0) != 0:
        raise _Refused(
            f"has a text model whose tree {index} has no leaves, categorical splits or linear "
            "leaves (only numeric splits are loaded)"
        )
    arrays: dict[str, list[float]] = {}
    for key, kind, count in [
        *((k, t, leaves - 1) for k, t in _LGB_NODE_ARRAYS.items()),
        *((k, t, leaves) for k, t in _LGB_LEAF_ARRAYS.items()),
    ]:
        if key not in fields:
            continue
        tokens = fields[key].split(" ") if fields[key] else []
        if len(tokens) != count:
            raise _Refused(f"has a text model whose tree {index} has {key} of the wrong size")
        arrays[key] = [_lgb_number(t, kind, key) for t in tokens]
    required = ["leaf_value"]
    if leaves > 1:
        required += ["split_feature", "threshold", "left_child", "right_child"]
    if any(key not in arrays for key in required):
        raise _Refused(f"has a text model whose tree {index} lacks {', '.join(required)}")
    if leaves == 1:
        return
    inner = leaves - 1
    for node in range(inner):
        for side in ("left_child", "right_child"):
            child = int(arrays[side][node])
            if not (node < child < inner or (child < 0 and ~child < leaves)):
                raise _Refused(
                    f"has a tree ({index}) whose {side} index is outside its nodes and leaves "
                    "(or loops back)"
                )
        if not 0 <= arrays["split_feature"][node] < width:
            raise _Refused(
                f"has a tree ({index}) splitting on a feature outside its {width} input columns"
            )
        decision = int(arrays.get("decision_type", [0] * inner)[node])
        if not 0 <= decision <= 127 or decision & 1:
            raise _Refused(f"has a tree ({index}) with a categorical or unknown decision type")


def _boosting_problem_of(model: Any, width: int | None) -> str:
    """The XGBoost or LightGBM estimator `model` (its own width `width`): a loaded booster
    whose structures fit that width."""
    if "_Booster" not in vars(model):
        return ""  # an unfitted template (a VotingClassifier's `estimators`): no booster to run
    if width is None:
        return "has no n_features_in_, so nothing bounds the indices in its booster"
    if type(model).__module__.startswith("xgboost."):
        return _xgboost_problem(model, width)
    return _lightgbm_problem(model, width)


def _live(handle: Any) -> bool:
    import ctypes

    return isinstance(handle, ctypes.c_void_p) and bool(handle.value)


def _lightgbm_problem(model: Any, width: int) -> str:
    from lightgbm.basic import Booster

    booster = getattr(model, "_Booster", None)
    if not isinstance(booster, Booster) or not _live(getattr(booster, "_handle", None)):
        return "has no loaded LightGBM booster"
    if getattr(model, "_n_features", None) != width or booster.num_feature() != width:
        return f"has a LightGBM booster or feature count that is not its {width} input columns"
    params = {**model.get_params(), **getattr(model, "_other_params", {})}
    refused = sorted(k for k in params if _LGB_PREDICT_PARAM.search(str(k)))
    if refused:
        return f"sets LightGBM parameters that change what predict reads: {', '.join(refused)}"
    return ""


#: LightGBM parameters that predict passes to the library and that would turn off its input
#: width check or name files: never in a served model.
_LGB_PREDICT_PARAM = re.compile(r"shape_check|file|output|input|model|path|dir", re.I)


def _xgboost_problem(model: Any, width: int) -> str:
    from xgboost.core import Booster

    booster = getattr(model, "_Booster", None)
    if not isinstance(booster, Booster) or not _live(getattr(booster, "handle", None)):
        return "has no loaded XGBoost booster"
    try:
        document = json.loads(bytes(booster.save_raw(raw_format="json")))
        return _xgboost_model_problem(document["learner"], width)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        return f"has an XGBoost model of an unexpected layout ({type(exc).__name__}: {exc})"


def _xgboost_model_problem(learner: dict[str, Any], width: int) -> str:
    param = learner["learner_model_param"]
    if int(param["num_feature"]) != width:
        return f"has an XGBoost model for {param['num_feature']} features, not its {width}"
    groups = max(int(param["num_class"]), 1) * max(int(param.get("num_target", 1)), 1)
    booster = learner["gradient_booster"]
    name = booster["name"]
    if name not in ("gbtree", "dart"):
        return f"has an XGBoost {name!r} booster; only tree boosters are loaded"
    trees_model = booster["model"] if name == "gbtree" else booster["gbtree"]["model"]
    trees, info = trees_model["trees"], trees_model["tree_info"]
    indptr = [int(i) for i in trees_model.get("iteration_indptr", [0, len(trees)])]
    if int(trees_model["gbtree_model_param"]["num_trees"]) != len(trees) or len(info) != len(trees):
        return "has an XGBoost model whose tree count and tree list disagree"
    if indptr[0] != 0 or indptr[-1] != len(trees) or np.any(np.diff(indptr) < 0):
        return "has an XGBoost model whose iteration pointers are outside its trees"
    if np.any(np.asarray(info, dtype=np.int64) < 0) or np.any(np.asarray(info) >= groups):
        return f"has an XGBoost model adding trees into outputs beyond its {groups}"
    if name == "dart" and len(booster["weight_drop"]) != len(trees):
        return "has an XGBoost dart model whose tree weights do not match its trees"
    for tree in trees:
        problem = _xgboost_tree_problem(tree, width)
        if problem:
            return problem
    return ""


def _xgboost_tree_problem(tree: dict[str, Any], width: int) -> str:
    n = int(tree["tree_param"]["num_nodes"])
    left = np.asarray(tree["left_children"], dtype=np.int64)
    right = np.asarray(tree["right_children"], dtype=np.int64)
    features = np.asarray(tree["split_indices"], dtype=np.int64)
    sizes = {len(left), len(right), len(features), len(tree["split_conditions"])}
    if sizes != {n} or n < 1:
        return "has an XGBoost tree whose arrays do not match its node count"
    if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
        return "has an XGBoost tree with vector leaves (multi-output trees are not loaded)"
    if np.any(np.asarray(tree.get("split_type", []), dtype=np.int64) != 0) or tree.get(
        "categories_nodes"
    ):
        return "has an XGBoost tree with categorical splits (only numeric splits are loaded)"
    leaf = left == -1
    if not np.array_equal(leaf, right == -1):
        return "has an XGBoost tree node with one child"
    return _index_problem(left, right, features, ~leaf, width)
