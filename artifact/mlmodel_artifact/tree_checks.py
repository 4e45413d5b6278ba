"""Index checks on fitted trees, run after a skops load and before the first `predict`.

An allow-listed class can still hold crafted numbers. scikit-learn's compiled tree code follows
child and feature indices without bounds checks (skops leaves `sklearn.tree._tree.Tree` and the
histogram-boosting `TreePredictor` off its default trust for this reason), so a forged index
reads memory outside the arrays: a crash, or process memory in the predictions. This module
checks what that code follows:

- every internal node's children are later nodes inside the tree (also rules out loops);
- every split feature is a column of the input (`n_features_in_` of the estimator that feeds
  the tree: a forest checks its input, then hands it to its trees unchecked);
- a categorical split's bitset index is inside its bitset array;
- a neighbour search tree (KDTree, BallTree) points only at its own samples and nodes.

Leaf values and thresholds are plain numbers and need no check.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mlmodel_artifact.errors import ArtifactError

_TREE_LEAF = -1  # sklearn.tree._tree.TREE_LEAF


def check_trees(model: Any, uri: str) -> None:
    """ArtifactError(ArtifactLoadFailed) naming the first tree whose indices are out of range."""
    for owner, n_features, tree in _trees(model):
        problem = _tree_problem(tree, n_features)
        if problem:
            raise ArtifactError(
                uri,
                "ArtifactLoadFailed",
                f"a tree of {type(owner).__name__} {problem}; the model file is corrupt or "
                "crafted, so it is not used",
            )


def _trees(model: Any) -> Iterator[tuple[Any, int | None, Any]]:
    """(owning estimator, input width, tree) for every fitted tree reachable from `model`.

    The width is the owning estimator's `n_features_in_`. Inside an ensemble (an estimator with
    `estimators_`) it is also at most the ensemble's: a forest or gradient boosting validates X
    once and hands it to its trees unchecked. A pipeline's steps change the width, so there each
    estimator's own counts.
    """
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.neighbors import BallTree, KDTree
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
        if _is_estimator(obj):
            own = getattr(obj, "n_features_in_", None)
            if isinstance(own, int | np.integer):
                width = min(width, int(own)) if in_ensemble and width is not None else int(own)
            owner, in_ensemble = obj, hasattr(obj, "estimators_")
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


def _is_estimator(obj: Any) -> bool:
    return hasattr(obj, "get_params")


def _tree_problem(tree: Any, width: int | None) -> str:
    from sklearn.neighbors import BallTree, KDTree
    from sklearn.tree._tree import Tree

    if isinstance(tree, KDTree | BallTree):
        return _search_tree_problem(tree.__getstate__())
    if isinstance(tree, Tree):
        left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
        leaf = left == _TREE_LEAF
        if not np.array_equal(leaf, right == _TREE_LEAF):
            return "has a node with one child"
        features, limit = np.asarray(tree.feature), int(tree.n_features)
    else:  # a histogram-boosting TreePredictor
        nodes = tree.nodes
        left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
        leaf = nodes["is_leaf"].astype(bool)
        features, limit = nodes["feature_idx"], width if width is not None else 0
        categorical = ~leaf & nodes["is_categorical"].astype(bool)
        if np.any(nodes["bitset_idx"][categorical] >= len(tree.raw_left_cat_bitsets)):
            return "has a categorical split with a bitset index out of range"
    if width is not None:
        limit = min(limit, width)
    return _index_problem(left, right, features, ~leaf, limit)


def _index_problem(
    left: np.ndarray, right: np.ndarray, features: np.ndarray, internal: np.ndarray, width: int
) -> str:
    n = len(left)
    here = np.arange(n)[internal]
    for side, children in (("left", left[internal]), ("right", right[internal])):
        if np.any(children <= here) or np.any(children >= n):
            return f"has a {side} child index outside its {n} nodes (or before its parent)"
    split = features[internal]
    if np.any(split < 0) or np.any(split >= width):
        return f"splits on a feature index outside the model's {width} input columns"
    return ""


def _search_tree_problem(state: tuple[Any, ...]) -> str:
    """KDTree/BallTree state: (data, idx_array, node_data, node_bounds, …, n_nodes at 6, …,
    sample_weight at 12). Queries walk node i to 2i+1 and 2i+2 and read samples through
    idx_array[idx_start:idx_end], all unchecked."""
    data, order, nodes, bounds = (np.asarray(a) for a in state[:4])
    n_nodes, weights = state[6], state[12]
    if data.ndim != 2 or order.shape != (len(data),) or len(nodes) != n_nodes or n_nodes < 1:
        return "has arrays whose sizes do not match"
    n = len(data)
    if np.any(order < 0) or np.any(order >= n):
        return f"has a sample index outside its {n} samples"
    start, end = nodes["idx_start"], nodes["idx_end"]
    if np.any(start < 0) or np.any(start > end) or np.any(end > n):
        return f"has a node whose sample range is outside its {n} samples"
    inner = np.flatnonzero(nodes["is_leaf"] == 0)
    if np.any(2 * inner + 2 >= n_nodes):
        return f"has a child node outside its {n_nodes} nodes"
    if bounds.ndim != 3 or bounds.shape[1] < n_nodes or bounds.shape[2] != data.shape[1]:
        return "has node bounds that do not match its nodes"
    if weights is not None and np.shape(weights) != (n,):
        return "has sample weights that do not match its samples"
    return ""
