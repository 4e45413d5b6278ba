"""Index checks on fitted structures, run after a skops load and before the first `predict`.

An allow-listed class can still hold crafted numbers. scikit-learn's compiled code follows the
indices inside fitted trees, neighbour search trees and libsvm models without bounds checks
(skops leaves `sklearn.tree._tree.Tree` and the histogram-boosting `TreePredictor` off its
default trust for this reason), so a forged index reads memory outside its array: a crash, or
process memory in the predictions. This module checks what that code follows:

- decision trees (forests, gradient boosting, histogram boosting): every internal node's
  children are later nodes inside the tree (which also rules out loops); every split feature is
  a column of the input (`n_features_in_` of the estimator that feeds the tree, and of the
  ensemble around it: a forest checks X once, then hands it to its trees unchecked); a
  categorical split's bitset and feature map entries exist;
- neighbour search trees (KDTree, BallTree): sample indices, node ranges and children inside
  their arrays;
- SVC/SVR: support vectors as wide as the input, coefficient, intercept and class-count arrays
  of the sizes libsvm assumes.

Leaf values, thresholds and coefficients are plain numbers and need no check; numpy-only
estimators (linear models, naive Bayes) index through numpy, which checks bounds itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mlmodel_artifact.errors import ArtifactError

_TREE_LEAF = -1  # sklearn.tree._tree.TREE_LEAF


def check_trees(model: Any, uri: str) -> None:
    """ArtifactError(ArtifactLoadFailed) naming the first structure with an index out of range."""
    for owner, width, structure in _structures(model):
        problem = _problem(owner, structure, width)
        if problem:
            raise ArtifactError(
                uri,
                "ArtifactLoadFailed",
                f"the fitted {type(owner).__name__} {problem}; the model file is corrupt or "
                "crafted, so it is not used",
            )


def _structures(model: Any) -> Iterator[tuple[Any, int | None, Any]]:
    """(owning estimator, input width, structure) for every checked structure in `model`.

    The width is the owning estimator's `n_features_in_`. Inside an ensemble (an estimator with
    `estimators_`) it is also at most the ensemble's. A pipeline's steps change the width, so
    there each estimator's own counts.
    """
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.neighbors import BallTree, KDTree
    from sklearn.svm._base import BaseLibSVM
    from sklearn.tree._tree import Tree

    seen: set[int] = set()
    # (owner, object, width, whether the object sits inside an ensemble)
    stack: list[tuple[Any, Any, int | None, bool]] = [(None, model, None, False)]
    while stack:
        owner, obj, width, in_ensemble = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Tree | TreePredictor | KDTree | BallTree):
            yield owner, width, obj
            continue
        if hasattr(obj, "get_params"):  # an estimator
            own = getattr(obj, "n_features_in_", None)
            if isinstance(own, int | np.integer):
                width = min(width, int(own)) if in_ensemble and width is not None else int(own)
            owner, in_ensemble = obj, hasattr(obj, "estimators_")
            if isinstance(obj, BaseLibSVM):
                yield obj, width, obj
        stack.extend((owner, child, width, in_ensemble) for child in _children(obj))


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

    if isinstance(structure, KDTree | BallTree):
        return _search_tree_problem(structure.__getstate__())
    if isinstance(structure, Tree):
        return _sklearn_tree_problem(structure, width)
    if isinstance(structure, TreePredictor):
        return _predictor_problem(owner, structure, width)
    return _svm_problem(structure, width)


def _sklearn_tree_problem(tree: Any, width: int | None) -> str:
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    leaf = left == _TREE_LEAF
    if not np.array_equal(leaf, right == _TREE_LEAF):
        return "has a tree node with one child"
    limit = int(tree.n_features) if width is None else min(int(tree.n_features), width)
    return _index_problem(left, right, np.asarray(tree.feature), ~leaf, limit)


def _predictor_problem(owner: Any, predictor: Any, width: int | None) -> str:
    """A histogram-boosting tree; categorical splits also index the owner's feature map."""
    nodes = predictor.nodes
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    internal = ~nodes["is_leaf"].astype(bool)
    problem = _index_problem(left, right, nodes["feature_idx"], internal, width or 0)
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


def _search_tree_problem(state: tuple[Any, ...]) -> str:
    """KDTree/BallTree state: (data, idx_array, node_data, node_bounds, …, n_nodes at 6, …,
    sample_weight at 12). Queries walk node i to 2i+1 and 2i+2 and read samples through
    idx_array[idx_start:idx_end], all unchecked."""
    data, order, nodes, bounds = (np.asarray(a) for a in state[:4])
    n_nodes, weights = state[6], state[12]
    if data.ndim != 2 or order.shape != (len(data),) or len(nodes) != n_nodes or n_nodes < 1:
        return "has a search tree whose array sizes do not match"
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


def _svm_problem(model: Any, width: int | None) -> str:
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
