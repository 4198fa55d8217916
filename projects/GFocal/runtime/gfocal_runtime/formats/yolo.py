"""YOLO (Ultralytics) labels: a ``data.yaml`` and one ``.txt`` per image.

Read by Ultralytics' rules:

- ``path``: the dataset root; absolute, or relative to the yaml's folder, else to the working
  directory (default: the yaml's folder). ``train`` / ``val`` / ``test`` (each optional): a folder
  (images found recursively), a ``.txt`` list of image paths (``./x`` and other relative lines
  resolve against the list's folder) or a list of either, relative to ``path``; a value
  ``../x`` that does not exist is tried as ``x`` (Roboflow's exports).
- ``names``: a list, or ``{index: name}`` with indices 0..n-1; ``nc``, if given, must agree.
- Labels: the image path with its last ``/images/`` replaced by ``/labels/`` and its extension
  by ``.txt``; a missing or empty file is a background image (kept).
- A line is ``cls cx cy w h`` normalised to the EXIF-corrected image size, or a polygon ``cls x1
  y1 x2 y2 ...`` (reduced to its box). Values up to 1% outside [0, 1] are clipped; more is
  refused, as is a 6-column line (a prediction with its confidence), a class index outside
  ``names``, or an odd number of polygon coordinates.

Writing puts ``cls cx cy w h`` with 6 decimals; predictions add the confidence as a sixth column
(Ultralytics' ``save_conf``). A write-back keeps unchanged lines (polygons included) byte for byte.
"""

import os
import shutil
from typing import Dict, List, Optional

from .records import IMAGE_EXTENSIONS, LabelFormatError, LabelSet, box_changed, image_size, make_box

__all__ = ["read", "write", "label_path"]

_SPLITS = ("train", "val", "test")
_TOLERANCE = 0.01


def label_path(image_path: str) -> str:
    """The label file of an image: its last ``/images/`` becomes ``/labels/``, its extension ``.txt``."""
    head, sep, tail = image_path.rpartition(f"{os.sep}images{os.sep}")
    path = f"{head}{os.sep}labels{os.sep}{tail}" if sep else image_path
    return os.path.splitext(path)[0] + ".txt"


def _load_yaml(path: str) -> dict:
    import yaml

    try:
        with open(path, encoding="utf-8-sig") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise LabelFormatError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("names") is None:
        raise LabelFormatError(f"{path}: a YOLO data yaml needs 'names' (a list of class names or {{index: name}})")
    return data


def _class_names(data: dict, path: str) -> List[str]:
    names = data["names"]
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise LabelFormatError(f"{path}: 'names' indices must be 0..{len(keys) - 1}, got {keys}")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names:
        raise LabelFormatError(f"{path}: 'names' must be a non-empty list or {{index: name}}")
    if data.get("nc") is not None and data["nc"] != len(names):
        raise LabelFormatError(f"{path}: 'nc: {data['nc']}' but 'names' has {len(names)} entries")
    return [str(n) for n in names]


def _root(data: dict, yaml_path: str) -> str:
    base = os.path.dirname(yaml_path)
    root = str(data.get("path") or "")
    if not root:
        return base
    root = os.path.expanduser(root)
    if os.path.isabs(root):
        return root
    return os.path.abspath(os.path.join(base, root) if os.path.exists(os.path.join(base, root)) else root)


def _images_of(entry, root: str, yaml_path: str, split: str) -> List[str]:
    files = []
    for item in entry if isinstance(entry, list) else [entry]:
        item = str(item)
        path = os.path.normpath(os.path.join(root, item))
        if not os.path.exists(path) and item.startswith("../"):
            path = os.path.normpath(os.path.join(root, item[3:]))
        if os.path.isdir(path):
            for folder, dirs, names in os.walk(path):
                dirs.sort()
                files += [os.path.join(folder, n) for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
        elif os.path.isfile(path):
            with open(path, encoding="utf-8-sig") as f:
                lines = [line.strip() for line in f.read().splitlines() if line.strip()]
            parent = os.path.dirname(path)
            files += [os.path.normpath(x if os.path.isabs(x) else os.path.join(parent, x)) for x in lines]
        else:
            raise LabelFormatError(f"{yaml_path}: '{split}: {item}' -> {path} is neither a folder nor an image list")
    return sorted(set(files))


def _parse_labels(path: str, width: int, height: int, num_classes: int) -> tuple:
    """Boxes of one label file and its line count; a missing file has none."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return [], 0
    text = raw.decode("utf-8-sig")
    boxes = []
    for index, line in enumerate(text.splitlines()):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{index + 1}"
        if len(parts) == 6:
            raise LabelFormatError(
                f"{where}: 6 columns (a prediction with its confidence?); expected 'cls cx cy w h' or a polygon"
            )
        if len(parts) < 5 or len(parts) % 2 == 0:
            raise LabelFormatError(f"{where}: {len(parts)} columns; expected 'cls cx cy w h' or 'cls x1 y1 x2 y2 ...'")
        try:
            cls = int(parts[0])
            values = [float(v) for v in parts[1:]]
        except ValueError:
            raise LabelFormatError(f"{where}: expected an integer class and numbers, got {line.strip()!r}") from None
        if not 0 <= cls < num_classes:
            raise LabelFormatError(f"{where}: class {cls} is outside names (0..{num_classes - 1})")
        if len(values) == 4:
            cx, cy, w, h = values
            corners = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            checked = values + list(corners)
        else:
            xs, ys = values[0::2], values[1::2]
            corners = (min(xs), min(ys), max(xs), max(ys))
            checked = values
        if min(checked) < -_TOLERANCE or max(checked) > 1 + _TOLERANCE:
            raise LabelFormatError(f"{where}: values outside [0, 1] by more than 1%; expected normalised coordinates")
        x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in corners)
        boxes.append(make_box([x0 * width, y0 * height, x1 * width, y1 * height], cls, {"line": index}))
    return boxes, len(text.splitlines())


def read(path: str, images: Optional[str] = None) -> LabelSet:
    """Read a YOLO dataset from its ``data.yaml`` (see the module doc); ``images`` is unused
    (the yaml says where the images are)."""
    yaml_path = os.path.abspath(path)
    data = _load_yaml(yaml_path)
    classes = _class_names(data, yaml_path)
    root = _root(data, yaml_path)
    splits: Dict[str, List[dict]] = {}
    for split in [s for s in _SPLITS if data.get(s)] + [s for s in data if s == "minival" and data[s]]:
        records = []
        for file_name in _images_of(data[split], root, yaml_path, split):
            width, height = image_size(file_name)
            labels = label_path(file_name)
            boxes, lines = _parse_labels(labels, width, height, len(classes))
            records.append(
                {
                    "file_name": file_name,
                    "height": height,
                    "width": width,
                    "image_id": os.path.relpath(file_name, root).replace(os.sep, "/"),
                    "annotations": boxes,
                    "source": {"label_file": labels, "boxes": len(boxes), "lines": lines},
                }
            )
        splits[split] = records
    if not splits:
        raise LabelFormatError(
            f"{yaml_path}: no 'train', 'val' or 'test' entry; expected at least one image folder or list"
        )
    return LabelSet("yolo", yaml_path, classes, splits, images, meta={"root": root})


def _line(box: dict, width: int, height: int, predictions: bool) -> str:
    x0, y0, x1, y1 = box["bbox"]
    values = ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
    text = f"{int(box['category_id'])} " + " ".join(f"{v:.6f}" for v in values)
    if predictions:  # a label file keeps 5 columns: a suggestion's score is not written back
        text += f" {float(box.get('score', 1.0)):.6f}"
    return text


def _write_back(record: dict, out_path: str, predictions: bool) -> None:
    source = record["source"]
    boxes = record["annotations"]
    kept_lines = {b["source"]["line"] for b in boxes if "source" in b}
    unchanged = len(kept_lines) == source["boxes"] == len(boxes) and not any(box_changed(b) for b in boxes)
    if unchanged and os.path.isfile(source["label_file"]):
        shutil.copyfile(source["label_file"], out_path)
        return
    try:
        with open(source["label_file"], encoding="utf-8-sig", newline="") as f:
            old = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        old = []
    newline = next((line[len(line.rstrip("\r\n")) :] for line in old if line.rstrip("\r\n") != line), "\n")
    by_line = {b["source"]["line"]: b for b in boxes if "source" in b}
    out = []
    for index, line in enumerate(old):
        if not line.split():
            out.append(line)
        elif index in by_line:
            box = by_line[index]
            out.append(line if not box_changed(box) else _line(box, record["width"], record["height"], False) + newline)
    if out and not out[-1].endswith(("\n", "\r")):
        out[-1] += newline
    out += [_line(b, record["width"], record["height"], predictions) + newline for b in boxes if "source" not in b]
    with open(out_path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(out))


def write(labels: LabelSet, out_dir: str, predictions: bool = False) -> List[str]:
    """Write ``labels`` as YOLO under ``out_dir``.

    Read from YOLO: the label files in the source's layout relative to its root, plus the yaml
    (copied): unchanged files byte-identical, changed boxes rewritten on their own line. From
    another format: ``images/<split>/`` (links to the images, copies where links fail),
    ``labels/<split>/`` and a ``data.yaml`` with an absolute ``path``.
    """
    out_dir = os.path.abspath(out_dir)
    written = []
    if labels.format == "yolo":
        root = labels.meta["root"]
        for record in labels.split(None):
            label = record["source"]["label_file"]
            rel = os.path.relpath(label, root)
            if rel.startswith(".."):
                raise LabelFormatError(f"{label}: outside the dataset root {root}; cannot mirror its layout")
            target = os.path.join(out_dir, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _write_back(record, target, predictions)
            written.append(target)
        yaml_out = os.path.join(out_dir, os.path.basename(labels.path))
        shutil.copyfile(labels.path, yaml_out)
        return written + [yaml_out]
    entries = {}
    for split, records in labels.splits.items():
        image_dir = os.path.join(out_dir, "images", split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(os.path.join(out_dir, "labels", split), exist_ok=True)
        taken = set()
        for index, record in enumerate(records):
            name = os.path.basename(record["file_name"])
            name = name if name not in taken else f"{index}_{name}"  # two folders, one file name
            taken.add(name)
            image = os.path.join(image_dir, name)
            if not os.path.lexists(image):
                try:
                    os.symlink(os.path.abspath(record["file_name"]), image)
                except OSError:
                    shutil.copyfile(record["file_name"], image)
            target = label_path(image)
            lines = [_line(b, record["width"], record["height"], predictions) + "\n" for b in record["annotations"]]
            with open(target, "w", encoding="utf-8") as f:
                f.write("".join(lines))
            written.append(target)
        for key in [split] if split in _SPLITS else ["train", "val"]:  # Ultralytics trains on train + val
            entries.setdefault(key, f"images/{split}")
    yaml_out = os.path.join(out_dir, "data.yaml")
    import yaml

    with open(yaml_out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"path": out_dir, **entries, "names": dict(enumerate(labels.classes))}, f, sort_keys=False)
    return written + [yaml_out]
