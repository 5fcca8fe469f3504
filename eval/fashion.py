"""Fine-grained fashion retrieval with the Fashion-FINE protocols, and Fashion-FINE's global+local fusion.

    python -m eval.fashion --task fashiongen --data items.jsonl --output_dir DIR [--mode both] [--embedding both]
    python -m eval.fashion --task fashioniq --data cap.dress.val.json cap.shirt.val.json cap.toptee.val.json \\
        --gallery split.dress.val.json split.shirt.val.json split.toptee.val.json --images DIR --output_dir DIR

fashiongen: image <-> product-description retrieval, R@1/5/10 both ways, in two modes.
  full:      every image and every description is a candidate; a hit if any image of the product
             (image -> text: the product's description) ranks in the top K.
  sample100: up to --num_queries items, each ranked against its own pair plus --num_negatives other
             products, drawn from the same subcategory first, then from the rest (seeded, shared by
             both directions and both embeddings).
fashioniq: text-guided image retrieval, R@10/R@50 per category: the query is the normalised sum of the
  reference image's and the modification text's embeddings (zero-shot: Fashion-FINE trains a fusion
  module for this task, FG-CLIP has none); the gallery excludes the reference image (--keep_reference
  keeps it). Without --gallery the gallery is every reference and target image of the category in the
  data (smaller than the official gallery, so recalls come out higher; results.json says which).

--embedding fusion uses Fashion-FINE's global+local embedding, normalize(g*(1-r) + l*r) with r = 0.05
for images and 0.25 for texts, where l is an attention pooling over the patch tokens (encode_dense) or
the word tokens (encode_text_tokens). Fashion-FINE trains that pooling layer; plain FG-CLIP / CLIP folders
have none, so for them it is parameter-free (query = the global embedding, keys/values = normalised
tokens, softmax with --temperature). --embedding both scores the two on the same data and samples.

Fashion-FINE folders (scripts/finetune_fashion.py) are evaluated with what they learned: "fusion" is their
trained pooling and ratios (the fusion options do not apply), it is the default embedding for them, and
a folder finetuned for text-guided retrieval composes its fashioniq queries with its trained
cross-attention composition instead of the sum.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from eval.common.cli import owned_outputs
from eval.common.command import EncoderRun
from eval.common.coverage import Coverage, skipped_reasons
from eval.common.fashion_data import Triplet, load_gallery, load_products, load_triplets
from eval.common.fusion import FusionSettings
from eval.common.images import resolve_image_path
from eval.common.options import encoder_parser
from eval.common.reporting import grouped_bar_plot, markdown_table, model_label
from fgclip.cli import CommandParser, entry_point, option, options_from, positive_int
from fgclip.errors import UserError

if TYPE_CHECKING:  # loaded in main, after the options are checked
    import torch

    from eval.common.encoder import Encoder

GEN_KS = (1, 5, 10)
IQ_KS = (10, 50)
OWNED = owned_outputs({"fashiongen", "fashioniq"}, {"results.md", "fashiongen.png", "fashioniq.png"})


@dataclass
class ProductIndex:
    """The distinct images and description strings of a FashionGen-style file, linked by product."""

    images: list[Path] = field(default_factory=list)
    image_product: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    text_products: list[set[str]] = field(default_factory=list)  # identical strings are one candidate
    product_texts: dict[str, list[int]] = field(default_factory=dict)
    product_images: dict[str, list[int]] = field(default_factory=dict)
    product_subcategory: dict[str, str] = field(default_factory=dict)
    pairs: list[tuple[int, int, str]] = field(default_factory=list)  # (image, text, product) per usable line


def build_product_index(items, paths: list[Path], image_ok: dict[Path, bool], counts: Counter) -> ProductIndex:
    index = ProductIndex()
    image_row: dict[Path, int] = {}
    text_row: dict[str, int] = {}
    seen: set = set()
    for item, path in zip(items, paths):
        if (path, item.text, item.product) in seen:  # a repeated line: scored once
            counts["duplicate_items"] += 1
            continue
        seen.add((path, item.text, item.product))
        if not image_ok[path]:
            counts["skipped_image_failed"] += 1
            continue
        if path not in image_row:
            image_row[path] = len(index.images)
            index.images.append(path)
            index.image_product.append(item.product)
            index.product_images.setdefault(item.product, []).append(image_row[path])
        elif index.image_product[image_row[path]] != item.product:
            counts["skipped_image_in_two_products"] += 1
            continue
        if item.text not in text_row:
            text_row[item.text] = len(index.texts)
            index.texts.append(item.text)
            index.text_products.append(set())
        text = text_row[item.text]
        if item.product not in index.text_products[text]:
            index.text_products[text].add(item.product)
            index.product_texts.setdefault(item.product, []).append(text)
        index.product_subcategory.setdefault(item.product, item.subcategory)
        index.pairs.append((image_row[path], text, item.product))
    return index


def full_mode(index: ProductIndex, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> dict[str, float]:
    """All images vs all descriptions; positives are every image / description of the product."""
    from eval.common.metrics import recall_at_k, recall_keys, retrieval_ranks

    image_positives = [index.product_texts[product] for product in index.image_product]
    text_positives = [
        sorted({i for p in products for i in index.product_images[p]}) for products in index.text_products
    ]
    return {
        **recall_keys("full_i2t", recall_at_k(retrieval_ranks(image_embeds, text_embeds, image_positives), GEN_KS)),
        **recall_keys("full_t2i", recall_at_k(retrieval_ranks(text_embeds, image_embeds, text_positives), GEN_KS)),
    }


@dataclass
class SampledQuery:
    image: int
    text: int
    negative_texts: list[int]
    negative_images: list[int]


def sample_queries(index: ProductIndex, num_queries: int, num_negatives: int, seed: int) -> list[SampledQuery]:
    """The sample-100 protocol's queries and negatives (negatives: same subcategory first, then the rest).

    Products that share the query's description string are never negatives (they would be
    indistinguishable from the positive), and no two negatives share a description string.
    """
    rng = random.Random(seed)
    chosen = rng.sample(index.pairs, min(num_queries, len(index.pairs)))
    products = sorted(index.product_images)
    by_subcategory: dict[str, list[str]] = {}
    for product in products:
        by_subcategory.setdefault(index.product_subcategory[product], []).append(product)
    queries = []
    for image, text, product in chosen:
        excluded = index.text_products[text] | {product}
        same = [p for p in by_subcategory[index.product_subcategory[product]] if p not in excluded]
        rest = [
            p
            for p in products
            if p not in excluded and index.product_subcategory[p] != index.product_subcategory[product]
        ]
        rng.shuffle(same)
        rng.shuffle(rest)
        negatives, negative_texts = [], []
        for candidate in same + rest:
            if len(negatives) == num_negatives:
                break
            candidate_text = next((t for t in index.product_texts[candidate] if t != text), None)
            if candidate_text is not None and candidate_text not in negative_texts:
                negatives.append(candidate)
                negative_texts.append(candidate_text)
        queries.append(
            SampledQuery(
                image,
                text,
                negative_texts=negative_texts,
                negative_images=[rng.choice(index.product_images[p]) for p in negatives],
            )
        )
    return queries


def _ranks_against(queries: torch.Tensor, candidates: torch.Tensor, columns: list[list[int]]) -> torch.Tensor:
    """Ranks of column 0 among each query's own candidate list (lists may differ in length)."""
    import torch

    from eval.common.metrics import rank_of_best_positive
    from fgclip.metrics import candidate_scores

    scores = candidate_scores(queries, candidates, columns)
    positives = torch.zeros_like(scores, dtype=torch.bool)
    positives[:, 0] = True
    return rank_of_best_positive(scores, positives)


def sample100_mode(
    queries: list[SampledQuery], image_embeds: torch.Tensor, text_embeds: torch.Tensor
) -> dict[str, float]:
    from eval.common.metrics import recall_at_k, recall_keys

    i2t = _ranks_against(
        image_embeds[[q.image for q in queries]], text_embeds, [[q.text] + q.negative_texts for q in queries]
    )
    t2i = _ranks_against(
        text_embeds[[q.text for q in queries]], image_embeds, [[q.image] + q.negative_images for q in queries]
    )
    return {**recall_keys("s100_i2t", recall_at_k(i2t, GEN_KS)), **recall_keys("s100_t2i", recall_at_k(t2i, GEN_KS))}


def run_fashiongen(
    options: FashionOptions, gen: FashionGenOptions, encoder: Encoder, embeddings: dict[str, FusionSettings | None]
):
    loaded = load_products(options.data[0])
    counts = loaded.counts
    images_root = options.images or options.data[0].parent
    paths = [resolve_image_path(images_root, item.image) for item in loaded.items]
    unique_paths = list(dict.fromkeys(paths))
    first = encoder.images(unique_paths, embeddings[next(iter(embeddings))])
    image_ok = {path: bool(ok) for path, ok in zip(unique_paths, first.ok)}
    for reason, count in first.failures.items():
        counts[f"images_{reason}"] = count
    index = build_product_index(loaded.items, paths, image_ok, counts)
    cover = Coverage(
        "items",
        counts["items"] - counts["duplicate_items"],
        len(index.pairs),
        skipped_reasons(counts),
        duplicates=counts["duplicate_items"],
    )
    queries = sample_queries(index, gen.num_queries, gen.num_negatives, gen.seed) if gen.mode != "full" else []
    metrics: dict[str, float] = {}
    series: dict[str, dict[str, float]] = {}
    row = {path: i for i, path in enumerate(unique_paths)}
    for position, (name, fusion) in enumerate(embeddings.items()):
        encoded = first if position == 0 else encoder.images(unique_paths, fusion)
        image_embeds = encoded.embeddings[[row[path] for path in index.images]]
        text_embeds = encoder.texts(index.texts, fusion=fusion)
        scores = {}
        if gen.mode in ("full", "both"):
            scores.update(full_mode(index, image_embeds, text_embeds))
        if gen.mode in ("sample100", "both"):
            scores.update(sample100_mode(queries, image_embeds, text_embeds))
        series[name] = scores
        metrics.update({(f"{name}_{k}" if name == "fusion" else k): v for k, v in scores.items()})
    metrics.update(num_images=len(index.images), num_texts=len(index.texts), num_products=len(index.product_images))
    if queries:
        negatives = [len(q.negative_texts) for q in queries]
        metrics.update(s100_queries=len(queries), s100_mean_negatives=sum(negatives) / len(negatives))
        if min(negatives) < gen.num_negatives:
            print(
                f"warning: sample100: some queries have fewer than {gen.num_negatives} negatives "
                f"(min {min(negatives)}): the data has too few products",
                file=sys.stderr,
            )
    keys = list(next(iter(series.values())))
    table = markdown_table(["embedding", *keys], [[name, *values.values()] for name, values in series.items()])
    return metrics, series, counts, cover, table


def iq_scores(
    triplets: list[Triplet],
    gallery: list[Path],
    gallery_embeds: torch.Tensor,
    query_embeds: torch.Tensor,
    paths: dict[str, Path],
    keep_reference: bool,
    counts: Counter,
) -> dict[str, float] | None:
    """R@10/R@50 of one category; `query_embeds` has one row per triplet."""
    import torch

    from eval.common.metrics import rank_of_best_positive, recall_at_k

    row = {path: i for i, path in enumerate(gallery)}
    scored, targets, excluded = [], [], []
    for i, triplet in enumerate(triplets):
        target, reference = paths[triplet.target], paths[triplet.candidate]
        if target not in row:
            counts["skipped_target_not_in_gallery"] += 1
            continue
        if not keep_reference and target == reference:
            counts["skipped_reference_is_target"] += 1
            continue
        scored.append(i)
        targets.append(row[target])
        excluded.append(row.get(reference, -1) if not keep_reference else -1)
    if not scored:
        return None
    scores = query_embeds[scored] @ gallery_embeds.T
    drop = torch.tensor(excluded)
    has = drop >= 0
    scores[torch.arange(len(scored))[has], drop[has]] = float("-inf")
    positives = torch.zeros_like(scores, dtype=torch.bool)
    positives[torch.arange(len(scored)), torch.tensor(targets)] = True
    recalls = recall_at_k(rank_of_best_positive(scores, positives), IQ_KS)
    return {"r10": recalls[10], "r50": recalls[50], "queries": len(scored), "gallery": len(gallery)}


def run_fashioniq(
    options: FashionOptions, iq: FashionIQOptions, encoder: Encoder, embeddings: dict[str, FusionSettings | None]
):
    import torch.nn.functional as F

    from eval.common.learned_fusion import composed_queries

    loaded = load_triplets(options.data)
    counts = loaded.counts
    images_root = options.images or options.data[0].parent
    categories = list(dict.fromkeys(t.category for t in loaded.items))
    if iq.gallery:
        gallery_names = load_gallery(iq.gallery)
        missing = [c for c in categories if c not in gallery_names]
        if missing:
            raise UserError(
                f"--gallery has no images for category {missing[0]!r} (categories: {sorted(gallery_names)})"
            )
    else:
        gallery_names = {
            c: [n for t in loaded.items if t.category == c for n in (t.candidate, t.target)] for c in categories
        }
    names = [n for c in categories for n in gallery_names[c]] + [
        n for t in loaded.items for n in (t.candidate, t.target)
    ]
    paths = {name: resolve_image_path(images_root, name, try_suffixes=True) for name in dict.fromkeys(names)}
    unique = list(dict.fromkeys(paths.values()))
    row = {path: i for i, path in enumerate(unique)}
    first = encoder.images(unique, next(iter(embeddings.values())))
    for reason, count in first.failures.items():
        counts[f"images_{reason}"] = count
    usable = [t for t in loaded.items if first.ok[row[paths[t.candidate]]] and first.ok[row[paths[t.target]]]]
    trained_composition = {
        name: composed_queries(encoder, [paths[t.candidate] for t in usable], [t.text for t in usable])[0]
        for name, fusion in embeddings.items()
        if getattr(fusion, "composition", "sum") == "fusion"
    }
    counts["skipped_image_failed"] = len(loaded.items) - len(usable)
    galleries = {}
    for category in categories:
        wanted = list(dict.fromkeys(paths[n] for n in gallery_names[category]))
        galleries[category] = [p for p in wanted if first.ok[row[p]]]
        counts["gallery_images_failed"] += len(wanted) - len(galleries[category])

    series: dict[str, dict[str, float]] = {}
    per_category: dict[str, dict[str, dict]] = {}
    for position, (name, fusion) in enumerate(embeddings.items()):
        image_embeds = (first if position == 0 else encoder.images(unique, fusion)).embeddings
        text_embeds = encoder.texts([t.text for t in usable], fusion=fusion)
        run_counts = counts if position == 0 else Counter()  # the same skips for every embedding: count once
        found = per_category.setdefault(name, {})
        for category in categories:
            rows = [i for i, t in enumerate(usable) if t.category == category]
            gallery = galleries[category]
            if not rows or not gallery:
                continue
            if name in trained_composition:
                queries = trained_composition[name][rows]
            else:
                references = image_embeds[[row[paths[usable[i].candidate]] for i in rows]]
                queries = F.normalize(references + text_embeds[rows], dim=-1)
            result = iq_scores(
                [usable[i] for i in rows],
                gallery,
                image_embeds[[row[p] for p in gallery]],
                queries,
                paths,
                iq.keep_reference,
                run_counts,
            )
            if result is not None:
                found[category] = result
        if not found:
            raise UserError(f"no FashionIQ query could be scored ({dict(counts)})")
        values = {f"{category}_r{k}": r[f"r{k}"] for category, r in found.items() for k in IQ_KS}
        values.update({f"avg_r{k}": sum(r[f"r{k}"] for r in found.values()) / len(found) for k in IQ_KS})
        series[name] = values
    metrics = {
        (f"{name}_{k}" if name == "fusion" else k): v for name, values in series.items() for k, v in values.items()
    }
    scored = sum(r["queries"] for r in next(iter(per_category.values())).values())
    metrics["num_queries"] = scored
    cover = Coverage(
        "triplets",
        counts["triplets"] - counts["duplicate_triplets"],
        scored,
        skipped_reasons(counts),
        duplicates=counts["duplicate_triplets"],
    )
    rows = [
        [name, category, r["queries"], r["gallery"], r["r10"], r["r50"]]
        for name, found in per_category.items()
        for category, r in found.items()
    ]
    table = markdown_table(["embedding", "category", "queries", "gallery", "R@10", "R@50"], rows)
    gallery_note = "--gallery files" if iq.gallery else "references and targets of the data (not the official gallery)"
    reference_note = "kept in" if iq.keep_reference else "excluded from"
    table += f"\ngallery: {gallery_note}; reference image {reference_note} its query's gallery\n"
    return metrics, series, counts, cover, table


@dataclass
class FashionOptions:
    task: Literal["fashiongen", "fashioniq"] = option("which protocol")
    data: list[Path] = option(
        "fashiongen: one JSON-lines file of product items; fashioniq: one or more caption files "
        "(cap.<category>.<split>.json or JSON-lines triplets)"
    )
    images: Path | None = option(
        "root folder for image paths (default: the first data file's folder); FashionIQ "
        "names without a suffix are looked up as .jpg/.png/...",
        None,
    )
    embedding: Literal["global", "fusion", "both"] | None = option(
        "global: the towers' global embeddings; fusion: Fashion-FINE's global+local mix (a Fashion-FINE folder's own "
        "trained one); both: compare them (default: fusion for Fashion-FINE folders, else global)",
        None,
    )


@dataclass
class FashionGenOptions:
    mode: Literal["full", "sample100", "both"] = option("protocol", "both")
    num_queries: int = option("sample100 queries", 1000, type=positive_int)
    num_negatives: int = option("sample100 negatives per query", 100, type=positive_int)
    seed: int = option("sample100 sampling seed", 0)


@dataclass
class FashionIQOptions:
    gallery: list[Path] | None = option(
        "gallery files (split.<category>.<split>.json lists or JSON-lines {image, category}); default: the "
        "references and targets of the data",
        None,
    )
    keep_reference: bool = option("keep the reference image in its own query's gallery (excluded by default)", False)


def build_parser() -> CommandParser:
    return encoder_parser(
        "python -m eval.fashion",
        __doc__,
        FashionOptions,
        (FashionGenOptions, "fashiongen"),
        (FashionIQOptions, "fashioniq"),
        (FusionSettings, "fusion (--embedding fusion or both)"),
        epilog="File formats: see eval/common/fashion_data.py. Ties count as misses.",
    )


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options, gen, iq = (options_from(args, kind) for kind in (FashionOptions, FashionGenOptions, FashionIQOptions))
    fusion, run = options_from(args, FusionSettings), EncoderRun.parsed(args)
    for path in options.data + (iq.gallery or []):
        if not path.is_file():
            raise UserError(f"{path} does not exist")
    if options.task == "fashiongen" and len(options.data) != 1:
        raise UserError("--task fashiongen takes one --data file")
    out = run.prepare_output([*options.data, *(iq.gallery or []), options.images], OWNED)
    encoder = run.load_encoder()
    from eval.common.learned_fusion import learned_fusion

    learned = learned_fusion(encoder)  # a Fashion-FINE folder: its trained pooling, ratios and composition
    fusion = learned or fusion
    embeddings = {"global": None, "fusion": fusion}
    embedding = options.embedding or ("fusion" if learned else "global")
    if embedding != "both":
        embeddings = {embedding: embeddings[embedding]}
    if options.task == "fashiongen":
        metrics, series, counts, cover, table = run_fashiongen(options, gen, encoder, embeddings)
    else:
        metrics, series, counts, cover, table = run_fashioniq(options, iq, encoder, embeddings)
    cover.truncated = encoder.truncated_texts()
    cover.warn()
    plot = f"{options.task}.png"
    grouped_bar_plot(out / plot, series, f"{options.task} ({model_label(run.model)})", "recall")
    extra = {"task": options.task, "embeddings": list(embeddings), "plots": [plot], "details": {"series": series}}
    if "fusion" in embeddings:
        extra["fusion"] = (
            fusion.as_dict()
            if learned
            else {**fusion.as_dict(), "pooling": "parameter-free attention (query: global embedding)"}
        )
    if options.task == "fashiongen":
        extra.update(mode=gen.mode, seed=gen.seed, num_negatives=gen.num_negatives)
    else:
        extra.update(
            gallery=[str(p) for p in iq.gallery] if iq.gallery else "references and targets of the data",
            keep_reference=iq.keep_reference,
        )
    return run.finish(
        options.task,
        metrics,
        cover,
        data=options.data,
        counts=dict(counts),
        table=table,
        headline=f"{options.task}: " + ", ".join(f"{k} {v:.4f}" for k, v in list(metrics.items())[:4]),
        extra=extra,
    )


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
