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

from collections.abc import Iterator
from typing import Any

import numpy as np

from mlmodel_artifact.errors import ArtifactError

_TREE_LEAF = -1  # sklearn.tree._tree.TREE_LEAF


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
