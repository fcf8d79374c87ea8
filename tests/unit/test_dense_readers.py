"""COCO, BDD100K and Pascal VOC readers on tiny files written in the real formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedforge.config import DataConfig
from fedforge.data.sources import load_dataset
from fedforge.data.targets import BOXES, IGNORE, MASKS
from fedforge.errors import DatasetFormatError, DatasetNotFound


def write_jpg(path: Path, w: int = 80, h: int = 60) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)


def write_coco(root: Path, *, bbox=(10, 5, 20, 30), attributes: bool = False, missing: bool = False) -> None:
    for split in ("train2017", "val2017"):
        images = []
        for i in range(3):
            entry = {"id": i + 1, "file_name": f"{i:03d}.jpg", "width": 80, "height": 60}
            if attributes:
                entry["attributes"] = {
                    "weather": ["clear", "rainy"][i % 2], "scene": ["city", "highway", "city"][i], "timeofday": "night"
                }  # fmt: skip
            images.append(entry)
            if not (missing and split == "val2017" and i == 2):
                write_jpg(root / split / entry["file_name"])
        anns = [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": list(bbox), "area": 600, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 7, "bbox": [40, 20, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 80, 60], "area": 4800, "iscrowd": 1},
        ]
        doc = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "bus"}],
        }
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))


def test_coco_reads_boxes_scaled_to_the_image_size(tmp_path):
    write_coco(tmp_path)
    data = load_dataset(DataConfig(name="coco", root=str(tmp_path), image_size=40))
    assert data.train_x.shape == (3, 3, 40, 40) and data.num_classes == 3  # car, bus + background
    boxes = data.train_targets[BOXES]
    first, labels = boxes.image(0)
    assert labels.tolist() == [1]  # category 3 -> 1; the crowd box is left out
    assert first[0].tolist() == pytest.approx([10 * 0.5, 5 * 40 / 60, 30 * 0.5, 35 * 40 / 60])
    assert boxes.image(1)[1].tolist() == [2] and len(boxes.image(2)[0]) == 0  # an image without boxes is kept


def test_coco_box_outside_the_image_names_file_and_annotation(tmp_path):
    write_coco(tmp_path, bbox=(70, 5, 30, 30))
    with pytest.raises(DatasetFormatError, match=r"instances_train2017.json, image 000.jpg, annotation 1: .*outside"):
        load_dataset(DataConfig(name="coco", root=str(tmp_path), image_size=40))


def test_coco_degenerate_box_is_skipped_with_a_warning(tmp_path):
    write_coco(tmp_path, bbox=(10, 5, 0, 30))
    with pytest.warns(UserWarning, match=r"skipped 1 box\(es\) of zero width or height"):
        data = load_dataset(DataConfig(name="coco", root=str(tmp_path), image_size=40))
    assert len(data.train_targets[BOXES].image(0)[0]) == 0


def test_coco_missing_image_names_it(tmp_path):
    write_coco(tmp_path, missing=True)
    with pytest.raises(DatasetFormatError, match=r"instances_val2017.json references '002.jpg'"):
        load_dataset(DataConfig(name="coco", root=str(tmp_path), image_size=40))


def test_coco_missing_layout_says_where(tmp_path):
    with pytest.raises(DatasetNotFound, match="instances_train"):
        load_dataset(DataConfig(name="coco", root=str(tmp_path)))


def test_bdd100k_attribute_becomes_the_domain(tmp_path):
    write_coco(tmp_path, attributes=True)
    data = load_dataset(DataConfig(name="bdd100k", root=str(tmp_path), image_size=40))
    assert data.domain_names == ["clear", "rainy"] and data.train_domain.tolist() == [0, 1, 0]
    # the attribute codes for the hierarchical split: the domain's first, then the other two
    assert data.train_attributes.tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]
    scene = load_dataset(DataConfig(name="bdd100k", root=str(tmp_path), image_size=40, variant="scene"))
    assert scene.domain_names == ["city", "highway"]
    assert scene.train_attributes.tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]


def write_voc(root: Path, *, bad_mask: bool = False, box=(5, 6, 30, 40)) -> None:
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = {"train": ["2007_000032", "2007_000033"], "val": ["2007_000039"]}
    for split, stems in ids.items():
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(stems) + "\n")
        (root / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")
        for stem in stems:
            write_jpg(root / "JPEGImages" / f"{stem}.jpg", 50, 50)
            mask = np.zeros((50, 50), np.uint8)
            mask[10:30, 10:30] = 15  # person
            mask[9, 10:30] = IGNORE  # the object border VOC marks
            if bad_mask and stem == "2007_000033":
                mask[0, 0] = 40
            png = Image.fromarray(mask, mode="P")
            png.putpalette([0, 0, 0, 128, 0, 0] * 128)
            png.save(root / "SegmentationClass" / f"{stem}.png")
            xml = (
                "<annotation><size><width>50</width><height>50</height></size>"
                f"<object><name>dog</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
                f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object></annotation>"
            )
            (root / "Annotations" / f"{stem}.xml").write_text(xml)


def test_voc_segmentation_reads_palette_masks(tmp_path):
    write_voc(tmp_path)
    data = load_dataset(DataConfig(name="voc", root=str(tmp_path), image_size=25))
    masks = data.train_targets[MASKS]
    assert masks.shape == (2, 25, 25) and data.num_classes == 21
    assert set(masks.unique().tolist()) <= {0, 15, IGNORE} and (masks == 15).any()
    assert data.train_y.tolist() == [15, 15]  # the dominant class is the partition key


def test_voc_mask_with_unknown_class_names_the_file(tmp_path):
    write_voc(tmp_path, bad_mask=True)
    with pytest.raises(DatasetFormatError, match=r"2007_000033.png has class id\(s\) \[40\]"):
        load_dataset(DataConfig(name="voc", root=str(tmp_path), image_size=25))


def test_voc_detection_reads_xml_boxes(tmp_path):
    write_voc(tmp_path)
    data = load_dataset(DataConfig(name="voc", root=str(tmp_path), image_size=25, variant="detection"))
    boxes, labels = data.train_targets[BOXES].image(0)
    assert labels.tolist() == [12] and boxes[0].tolist() == pytest.approx([2.0, 2.5, 15.0, 20.0])


def test_voc_box_outside_names_the_xml(tmp_path):
    write_voc(tmp_path, box=(5, 6, 90, 40))
    with pytest.raises(DatasetFormatError, match=r"2007_000032.xml, object 0: .*outside"):
        load_dataset(DataConfig(name="voc", root=str(tmp_path), image_size=25, variant="detection"))


def test_detection_task_on_a_label_only_dataset_is_refused(tmp_path):
    import fedforge
    from fedforge.errors import ConfigError

    with pytest.raises(ConfigError, match="task 'detection' learns boxes, but dataset 'digits' has labels only"):
        fedforge.run(
            task={"name": "detection"}, model={"name": "fcos_tiny"}, tracking={"runs_dir": str(tmp_path)}, quiet=True
        )


@pytest.mark.parametrize(
    ("config", "needle"), [("voc_segmentation_fedavg", "JPEGImages"), ("bdd100k_detection_fedavg", "instances_train")]
)
def test_real_data_configs_say_where_the_data_goes(tmp_path, config, needle):
    import fedforge

    with pytest.raises(DatasetNotFound, match=needle):
        fedforge.run(
            f"configs/{config}.yaml",
            **{"data.root": str(tmp_path / "nothing"), "tracking.runs_dir": str(tmp_path)},
            quiet=True,
        )


def test_bdd100k_clients_split_hierarchically_by_its_attributes(tmp_path):
    """COALA's `hdir` split runs on the reader's attribute table through the config."""
    from fedforge.api import resolve_config
    from fedforge.data.federated import partition_clients

    write_coco(tmp_path, attributes=True)
    cfg = resolve_config(None, {"data": {
        "name": "bdd100k", "root": str(tmp_path), "image_size": 40, "num_clients": 2, "local_test_fraction": 0,
        "partition": {"kind": "hdirichlet", "alpha": 0.5, "min_samples": 0},
    }})  # fmt: skip
    data = load_dataset(cfg.data)
    train, _ = partition_clients(cfg, data, np.arange(len(data.train_y)))
    assert sorted(torch.cat(train).tolist()) == [0, 1, 2]
