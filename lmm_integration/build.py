"""Build a LLaVA-1.5-style `LlavaForConditionalGeneration` whose vision tower is FG-CLIP.

    python -m lmm_integration.build --vision FGCLIP_OR_CLIP_DIR --llm LLM_DIR --output_dir DIR
    python -m lmm_integration.build --from_llava LLAVA_DIR --vision FGCLIP_DIR --output_dir DIR   # swap the tower

The folder written loads with stock `LlavaForConditionalGeneration.from_pretrained` and
`AutoProcessor.from_pretrained` (for `--vision_features dense`, once `fgclip.auto.register_auto_classes` has run,
which any use of `fgclip.model` and every LLaVA loader of the project does; see `fgclip.model.dense_tower`). It also
holds `lmm_build.json`: where the parts came from and whether the projector fits the tower (a new tower with another
hidden size or patch count gets a fresh projector, which stage A of `lmm_integration.train` must train before
stage B).

--output_dir (old spelling --out) is checked first: it may not be an input folder, and a folder holding anything but
an earlier build is refused unless --overwrite is given. Folders of the wrong kind (a CLIP folder as --llm, a LLaVA
folder as --llm or --vision, a folder without tokenizer or weights) are one-line errors with exit code 2.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fgclip.cli import CommandParser, entry_point, option, options_from, output_dir_option
from fgclip.errors import UserError
from fgclip.outputs import prepare_output_dir
from fgclip.value_path import DENSE_MODEL_TYPE
from lmm_integration.conversation import DEFAULT_SYSTEM_PROMPT, IMAGE_TOKEN, chat_template
from lmm_integration.dense import FEATURE_SOURCES

if TYPE_CHECKING:  # loaded where a model is built: --help needs neither
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    from lmm_integration.vision import VisionTower

BUILD_NOTE = "lmm_build.json"
PAD_TOKEN = "<pad>"
VISION_MODEL_TYPES = ("clip", "fgclip", "clip_vision_model", "siglip", "siglip_vision_model", DENSE_MODEL_TYPE)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")
# sampling values that transformers refuses to save without do_sample (Vicuna v1.5 ships temperature and top_p)
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")
PROBE_ANSWER = "Probe answer"


@dataclass
class BuildInputs:
    """What the command reads and where it writes."""

    vision: str = option(
        "FG-CLIP folder (this project's or an official release), stock CLIP folder, or exported CLIPVisionModel folder"
    )
    output_dir: str = output_dir_option(
        "output folder (created). It may not be an input; a folder holding anything but an "
        "earlier build is refused unless --overwrite is given"
    )
    llm: str | None = option("causal LM folder (e.g. a local vicuna-7b-v1.5); not used with --from_llava", None)
    from_llava: str | None = option("existing LLaVA folder whose tower is swapped (LM and projector kept)", None)
    overwrite: bool = option(
        "write into an --output_dir folder that holds files of another model or run (its files "
        "with the names of this command's outputs are replaced)",
        False,
    )
    keep_existing: bool = option(
        "when --output_dir already holds a complete build of the same inputs and options, keep it and exit 0 "
        "(scripts/finetune_llava.sh passes this, so that a re-run continues); a build of anything else there is "
        "refused unless --overwrite",
        False,
    )


@dataclass
class BuildOptions:
    """How the LLaVA model is assembled (saved in `lmm_build.json`)."""

    vision_features: str = option(
        "projector input: 'hidden' = hidden_states[--vision_feature_layer] (LLaVA-1.5); 'dense' = FG-CLIP's value-path "
        "patch features (the folder's tower type is registered by fgclip.auto on load)",
        "hidden",
        choices=FEATURE_SOURCES,
    )
    vision_feature_layer: int | None = option(
        "tower layer feeding the projector for hidden features (default -2, LLaVA-1.5's; with --from_llava the "
        "checkpoint's; dense features always come from the last block)",
        None,
    )
    vision_feature_select_strategy: Literal["default", "full"] = option(
        "'default' drops the CLS token (LLaVA-1.5), 'full' keeps it", "default", name="select_strategy"
    )
    system_prompt: str = option(
        "system prompt of the chat template ('' for none); default: LLaVA-1.5's", DEFAULT_SYSTEM_PROMPT
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "weights dtype of the saved model (auto: the LLM's / the LLaVA checkpoint's)", "auto"
    )
    seed: int = option("seed of the projector initialisation", 0)

    def feature_layer(self) -> int:
        if self.vision_features == "dense":
            return -1  # the dense tower puts its value-path features last
        return -2 if self.vision_feature_layer is None else self.vision_feature_layer


def _check_options(options: BuildOptions) -> None:
    if options.vision_features not in FEATURE_SOURCES:
        raise UserError(f"--vision_features must be one of {FEATURE_SOURCES}")
    if options.vision_features == "dense" and options.vision_feature_layer not in (None, -1):
        raise UserError("--vision_feature_layer does not apply to dense features (they come from the last block)")
    if options.vision_feature_select_strategy not in ("default", "full"):
        raise UserError("--select_strategy must be 'default' or 'full'")
    if options.dtype != "auto":
        _weights_dtype(options)  # a name torch does not know is a UserError


def _weights_dtype(options: BuildOptions):
    """`--dtype` for `from_pretrained`: 'auto' (the folder's own) or a torch dtype."""
    from fgclip.runtime import dtype_by_name

    return "auto" if options.dtype == "auto" else dtype_by_name(options.dtype)


def _require_folder(path: str | Path | None, what: str) -> Path:
    if path is None:
        raise UserError(f"{what} folder is required")
    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise UserError(f"{what} folder not found or has no config.json: {directory}")
    return directory


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _model_type(directory: Path, option: str) -> str | None:
    try:
        config = json.loads((directory / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{option} {directory}: config.json is not valid JSON ({_first_line(error)})") from error
    return config.get("model_type") if isinstance(config, dict) else None


def check_llm_folder(path: str | Path | None) -> Path:
    """The --llm folder, refused with one line when it is not a causal language model folder with a tokenizer."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    directory = _require_folder(path, "LLM")
    model_type = _model_type(directory, "--llm")
    if model_type in VISION_MODEL_TYPES:
        raise UserError(
            f"--llm {directory} holds a vision encoder (model_type '{model_type}'), not a language model; "
            "give it as --vision and a causal LM folder (e.g. vicuna-7b-v1.5) as --llm"
        )
    if model_type and model_type.startswith("llava"):
        raise UserError(
            f"--llm {directory} is a LLaVA folder; to give it an FG-CLIP tower use --from_llava {directory}"
        )
    if model_type not in CONFIG_MAPPING_NAMES:
        raise UserError(f"--llm {directory}: model_type {model_type!r} is not a model type this transformers knows")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UserError(f"--llm {directory} holds a '{model_type}' model, which is not a causal language model")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            f"--llm {directory} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); copy the "
            "tokenizer of the LM into it"
        )
    return directory


def _load_tokenizer(directory: Path, option: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError, TypeError, ImportError) as error:
        needs_sentencepiece = (directory / "tokenizer.model").is_file()
        hint = "; a tokenizer.model needs the sentencepiece package" if needs_sentencepiece else ""
        raise UserError(f"{option} {directory}: cannot read its tokenizer ({_first_line(error)}){hint}") from error


def _load_weights(loader, directory: Path, option: str, **kwargs):
    from safetensors import SafetensorError

    try:
        return loader.from_pretrained(str(directory), **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as error:  # missing, truncated, mismatched
        raise UserError(f"{option} {directory}: cannot load its weights ({_first_line(error)})") from error


def _absolute(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


def existing_build(
    out: str | Path, vision: str | Path, llm: str | Path | None, from_llava: str | Path | None, options: BuildOptions
) -> bool:
    """True when `out` holds a complete build of the same inputs and options (a re-run of
    scripts/finetune_llava.sh after a stop keeps it); a complete build of anything else is a `UserError`."""
    note_file = Path(out) / BUILD_NOTE
    if not note_file.is_file() or not previous_build(Path(out)):
        return False
    note = json.loads(note_file.read_text())
    if not note.get("complete"):
        return False  # an interrupted build: written again
    wanted = {
        "vision": _absolute(vision),
        "llm": llm and _absolute(llm),
        "from_llava": from_llava and _absolute(from_llava),
        **asdict(options),
    }
    if options.vision_feature_layer is None:  # resolved when built
        wanted.pop("vision_feature_layer")
    differences = [f"{key} {note.get(key)!r} -> {value!r}" for key, value in wanted.items() if note.get(key) != value]
    if differences:
        raise UserError(
            f"--output_dir {out} holds a build of other inputs or options "
            f"({'; '.join(differences[:2])}); choose another --output_dir, or pass --overwrite to build there again"
        )
    return True


def previous_build(folder: Path) -> bool:
    """A folder this command wrote (`lmm_build.json`) and nothing trained into since (no `train_options.json`)."""
    return (folder / BUILD_NOTE).is_file() and not (folder / "train_options.json").exists()


def prepare_out(out: str | Path, inputs: list, overwrite: bool) -> Path:
    """--output_dir checked before any model is loaded (see `fgclip.outputs.prepare_output_dir`)."""
    folder = Path(out)
    owned = previous_build(folder) if folder.is_dir() else False
    return prepare_output_dir(
        folder,
        inputs=inputs,
        owned=lambda entry: owned,
        overwrite=overwrite,
        option="--output_dir",
        what="files of another model or run",
    )


def valid_generation_config(source, pad_token_id: int | None):
    """The LM's generation settings, saveable: sampling values without `do_sample` are dropped (they do nothing
    in greedy decoding, and transformers refuses to save them). Returns the config and what was dropped."""
    config = copy.deepcopy(source)
    dropped = []
    if not config.do_sample:
        for key in SAMPLING_KEYS:
            if getattr(config, key, None) is not None:
                dropped.append(f"{key}={getattr(config, key)}")
                setattr(config, key, None)
    config.pad_token_id = pad_token_id
    return config, dropped


def prepare_tokenizer(tokenizer, system_prompt: str) -> int:
    """Add `<image>` (and a pad token if missing) as special tokens and set the chat template.

    `<image>` must be an added special token so that the run of image tokens the processor writes
    splits into single tokens. Returns the id of `<image>`.
    """
    from tokenizers import AddedToken

    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": AddedToken(PAD_TOKEN, special=True, normalized=False)})
    tokenizer.chat_template = chat_template(system_prompt)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if tokenizer(IMAGE_TOKEN * 3, add_special_tokens=False)["input_ids"] != [image_token_id] * 3:
        raise UserError("the tokenizer does not split a run of <image> tokens into single tokens")
    return image_token_id


def make_processor(tower: VisionTower, tokenizer, strategy: str, template: str) -> LlavaProcessor:
    """`LlavaProcessor` for a CLIP tower: one CLS token, hence `num_additional_image_tokens=1`."""
    from transformers import LlavaProcessor

    return LlavaProcessor(
        image_processor=tower.image_processor,
        tokenizer=tokenizer,
        patch_size=tower.patch_size,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,
        chat_template=template,
    )


def _image_seq_length(tower: VisionTower, strategy: str) -> int:
    return tower.num_patches + (1 if strategy == "full" else 0)


def _fresh_projector(config: LlavaConfig, dtype: torch.dtype, seed: int) -> LlavaMultiModalProjector:
    """A randomly initialised 2-layer GELU MLP (PyTorch's default Linear init, as LLaVA's `mlp2x_gelu`)."""
    import torch
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    projector = LlavaMultiModalProjector(config).to(dtype)
    torch.random.set_rng_state(generator_state)
    return projector


def _decoder_of(language_model, llm_dir: Path) -> torch.nn.Module:
    """The LM without its head, checked to be the class `LlavaModel` rebuilds from the text config
    (`AutoModel`), so that the saved folder loads back."""
    from transformers import AutoModel

    decoder = language_model.base_model
    try:
        expected = AutoModel._model_mapping[type(language_model.config)]
    except KeyError as error:
        raise UserError(
            f"{llm_dir}: transformers has no base model for {type(language_model.config).__name__}"
        ) from error
    if decoder is language_model or not isinstance(decoder, expected):
        raise UserError(f"{llm_dir}: the causal LM's body is not a {expected.__name__}; LLaVA cannot hold it")
    return decoder


def _assert_materialised(model: torch.nn.Module) -> None:
    on_meta = [name for name, tensor in list(model.named_parameters()) + list(model.named_buffers()) if tensor.is_meta]
    if on_meta:
        raise UserError(f"internal: {len(on_meta)} tensors were not filled (e.g. {on_meta[0]})")


def _save(model: LlavaForConditionalGeneration, processor: LlavaProcessor, out: Path, note: dict) -> Path:
    """Write the folder; `lmm_build.json` first with `complete: false`, so that an interrupted build is recognised
    as this command's own (and written again) and never taken for a finished one."""
    out.mkdir(parents=True, exist_ok=True)
    (out / BUILD_NOTE).write_text(json.dumps({**note, "complete": False}, indent=2) + "\n")
    model.config.fgclip_build = note
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    (out / BUILD_NOTE).write_text(json.dumps({**note, "complete": True}, indent=2) + "\n")
    return out


def build_llava(
    vision: str | Path, llm: str | Path, out: str | Path, options: BuildOptions | None = None, overwrite: bool = False
) -> Path:
    """Assemble tower + fresh projector + LM into a LLaVA folder at `out`; returns `out`.

    overwrite: write into an `out` that holds files of another model or run (an input folder is never written).
    """
    import torch
    from transformers import AutoModelForCausalLM, LlavaConfig, LlavaForConditionalGeneration

    from lmm_integration.vision import load_vision_tower, vision_source_kind

    options = options or BuildOptions()
    _check_options(options)
    out = prepare_out(out, [vision, llm], overwrite)
    llm_dir = check_llm_folder(llm)
    vision_source_kind(vision)
    tokenizer = _load_tokenizer(llm_dir, "--llm")
    language_model = _load_weights(AutoModelForCausalLM, llm_dir, "--llm", dtype=_weights_dtype(options))
    dtype = language_model.dtype
    tower = load_vision_tower(vision, options.vision_features, dtype)
    image_token_id = prepare_tokenizer(tokenizer, options.system_prompt)
    if len(tokenizer) > language_model.get_input_embeddings().weight.shape[0]:
        language_model.resize_token_embeddings(len(tokenizer))  # new rows start at the mean embedding
    text_config = language_model.config
    text_config.pad_token_id = tokenizer.pad_token_id
    decoder = _decoder_of(language_model, llm_dir)
    config = LlavaConfig(
        vision_config=tower.config,
        text_config=text_config,
        image_token_index=image_token_id,
        vision_feature_layer=options.feature_layer(),
        vision_feature_select_strategy=options.vision_feature_select_strategy,
        projector_hidden_act="gelu",
        image_seq_length=_image_seq_length(tower, options.vision_feature_select_strategy),
        tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
    )
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)  # skeleton only: every part is replaced below
    model.model.vision_tower = tower.model
    model.model.language_model = decoder
    model.lm_head = language_model.get_output_embeddings()
    model.model.multi_modal_projector = _fresh_projector(config, dtype, options.seed)
    model.generation_config, dropped = valid_generation_config(language_model.generation_config, tokenizer.pad_token_id)
    _assert_materialised(model)
    processor = make_processor(tower, tokenizer, options.vision_feature_select_strategy, tokenizer.chat_template)
    note = {
        "vision": _absolute(vision),
        "vision_kind": tower.kind,
        "llm": _absolute(llm_dir),
        "from_llava": None,
        "projector": "new (random): train stage A first",
        "image_tokens_per_image": _image_seq_length(tower, options.vision_feature_select_strategy),
        "image_token_id": image_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "chat_template": "LLaVA-1.5 (Vicuna v1)",
        "generation_config_dropped": dropped,  # e.g. Vicuna v1.5's temperature/top_p without do_sample
        **asdict(options),
        "vision_feature_layer": options.feature_layer(),
    }
    return _save(model.eval(), processor, out, note)


def _projector_fit(old_vision, tower: VisionTower) -> str | None:
    """Why the old projector no longer fits the new tower, or None when it does."""
    reasons = []
    if old_vision.hidden_size != tower.hidden_size:
        reasons.append(f"hidden size {old_vision.hidden_size} -> {tower.hidden_size}")
    old_patches = (old_vision.image_size // old_vision.patch_size) ** 2
    if old_patches != tower.num_patches:
        reasons.append(f"patches per image {old_patches} -> {tower.num_patches}")
    return ", ".join(reasons) or None


def template_unfit_for_training(tokenizer, template: str) -> str | None:
    """Why a chat template cannot render training conversations, or None when it can.

    Training needs the answers marked (`{% generation %}`, for the labels), a BOS at the start (the text is
    tokenised without special tokens) and the EOS after each answer (so that the model learns to stop).
    llava-hf's LLaVA-1.5 template has the marks but writes neither BOS nor EOS.
    """
    if "generation" not in template:
        return "it does not mark the answers with {% generation %}"
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Question?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": PROBE_ANSWER}]},
    ]
    try:
        rendered = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    except Exception as error:  # noqa: BLE001 - any Jinja or template error means: do not use it
        return f"it does not render a conversation ({_first_line(error)})"
    if tokenizer.bos_token and not rendered.startswith(tokenizer.bos_token):
        return "it writes no BOS token"
    if tokenizer.eos_token and tokenizer.eos_token not in rendered[rendered.find(PROBE_ANSWER) :]:
        return "it writes no EOS token after the answers"
    return None


def swap_vision_tower(
    from_llava: str | Path,
    vision: str | Path,
    out: str | Path,
    options: BuildOptions | None = None,
    overwrite: bool = False,
) -> Path:
    """Replace the tower of a LLaVA folder, keeping LM and projector (a fresh projector if it no longer fits).

    The checkpoint's chat template is kept when training can use it (`template_unfit_for_training`);
    otherwise this project's LLaVA-1.5 (Vicuna-v1) template is installed and `lmm_build.json` says why.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from lmm_integration.vision import load_vision_tower, vision_source_kind

    options = options or BuildOptions()
    _check_options(options)
    out = prepare_out(out, [vision, from_llava], overwrite)
    llava_dir = _require_folder(from_llava, "LLaVA")
    model_type = _model_type(llava_dir, "--from_llava")
    if model_type != "llava":
        raise UserError(
            f"--from_llava {llava_dir} is not a LLaVA (model_type 'llava') folder: it holds "
            f"model_type {model_type!r}" + ("; give a language model as --llm" if model_type else "")
        )
    vision_source_kind(vision)
    model = _load_weights(LlavaForConditionalGeneration, llava_dir, "--from_llava", dtype=_weights_dtype(options))
    try:
        old_processor = AutoProcessor.from_pretrained(str(llava_dir))
    except (OSError, ValueError, TypeError) as error:
        raise UserError(f"--from_llava {llava_dir}: cannot read its processor ({_first_line(error)})") from error
    tokenizer = old_processor.tokenizer
    template = getattr(old_processor, "chat_template", None) or ""
    unfit = template_unfit_for_training(tokenizer, template)
    if unfit:
        template = chat_template(options.system_prompt)
    tokenizer.chat_template = template
    tower = load_vision_tower(vision, options.vision_features, model.dtype)
    misfit = _projector_fit(model.config.vision_config, tower)
    if options.vision_feature_layer is None and options.vision_features == "hidden":
        options.vision_feature_layer = model.config.vision_feature_layer
    model.model.vision_tower = tower.model
    model.config.vision_config = tower.config
    model.config.vision_feature_layer = options.feature_layer()
    model.config.vision_feature_select_strategy = options.vision_feature_select_strategy
    model.config.image_seq_length = _image_seq_length(tower, options.vision_feature_select_strategy)
    if misfit:
        warnings.warn(
            f"the projector of {llava_dir} does not fit the new tower ({misfit}); it is re-initialised and must "
            "be re-trained (stage A) before the model is useful",
            stacklevel=2,
        )
        model.model.multi_modal_projector = _fresh_projector(model.config, model.dtype, options.seed)
    model.generation_config, dropped = valid_generation_config(model.generation_config, tokenizer.pad_token_id)
    processor = make_processor(tower, tokenizer, options.vision_feature_select_strategy, template)
    note = {
        "vision": _absolute(vision),
        "vision_kind": tower.kind,
        "llm": None,
        "from_llava": _absolute(llava_dir),
        "projector": f"re-initialised ({misfit}): re-train it with stage A"
        if misfit
        else "kept from the LLaVA checkpoint (same hidden size and patch count)",
        "image_tokens_per_image": model.config.image_seq_length,
        "image_token_id": model.config.image_token_index,
        "pad_token_id": tokenizer.pad_token_id,
        "chat_template": f"replaced by LLaVA-1.5 (Vicuna v1): the checkpoint's cannot be trained with ({unfit})"
        if unfit
        else "kept from the LLaVA checkpoint",
        "generation_config_dropped": dropped,
        **asdict(options),
        "vision_feature_layer": options.feature_layer(),
    }
    return _save(model.eval(), processor, out, note)


def build_parser() -> CommandParser:
    options = (BuildInputs, (BuildOptions, "how the model is assembled"))
    return CommandParser(prog="python -m lmm_integration.build", description=__doc__, options=options)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs, options = options_from(args, BuildInputs), options_from(args, BuildOptions)
    if inputs.from_llava and inputs.llm:
        raise UserError("give either --llm (new model) or --from_llava (tower swap), not both")
    if not inputs.from_llava and not inputs.llm:
        raise UserError("--llm is required (or --from_llava to swap the tower of a LLaVA folder)")
    try:
        if (
            inputs.keep_existing
            and not inputs.overwrite
            and existing_build(inputs.output_dir, inputs.vision, inputs.llm, inputs.from_llava, options)
        ):
            print(f"keeping the LLaVA model already built in {inputs.output_dir} (same inputs and options)")
            return 0
        if inputs.from_llava:
            out = swap_vision_tower(inputs.from_llava, inputs.vision, inputs.output_dir, options, inputs.overwrite)
        else:
            out = build_llava(inputs.vision, inputs.llm, inputs.output_dir, options, inputs.overwrite)
    except OSError as error:  # a folder that cannot be read or written
        raise UserError(_first_line(error)) from error
    note = json.loads((out / BUILD_NOTE).read_text())
    print(
        f"LLaVA model written to {out} ({note['vision_kind']} tower, {note['vision_features']} features, "
        f"{note['image_tokens_per_image']} image tokens); projector: {note['projector']}"
    )
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
