"""ClassMap: the one table of model labels, COCO category ids and class names."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from maskrcnn_core.types import Category, ClassMap, ModelInfo


@pytest.fixture
def shapes() -> ClassMap:
    # non-contiguous ids, in an order that is not sorted by id: labels follow the list
    return ClassMap.from_lists(["ring", "circle", "square"], [30, 10, 20])


def test_lookups_go_both_ways(shapes: ClassMap) -> None:
    assert shapes.names == ("ring", "circle", "square")
    assert shapes.category_ids == (30, 10, 20)
    assert list(shapes.labels) == [1, 2, 3] and len(shapes) == shapes.num_classes == 3
    for label, (category_id, name) in enumerate([(30, "ring"), (10, "circle"), (20, "square")], start=1):
        assert shapes.label_to_category_id(label) == category_id
        assert shapes.category_id_to_label(category_id) == label
        assert shapes.label_to_name(label) == name
        assert shapes.name_to_label(name) == label
        assert shapes.category_id_to_name(category_id) == name
        assert shapes.category(label) == Category(category_id, name)
    assert shapes.has_name("ring") and not shapes.has_name("star")
    assert shapes.has_category_id(20) and not shapes.has_category_id(2)


def test_array_lookups(shapes: ClassMap) -> None:
    np.testing.assert_array_equal(shapes.labels_to_category_ids(np.array([3, 1, 1, 2])), [20, 30, 30, 10])
    np.testing.assert_array_equal(shapes.category_ids_to_labels([10, 20, 30, 10]), [2, 3, 1, 2])
    empty = shapes.labels_to_category_ids(np.zeros(0, dtype=np.int64))
    assert empty.shape == (0,) and empty.dtype == np.int64
    assert shapes.category_ids_to_labels([]).shape == (0,)


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (lambda m: m.label_to_category_id(0), r"labels must be in 1..3, got 0"),
        (lambda m: m.label_to_name(4), r"labels must be in 1..3, got 4"),
        (lambda m: m.category_id_to_label(11), r"unknown category ids \[11\]; known: \[30, 10, 20\]"),
        (lambda m: m.name_to_label("star"), r"unknown class name 'star'"),
        (lambda m: m.labels_to_category_ids([1, 0, 5]), r"labels must be in 1..3, got \[0, 5\]"),
        (lambda m: m.category_ids_to_labels([10, 12, 13]), r"unknown category ids \[12, 13\]"),
    ],
)
def test_unknown_keys_are_clear_errors(shapes: ClassMap, lookup, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        lookup(shapes)


@pytest.mark.parametrize(
    ("names", "ids", "message"),
    [
        (["a", "b", "a"], [1, 2, 3], r"class names must be unique, got repeated names \['a'\]"),
        (["a", "b", "c"], [4, 5, 4], r"category ids must be unique, got repeated ids \[4\]"),
        (["a", "b"], [1, 2, 3], "2 class names but 3 category ids"),
        ([], [], "at least one class"),
        (["a", ""], [1, 2], "non-empty strings"),
        (["a", "b"], [1, 2.5], "category ids must be integers"),
        (["a", "b"], [1, True], "category ids must be integers"),
    ],
)
def test_invalid_maps_are_refused(names: list, ids: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClassMap.from_lists(names, ids)


def test_is_immutable_hashable_and_compared_by_value(shapes: ClassMap) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        shapes.categories = ()  # type: ignore[misc]
    same = ClassMap((Category(30, "ring"), Category(10, "circle"), Category(20, "square")))
    assert same == shapes and hash(same) == hash(shapes)
    assert ClassMap.from_lists(["circle", "ring", "square"], [10, 30, 20]) != shapes
    assert {shapes: "x"}[same] == "x"


def test_plain_dict_round_trip(shapes: ClassMap) -> None:
    data = shapes.to_dict()
    assert data == {"class_names": ["ring", "circle", "square"], "category_ids": [30, 10, 20]}
    assert ClassMap.from_dict(data) == shapes
    with pytest.raises(ValueError, match="category_ids"):
        ClassMap.from_dict({"class_names": ["a"]})


def test_numbered_and_default_ids() -> None:
    assert ClassMap.numbered(3).to_dict() == {
        "class_names": ["class_1", "class_2", "class_3"],
        "category_ids": [1, 2, 3],
    }
    assert ClassMap.from_lists(["a", "b"]).category_ids == (1, 2)
    with pytest.raises(ValueError, match="positive integer"):
        ClassMap.numbered(0)


def test_repeated_names_of_old_class_lists_are_told_apart_by_id() -> None:
    # torchvision's COCO list repeats "N/A" for its unused ids
    told_apart = ClassMap.telling_apart_repeated_names(["person", "N/A", "car", "N/A"], [1, 12, 3, 26])
    assert told_apart.names == ("person", "N/A (id 12)", "car", "N/A (id 26)")
    assert told_apart.category_ids == (1, 12, 3, 26)


def test_model_info_carries_one(shapes: ClassMap) -> None:
    info = ModelInfo(name="shapes", arch="mobilenet_v2_fpn", class_map=shapes)
    assert info.class_names == ("ring", "circle", "square")
    assert info.categories[0] == Category(30, "ring")


def test_types_module_stays_free_of_torch() -> None:
    code = "import sys, maskrcnn_core.types; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_names_in_use_leave_out_torchvisions_unused_coco_ids():
    from maskrcnn_core.model.factories import COCO_CLASS_MAP

    in_use = COCO_CLASS_MAP.names_in_use
    assert len(COCO_CLASS_MAP) == 90
    assert len(in_use) == 80  # COCO's 80 object classes
    assert "person" in in_use and "toothbrush" in in_use
    assert not [n for n in in_use if n.startswith("N/A")]
    plain = ClassMap.from_lists(["circle", "N/A", "ring"])
    assert plain.names_in_use == ("circle", "ring")
