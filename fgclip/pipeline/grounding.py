"""Step 3: a box for each referring expression from an open-vocabulary detector.

Detectors: OWLv2 / OWL-ViT and Grounding DINO through transformers' zero-shot object detection classes
(by Hub name or local folder), or YOLO-World through ultralytics when it is installed. Every detector
yields candidate (box, expression, score) triples with boxes normalised to the original image; one
selection rule (`select_boxes`: confidence > threshold, torchvision NMS) turns them into regions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torchvision.ops import batched_nms, box_convert, nms

from fgclip.data.schema import Record, RecordError, Region, check_bbox
from fgclip.errors import UserError
from fgclip.pipeline.config import GroundingConfig, ModelLoading
from fgclip.pipeline.expressions import EXPRESSIONS_FIELD
from fgclip.pipeline.runtime import image_batches, resolve_dtype, to_model_inputs

_OWL_TYPES = ("owlv2", "owlvit")
_GROUNDING_DINO_TYPES = ("grounding-dino", "mm-grounding-dino")
_GROUNDING_DINO_MAX_TOKENS = 256  # its text encoder's length; longer query lists are split


@dataclass
class Candidates:
    """Detections of one image: `boxes (K, 4)` normalised x1y1x2y2, `scores (K,)`, `queries (K,)` long."""

    boxes: torch.Tensor
    scores: torch.Tensor
    queries: torch.Tensor

    @classmethod
    def empty(cls) -> Candidates:
        return cls(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))


def select_boxes(candidates: Candidates, config: GroundingConfig) -> list[int]:
    """Indices of the kept candidates, best first.

    Keeps scores > `score_threshold` (boxes with no area - e.g. OWLv2 boxes that lay in its square padding and
    were clamped flat - are never candidates); NMS within each expression at `nms_iou`; the best
    `max_boxes_per_expression` boxes per expression; then (with `cross_expression_nms`) NMS across expressions,
    so one object never carries two captions.
    """
    boxes = candidates.boxes
    has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    keep = torch.nonzero((candidates.scores > config.score_threshold) & has_area).flatten()
    if keep.numel() == 0:
        return []
    boxes, scores, queries = candidates.boxes[keep].float(), candidates.scores[keep].float(), candidates.queries[keep]
    order = batched_nms(boxes, scores, queries, config.nms_iou)  # sorted by score, best first
    per_query: Counter = Counter()
    kept = []
    for index in order.tolist():
        query = int(queries[index])
        if per_query[query] < config.max_boxes_per_expression:
            per_query[query] += 1
            kept.append(index)
    kept_tensor = torch.tensor(kept, dtype=torch.long)
    if config.cross_expression_nms and len(kept) > 1:
        survivors = nms(boxes[kept_tensor], scores[kept_tensor], config.nms_iou)
        kept_tensor = kept_tensor[survivors]
    return keep[kept_tensor].tolist()


def normalise_boxes(boxes: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """Pixel x1y1x2y2 -> normalised to [0, 1] by the image size, clamped into the image."""
    scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    return (boxes / scale).clamp(0.0, 1.0)


class TransformersDetector:
    """OWLv2 / OWL-ViT / Grounding DINO through `AutoModelForZeroShotObjectDetection`."""

    def __init__(self, name: str, device: str, dtype: torch.dtype, score_floor: float, trust_remote_code: bool = False):
        from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

        try:
            model_type = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code).model_type
            self.processor = AutoProcessor.from_pretrained(name, trust_remote_code=trust_remote_code)
            self.model = AutoModelForZeroShotObjectDetection.from_pretrained(
                name, dtype=dtype, trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError) as error:
            raise UserError(f"cannot load the detector {name!r}: {str(error).splitlines()[0]}") from error
        if model_type not in _OWL_TYPES + _GROUNDING_DINO_TYPES:
            raise UserError(f"detector type {model_type!r} is not supported; use OWLv2, OWL-ViT or Grounding DINO")
        self.model_type = model_type
        self.model.to(device).eval()
        self.device, self.dtype = device, dtype
        self.score_floor = score_floor  # candidates at or below this score are never kept anyway

    @torch.inference_mode()
    def detect(self, images: list, queries: list[list[str]]) -> list[Candidates]:
        if self.model_type in _OWL_TYPES:
            return self._detect_owl(images, queries)
        return [self._detect_grounding_dino(image, texts) for image, texts in zip(images, queries)]

    def _detect_owl(self, images, queries) -> list[Candidates]:
        inputs = self.processor(text=queries, images=images, return_tensors="pt", padding="max_length", truncation=True)
        outputs = self.model(**to_model_inputs(inputs, self.model, self.dtype))
        results = []
        for index, (image, texts) in enumerate(zip(images, queries)):
            # (P, Q): padded query slots past this image's own queries are dropped.
            probs = outputs.logits[index, :, : len(texts)].float().sigmoid().cpu()
            # OWLv2 pads each image to a square at the bottom/right: boxes are fractions of that square.
            side = max(image.width, image.height)
            boxes = box_convert(outputs.pred_boxes[index].float().cpu(), "cxcywh", "xyxy") * side
            boxes = normalise_boxes(boxes, image.width, image.height)
            results.append(_pairs(boxes, probs, self.score_floor))
        return results

    def _query_chunks(self, texts: list[str]) -> list[tuple[int, list[str], list[tuple[int, int]]]]:
        """Split queries into prompts "q1 . q2 ." that fit the text encoder, with each query's token span."""
        tokenizer = self.processor.tokenizer
        chunks, start, current, spans, position = [], 0, [], [], 1  # position 1: after [CLS]
        for index, text in enumerate(texts):
            length = len(tokenizer(text.lower(), add_special_tokens=False)["input_ids"])
            if current and position + length + 2 > _GROUNDING_DINO_MAX_TOKENS:
                chunks.append((start, current, spans))
                start, current, spans, position = index, [], [], 1
            spans.append((position, position + length))
            current.append(text.lower())
            position += length + 1  # the "." separator
        if current:
            chunks.append((start, current, spans))
        return chunks

    def _detect_grounding_dino(self, image, texts: list[str]) -> Candidates:
        found = []
        for first, chunk, spans in self._query_chunks(texts):
            prompt = " . ".join(chunk) + " ."
            inputs = self.processor(images=image, text=prompt, return_tensors="pt")
            outputs = self.model(**to_model_inputs(inputs, self.model, self.dtype))
            token_probs = outputs.logits[0].float().sigmoid().cpu()  # (P, 256)
            # A query's score on a box is its best token's score (phrase grounding).
            probs = torch.stack([token_probs[:, a:b].max(dim=1).values for a, b in spans], dim=1)
            boxes = box_convert(outputs.pred_boxes[0].float().cpu(), "cxcywh", "xyxy").clamp(0.0, 1.0)
            pairs = _pairs(boxes, probs, self.score_floor)
            pairs.queries += first
            found.append(pairs)
        return Candidates(
            torch.cat([c.boxes for c in found]),
            torch.cat([c.scores for c in found]),
            torch.cat([c.queries for c in found]),
        )


class UltralyticsDetector:
    """YOLO-World through ultralytics (an optional install): `--grounding_model yolov8x-worldv2.pt`."""

    def __init__(self, weights: str, device: str, score_floor: float):
        try:
            from ultralytics import YOLOWorld
        except ImportError as error:
            raise UserError("YOLO-World needs ultralytics: pip install 'fgclip[yolo]'") from error
        self.model = YOLOWorld(weights)
        self.device, self.score_floor = device, score_floor

    def detect(self, images: list, queries: list[list[str]]) -> list[Candidates]:
        results = []
        for image, texts in zip(images, queries):
            self.model.set_classes(list(texts))  # the vocabulary differs per image
            # Its own NMS runs per class at a loose IoU; ours follows in `select_boxes`.
            (result,) = self.model.predict(image, conf=self.score_floor, iou=0.7, device=self.device, verbose=False)
            boxes = result.boxes
            results.append(
                Candidates(boxes.xyxyn.float().cpu().clamp(0, 1), boxes.conf.float().cpu(), boxes.cls.long().cpu())
            )
        return results


def _pairs(boxes: torch.Tensor, probs: torch.Tensor, floor: float) -> Candidates:
    """Every (box, query) pair of a `(P, Q)` score matrix above `floor`."""
    box_index, query_index = torch.nonzero(probs > floor, as_tuple=True)
    return Candidates(boxes[box_index], probs[box_index, query_index], query_index)


def build_detector(config: GroundingConfig, device: str, loading: ModelLoading | None = None):
    loading = loading or ModelLoading()
    backend = config.backend
    if backend == "auto":
        backend = "ultralytics" if str(config.model).endswith((".pt", ".pth")) else "transformers"
    if backend == "ultralytics":
        return UltralyticsDetector(config.model, device, config.score_threshold)
    if backend == "transformers":
        return TransformersDetector(
            config.model,
            device,
            resolve_dtype(loading.dtype, device),
            config.score_threshold,
            loading.trust_remote_code,
        )
    raise UserError(f"unknown grounding backend {backend!r}; use auto, transformers or ultralytics")


class GroundingStep:
    """Turns each record's expressions into regions; the detector is loaded on first need."""

    def __init__(self, config: GroundingConfig, device: str, loading: ModelLoading | None = None):
        self.config, self.device, self.loading = config, device, loading
        self.detector = None

    def _needs_grounding(self, record: Record) -> bool:
        return bool(record.extra.get(EXPRESSIONS_FIELD)) and (self.config.overwrite or not record.regions)

    def __call__(self, records: list[Record], counts: Counter) -> list[Record]:
        todo = [r for r in records if self._needs_grounding(r)]
        counts["records_already_with_regions"] += sum(
            1 for r in records if r.regions and r.extra.get(EXPRESSIONS_FIELD) and not self.config.overwrite
        )
        if todo and self.config.model is None:
            raise UserError("the grounding step needs a detector: pass --grounding_model NAME_OR_DIR")
        dropped: set[int] = set()
        for usable, images in image_batches(todo, self.config.batch_size, counts, dropped):
            if self.detector is None:
                self.detector = build_detector(self.config, self.device, self.loading)
            queries = [[e["caption"] for e in r.extra[EXPRESSIONS_FIELD]] for r in usable]
            for record, found in zip(usable, self.detector.detect(images, queries)):
                self._to_regions(record, found, counts)
        for record in records:
            record.extra.pop(EXPRESSIONS_FIELD, None)
        return [r for r in records if id(r) not in dropped]

    def _to_regions(self, record: Record, found: Candidates, counts: Counter) -> None:
        expressions = record.extra[EXPRESSIONS_FIELD]
        kept = select_boxes(found, self.config)
        regions = []
        for index in kept:
            expression = expressions[int(found.queries[index])]
            try:
                bbox = check_bbox([round(float(v), 6) for v in found.boxes[index]])
            except RecordError:
                counts["boxes_invalid"] += 1  # collapsed to zero width/height by clamping
                continue
            regions.append(
                Region(bbox=bbox, caption=expression["caption"], long_caption=expression.get("long_caption"))
            )
        grounded = {r.caption for r in regions}
        counts["expressions_grounded"] += len(grounded)
        counts["expressions_not_grounded"] += sum(1 for e in expressions if e["caption"] not in grounded)
        counts["regions"] += len(regions)
        record.regions = regions
