"""Fine-tuning policies, LoRA adapters and the checkpoints they produce.

Which encoder weights train is one setting (`SERTrainingArguments.finetuning_policy` / ``use_lora``);
`SERTrainer` applies it before building the optimizer, so the optimizer only ever sees what
should train. Pooling, layer weights and heads always train: they start from random values.

Checkpoints are safetensors only:

* **full**: a plain ser-hf checkpoint (``config.json`` + ``model.safetensors``); the Auto classes
  and ``pipeline("audio-classification")`` load it once ``ser_hf`` is imported.
* **adapter**: ``adapter_config.json`` + ``adapter_model.safetensors`` holding the LoRA weights,
  pooling, heads and layer weights, a few percent of the full size. The frozen base is named by
  ``base_model_name_or_path`` (a saved ser-hf checkpoint), or rebuilt from the ``config.json`` stored
  beside the adapter when the base is a pretrained encoder by name (``microsoft/wavlm-large``).
  `load_ser_model` reads both kinds; `merge_lora` folds the adapter into the encoder for export.
"""
from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

import torch
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from peft.utils import load_peft_weights
from safetensors.torch import save_file
from torch import nn

from ser_hf.modeling.parameters import parameter_part
from ser_hf.training_args import FinetuningPolicy

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "config.json"

_ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")
_BERT_ATTENTION = ("query", "key", "value", "attention.output.dense")

# Module-name suffixes that get LoRA adapters when ``lora_target_modules`` is not set.
# WavLM is the exception: its attention hands the q/k/v/out projection *weights* to
# F.multi_head_attention_forward instead of calling the modules, so adapters there would never
# run. Its feed-forward layers are called normally and get the adapters instead.
DEFAULT_LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "wav2vec2": _ATTENTION_PROJECTIONS,
    "hubert": _ATTENTION_PROJECTIONS,
    "data2vec-audio": _ATTENTION_PROJECTIONS,
    "whisper": _ATTENTION_PROJECTIONS,
    "wavlm": ("intermediate_dense", "output_dense"),
    "bert": _BERT_ATTENTION,
    "roberta": _BERT_ATTENTION,
    "xlm-roberta": _BERT_ATTENTION,
    "camembert": _BERT_ATTENTION,
    "deberta-v2": ("query_proj", "key_proj", "value_proj", "attention.output.dense"),
}

# Where encoders keep their stack of transformer layers (wav2vec2 family, BERT family, Whisper encoder).
_LAYER_STACKS = ("encoder.layers", "encoder.layer", "layers")
# SER modules outside the encoder that train in full next to the adapters.
_TRAINED_MODULES = ("pooling", "classifier", "regressor")


# ---------------------------------------------------------------------------------------------- policies
def _backbone(model: nn.Module) -> nn.Module:
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"{type(model).__name__} has no `backbone` encoder; fine-tuning policies apply to SER encoder models")
    return backbone


def transformer_layers(backbone: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer layers, bottom first."""
    for path in _LAYER_STACKS:
        try:
            module = backbone.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(backbone).__name__} (looked for {', '.join(_LAYER_STACKS)})")


def _sync_feature_encoder_flag(model: nn.Module) -> None:
    """wav2vec2-family front ends also skip input gradients via a private flag; keep it in step
    with their parameters so a frozen CNN costs no backward pass."""
    front_end = getattr(_backbone(model), "feature_extractor", None)
    if front_end is not None and hasattr(front_end, "_requires_grad"):
        front_end._requires_grad = any(p.requires_grad for p in front_end.parameters())


def apply_finetuning_policy(model: nn.Module, policy: str, *, freeze_bottom_layers: int = 0) -> nn.Module:
    """Set ``requires_grad`` for one policy (in place); pooling, layer weights and heads always train.

    * ``full``: every weight trains.
    * ``frozen_backbone``: the encoder is frozen (the paper's fusion setting).
    * ``freeze_feature_encoder``: all but the CNN feature encoder (text encoders have none).
    * ``freeze_bottom_layers``: the encoder's input side (CNN or embeddings, feature projection,
      positional convolution, encoder-level norms) and its lowest ``freeze_bottom_layers``
      transformer layers are frozen; the layers above train.

    Speech configs record whether the feature encoder ends up frozen, so a saved config says how
    the model was trained.
    """
    policy = FinetuningPolicy(policy)
    backbone = _backbone(model)
    model.requires_grad_(True)
    if policy is FinetuningPolicy.FREEZE_FEATURE_ENCODER:
        model.freeze_feature_encoder()
    elif policy is FinetuningPolicy.FROZEN_BACKBONE:
        backbone.requires_grad_(False)
    elif policy is FinetuningPolicy.FREEZE_BOTTOM_LAYERS:
        layers = transformer_layers(backbone)
        if not 0 < freeze_bottom_layers <= len(layers):
            raise ValueError(f"freeze_bottom_layers={freeze_bottom_layers}, but the encoder has {len(layers)} layers")
        backbone.requires_grad_(False)
        for layer in layers[freeze_bottom_layers:]:
            layer.requires_grad_(True)
    _sync_feature_encoder_flag(model)
    if hasattr(model.config, "freeze_feature_encoder"):
        model.config.freeze_feature_encoder = policy is not FinetuningPolicy.FULL
    return model


def trainable_parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per optimizer group (backbone / pooling / head), their sum and the total.

    Under LoRA the backbone count is the adapters'. peft keeps a frozen, unused copy of each module
    it trains in full (``original_module``); it is left out of the total.
    """
    counts = {"backbone": 0, "pooling": 0, "head": 0, "trainable": 0, "total": 0}
    for name, parameter in model.named_parameters():
        if ".original_module." in name:
            continue
        counts["total"] += parameter.numel()
        if parameter.requires_grad:
            counts[parameter_part(name)] += parameter.numel()
            counts["trainable"] += parameter.numel()
    return counts


def describe_trainable_parameters(model: nn.Module) -> str:
    """One log line: how many parameters train, and where."""
    counts = trainable_parameter_counts(model)
    backbone = "backbone (LoRA adapters)" if is_lora_model(model) else "backbone"
    share = 100 * counts["trainable"] / max(counts["total"], 1)
    return (
        f"trainable parameters: {counts['trainable']:,} of {counts['total']:,} ({share:.2f}%): "
        f"{backbone} {counts['backbone']:,}, pooling {counts['pooling']:,}, head {counts['head']:,}"
    )


# ---------------------------------------------------------------------------------------------- LoRA
def is_lora_model(model) -> bool:
    return isinstance(model, PeftModel)


def default_lora_target_modules(model_type: str) -> tuple[str, ...]:
    """Module-name suffixes that get adapters for an encoder family (see `DEFAULT_LORA_TARGETS`)."""
    try:
        return DEFAULT_LORA_TARGETS[model_type]
    except KeyError:
        raise ValueError(
            f"no default LoRA targets for {model_type!r} encoders (known: {', '.join(sorted(DEFAULT_LORA_TARGETS))}); "
            "set lora_target_modules"
        ) from None


def _target_pattern(targets) -> str:
    """A peft regex limiting adapters to encoder modules whose name ends in one of ``targets``."""
    return r"backbone\.(?:.*\.)?(?:" + "|".join(re.escape(t) for t in targets) + ")"


def base_model_reference(model: nn.Module) -> str | None:
    """The ser-hf checkpoint (folder or Hub id) a model was loaded from, if any."""
    name = getattr(model.config, "_name_or_path", "") or ""
    if not name:
        return None
    return os.path.abspath(name) if os.path.isdir(name) else name


class SERPeftModel(PeftModel):
    """A `PeftModel` whose checkpoints hold everything trained besides the adapters.

    peft saves the adapters and the ``modules_to_save`` (pooling, heads); the SER model's own
    parameters (the layer weights of ``layer_weighting="weighted_sum"``) are no module, so they
    are added to the same safetensors file here and restored by `load_adapter`, which the Trainer
    also calls for resuming and for ``load_best_model_at_end``.
    """

    def _extra_parameters(self) -> dict[str, nn.Parameter]:
        base = self.get_base_model()
        return {f"base_model.model.{name}": p for name, p in base.named_parameters(recurse=False)}

    def save_pretrained(
        self, save_directory: str, safe_serialization: bool = True, selected_adapters=None, is_main_process: bool = True, **kwargs
    ) -> None:
        """Write the adapter checkpoint (safetensors; each file replaced atomically)."""
        if list(self.peft_config) != ["default"] or selected_adapters not in (None, ["default"]):
            raise ValueError(f"ser-hf checkpoints hold one adapter named 'default', this model has {list(self.peft_config)}")
        if not is_main_process:
            return
        weights = get_peft_model_state_dict(self, state_dict=kwargs.get("state_dict"))
        weights.update({key: p.detach() for key, p in self._extra_parameters().items()})
        weights = {key: value.contiguous().clone() for key, value in weights.items()}
        config = copy.deepcopy(self.peft_config["default"])
        config.inference_mode = True
        # AutoPeftModelForFeatureExtraction (base via AutoModel) can load it; ser-hf loads it as SERPeftModel.
        config.task_type = ADAPTER_TASK_TYPE
        base = config.base_model_name_or_path
        if base and os.path.isabs(base):  # a local base: stored relative to the adapter folder
            config.base_model_name_or_path = os.path.relpath(base, _final_directory(save_directory))
        with staged_directory(save_directory) as staging:
            save_file(weights, os.path.join(staging, ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})
            config.save_pretrained(staging)
            if base is None:  # the base is the config's pretrained encoder
                self.get_base_model().config.save_pretrained(staging)
            if not os.path.exists(os.path.join(_final_directory(save_directory), "README.md")):
                write_adapter_card(staging, config, self.get_base_model().config)

    def _upload_modified_files(self, working_dir, repo_id, *args, **kwargs):
        """``push_to_hub`` hook: upload the adapter card instead of transformers' generic draft."""
        write_adapter_card(working_dir, self.peft_config["default"], self.get_base_model().config)
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)

    def load_adapter(self, model_id, adapter_name: str, is_trainable: bool = False, **kwargs):
        result = super().load_adapter(model_id, adapter_name, is_trainable=is_trainable, **kwargs)
        extras = self._extra_parameters()
        if extras:
            stored = load_peft_weights(str(model_id))
            missing = [key for key in extras if key not in stored]
            if missing:
                raise ValueError(f"adapter checkpoint {model_id} lacks {missing}; it was saved from a different model")
            with torch.no_grad():
                for key, parameter in extras.items():
                    parameter.copy_(stored[key])
                    parameter.requires_grad = is_trainable
        return result


def apply_lora(
    model: nn.Module,
    *,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.05,
    target_modules: list[str] | tuple[str, ...] | None = None,
    base_model_name_or_path: str | None = None,
) -> SERPeftModel:
    """Freeze the encoder and add LoRA adapters to it; pooling, layer weights and heads train in full.

    ``target_modules`` are module names or name suffixes inside the encoder (default: per encoder
    family, `DEFAULT_LORA_TARGETS`). ``base_model_name_or_path`` is the saved ser-hf checkpoint the
    frozen weights come from; by default the folder the model was loaded from. A model built on a
    pretrained encoder by name needs none (its config is stored with the adapter); a randomly
    initialised one must be saved first, or its adapter checkpoints could never be loaded again.
    """
    backbone = _backbone(model)
    targets = tuple(target_modules) if target_modules else default_lora_target_modules(backbone.config.model_type)
    pattern = _target_pattern(targets)
    matched = [name for name, _ in model.named_modules() if re.fullmatch(pattern, name)]
    if not matched:
        suffixes = sorted({name.rsplit(".", 1)[-1] for name, m in backbone.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no encoder module matches lora_target_modules={list(targets)}; linear layers are named {suffixes}")
    base = base_model_name_or_path or base_model_reference(model)
    if base is None and not getattr(model.config, "backbone_name_or_path", None):
        raise ValueError(
            "LoRA on a randomly initialised encoder: save the base model first (save_pretrained) and pass "
            "base_model_name_or_path, so adapter checkpoints can find their frozen weights"
        )
    if base is not None and os.path.isdir(base):
        base = os.path.abspath(base)
    modules_to_save = [name for name in _TRAINED_MODULES if any(p.numel() for p in _parameters_of(model, name))]
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=pattern,
        modules_to_save=modules_to_save,
        base_model_name_or_path=base,
    )
    peft_model = SERPeftModel(model, config)
    for parameter in peft_model._extra_parameters().values():
        parameter.requires_grad = True
    _check_adapters_run(peft_model)
    logger.info("LoRA (r=%d, alpha=%s) on %d encoder modules; %s", r, alpha, len(matched), describe_trainable_parameters(peft_model))
    return peft_model


def _parameters_of(model: nn.Module, name: str) -> list[nn.Parameter]:
    module = getattr(model, name, None)
    return list(module.parameters()) if isinstance(module, nn.Module) else []


def _dummy_inputs(model: nn.Module) -> dict[str, torch.Tensor]:
    """A tiny batch for the model's modality, on its device and in its dtype."""
    from ser_hf.configuration import SERTextConfig
    from ser_hf.modeling.speech import whisper_input_frames

    parameter = next(model.parameters())
    config = model.config
    if isinstance(config, SERTextConfig):
        ids = torch.arange(2, 10).remainder(config.get_backbone_config().vocab_size).unsqueeze(0)
        return {"input_ids": ids.to(parameter.device), "attention_mask": torch.ones_like(ids, device=parameter.device)}
    if config.is_whisper:
        shape = (1, config.get_backbone_config().num_mel_bins, whisper_input_frames(config))
        return {"input_features": torch.zeros(shape, dtype=parameter.dtype, device=parameter.device)}
    wave = torch.randn(1, config.sampling_rate // 2, generator=torch.Generator().manual_seed(0))
    return {"input_values": wave.to(device=parameter.device, dtype=parameter.dtype)}


def _check_adapters_run(model: SERPeftModel) -> None:
    """Run one tiny batch and fail if some adapter is never called.

    An encoder may read a layer's weight without calling the layer (WavLM's attention does); an
    adapter there would silently train nothing.
    """
    called: set[str] = set()
    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    hooks = [m.register_forward_pre_hook(lambda m, args, n=name: called.add(n)) for name, m in layers.items()]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(**_dummy_inputs(model))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    unused = sorted(set(layers) - called)
    if unused:
        raise ValueError(
            f"{len(unused)} LoRA target modules are never called by the encoder's forward pass, so their adapters "
            f"would not train (e.g. {unused[0]}); choose other lora_target_modules"
        )


def merge_lora(model: PeftModel) -> nn.Module:
    """Fold the adapters into the encoder weights and return the plain ser-hf model.

    The result saves as a full checkpoint that loads without peft. ``model`` is consumed (peft
    merges in place); copy it first to keep training the adapters.
    """
    if not is_lora_model(model):
        raise TypeError(f"merge_lora needs a LoRA model (apply_lora or load_ser_model), got {type(model).__name__}")
    return model.merge_and_unload(safe_merge=True)


def prepare_model_for_training(model: nn.Module, args) -> nn.Module:
    """Apply ``args.finetuning_policy`` and ``args.use_lora`` (what `SERTrainer` does before the optimizer exists).

    A model that already carries adapters is left as it is. For LoRA on a randomly initialised
    encoder the base model is saved to ``<output_dir>/base_model`` first, so the adapter checkpoints
    of the run can be loaded again.
    """
    _check_output_dir(args.output_dir, "adapter" if is_lora_model(model) or args.use_lora else "full")
    if is_lora_model(model):
        if args.finetuning_policy is not None:
            raise ValueError("the model already has LoRA adapters; finetuning_policy does not apply to it")
        return model
    if args.finetuning_policy is not None:
        apply_finetuning_policy(model, args.finetuning_policy, freeze_bottom_layers=args.freeze_bottom_layers)
    if not args.use_lora:
        return model
    base = None
    if base_model_reference(model) is None and not getattr(model.config, "backbone_name_or_path", None):
        base = os.path.join(args.output_dir, "base_model")
        if args.should_save:
            save_checkpoint(model, base)
            logger.info("randomly initialised encoder: base model for the LoRA adapters saved to %s", base)
    return apply_lora(
        model,
        r=args.lora_r,
        alpha=args.lora_alpha,
        dropout=args.lora_dropout,
        target_modules=args.lora_target_modules,
        base_model_name_or_path=base,
    )


# ---------------------------------------------------------------------------------------------- checkpoints
def _checkpoint_kinds(names) -> set[str]:
    kinds = {"adapter"} if ADAPTER_CONFIG_NAME in names else set()
    if any(n.startswith("model") and n.endswith(".safetensors") for n in names):
        kinds.add("full")
    return kinds


def _check_output_dir(output_dir: str | None, kind: str) -> None:
    """Fail before training, not at the final save, when the run's checkpoint would be mixed with
    the other kind left in ``output_dir`` by an earlier run (the folder would load as that one)."""
    if output_dir and os.path.isdir(output_dir):
        stale = _checkpoint_kinds(os.listdir(output_dir)) - {kind}
        if stale:
            raise ValueError(f"output_dir {output_dir} holds a {stale.pop()} checkpoint of an earlier run; use a new folder")


@contextmanager
def staged_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yield a scratch folder inside ``path``; on success each file in it replaces its namesake atomically.

    A checkpoint folder never mixes a full model and an adapter: which one it is decides how it loads.
    """
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".tmp-", dir=path)
    try:
        yield staging
        names = set(os.listdir(staging)) | {n for n in os.listdir(path) if not n.startswith(".tmp-")}
        if len(_checkpoint_kinds(names)) > 1:
            raise ValueError(f"{path} would hold both a full model and an adapter checkpoint; save to a new folder")
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name), os.path.join(path, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, processor=None, merged: bool = False) -> None:
    """Save a ser-hf model: a LoRA model as an adapter checkpoint (or, with ``merged``, as a full
    checkpoint of its merged copy), any other as a full checkpoint; with its processor if given."""
    if merged and not is_lora_model(model):
        raise ValueError("merged=True needs a LoRA model")
    with staged_directory(path) as staging:
        if merged:
            merge_lora(copy.deepcopy(model)).save_pretrained(staging)
        else:
            model.save_pretrained(staging)
        if processor is not None:
            processor.save_pretrained(staging)


# peft task type written to adapter_config.json: AutoPeftModelForFeatureExtraction loads the base through
# AutoModel, which knows every ser-hf model class (and its forward takes the speech/text inputs as keywords).
ADAPTER_TASK_TYPE = "FEATURE_EXTRACTION"


def _final_directory(path) -> str:
    """The folder a checkpoint lands in: ``staged_directory`` writes into ``.tmp-*`` folders inside it."""
    path = os.path.abspath(os.fspath(path))
    while os.path.basename(path).startswith(".tmp-"):
        path = os.path.dirname(path)
    return path


def resolve_base_model(adapter_path: str | os.PathLike, base: str | None) -> str | None:
    """``base_model_name_or_path`` of an adapter: a Hub id as it is, a relative folder against the adapter's."""
    if not base or os.path.isabs(base):
        return base
    candidate = os.path.normpath(os.path.join(os.fspath(adapter_path), base))
    return candidate if os.path.isdir(candidate) or base.startswith((".", os.sep)) else base


def write_adapter_card(folder: str | os.PathLike, adapter_config, model_config) -> str:
    """README.md of an adapter checkpoint: peft metadata (base model, library, tags) and how to load it."""
    from huggingface_hub import ModelCard, ModelCardData

    base = adapter_config.base_model_name_or_path
    hub_base = base if base and not base.startswith((".", os.sep)) and not os.path.exists(base) else None
    if hub_base is None and base is None:
        hub_base = getattr(model_config, "backbone_name_or_path", None)
        hub_base = hub_base if hub_base and not os.path.exists(hub_base) else None
    audio = getattr(model_config, "model_type", "") == "ser_speech"
    data = ModelCardData(
        library_name="peft",
        base_model=hub_base,
        pipeline_tag="audio-classification" if audio else "text-classification",
        tags=["ser-hf", "lora", "speech-emotion-recognition", "emotion-recognition", "base_model:adapter:" + hub_base]
        if hub_base else ["ser-hf", "lora", "speech-emotion-recognition", "emotion-recognition"],
    )
    where = f"`{hub_base}`" if hub_base else f"`{base}` (relative to this folder)" if base else "the `config.json` beside it"
    body = (
        f"# LoRA adapter for a ser-hf emotion model\n\nLoRA adapters (rank {adapter_config.r}) with the pooling and "
        f"heads of a ser-hf model; the frozen base model is {where}.\n\n"
        "```python\nimport ser_hf  # registers the ser-hf model classes\n"
        "from ser_hf.finetuning import load_ser_model\n\n"
        'model = load_ser_model("path/to/this/adapter", merge=True)  # a plain ser-hf model\n```\n\n'
        "With peft alone: `peft.AutoPeftModelForFeatureExtraction.from_pretrained(path)` after `import ser_hf`, "
        "or with `trust_remote_code=True` where the base checkpoint ships its code.\n"
    )
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    path = os.path.join(os.fspath(folder), "README.md")
    card.save(path)
    return path


def is_adapter_checkpoint(path: str | os.PathLike) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), ADAPTER_CONFIG_NAME))


def _model_classes():
    import ser_hf.modeling  # noqa: F401  (registers the ser-hf classes with the Auto classes)
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.modeling import SERModelForSpeech, SERModelForText

    return lambda config: SERModelForSpeech if isinstance(config, SERSpeechConfig) else SERModelForText


def _base_model(path: str, adapter: PeftConfig) -> nn.Module:
    """The frozen model under an adapter: rebuilt from the stored config and its pretrained encoder,
    or loaded from the ser-hf checkpoint the adapter config names."""
    from transformers import AutoConfig, AutoModel

    class_for = _model_classes()
    if os.path.isfile(os.path.join(path, CONFIG_NAME)):
        config = AutoConfig.from_pretrained(path)
        if not getattr(config, "backbone_name_or_path", None):
            raise ValueError(f"{path}/{CONFIG_NAME} names no pretrained encoder (backbone_name_or_path)")
        kwargs = {k: v for k, v in config.to_dict().items() if k not in _NOT_CONFIG_KWARGS}
        return class_for(config).from_backbone(config.backbone_name_or_path, **kwargs)
    base = resolve_base_model(path, adapter.base_model_name_or_path)
    if not base:
        raise ValueError(f"{path}: {ADAPTER_CONFIG_NAME} names no base model and there is no {CONFIG_NAME} beside it")
    if os.path.isabs(base) and not os.path.isdir(base):
        raise FileNotFoundError(f"base model {base} named in {path}/{ADAPTER_CONFIG_NAME} does not exist (moved or deleted?)")
    if os.path.isdir(base) and is_adapter_checkpoint(base):
        raise ValueError(f"base model {base} of {path} is itself an adapter checkpoint; it must be a full checkpoint")
    return AutoModel.from_pretrained(base)


# Config keys that describe the saved file rather than the model (``from_backbone`` sets the rest again).
_NOT_CONFIG_KWARGS = {"backbone_name_or_path", "model_type", "transformers_version", "architectures", "id2label", "label2id", "_name_or_path"}


def load_ser_model(path: str | os.PathLike, *, merge: bool = False, is_trainable: bool = False) -> nn.Module:
    """Load a full or an adapter checkpoint.

    Adapter checkpoints come back as an `SERPeftModel` (``is_trainable`` to continue training them),
    or merged into a plain ser-hf model with ``merge``. Full checkpoints load through the Auto classes.
    """
    from transformers import AutoModel

    _model_classes()
    path = os.fspath(path)
    if not is_adapter_checkpoint(path):
        return AutoModel.from_pretrained(path)
    adapter = PeftConfig.from_pretrained(path)
    base = _base_model(path, adapter)
    adapter.task_type = None  # load as SERPeftModel (peft would pick its task class otherwise)
    adapter.base_model_name_or_path = resolve_base_model(path, adapter.base_model_name_or_path)
    model = SERPeftModel.from_pretrained(base, path, is_trainable=is_trainable, config=adapter)
    return merge_lora(model) if merge else model


def load_ser_config(path: str | os.PathLike):
    """The ser-hf config of a full or an adapter checkpoint (without loading weights)."""
    from transformers import AutoConfig

    _model_classes()
    path = os.fspath(path)
    if is_adapter_checkpoint(path) and not os.path.isfile(os.path.join(path, CONFIG_NAME)):
        base = resolve_base_model(path, PeftConfig.from_pretrained(path).base_model_name_or_path)
        if not base:
            raise ValueError(f"{path}: {ADAPTER_CONFIG_NAME} names no base model and there is no {CONFIG_NAME} beside it")
        return AutoConfig.from_pretrained(base)
    return AutoConfig.from_pretrained(path)


__all__ = [
    "DEFAULT_LORA_TARGETS",
    "SERPeftModel",
    "apply_finetuning_policy",
    "apply_lora",
    "default_lora_target_modules",
    "describe_trainable_parameters",
    "is_adapter_checkpoint",
    "is_lora_model",
    "load_ser_config",
    "load_ser_model",
    "merge_lora",
    "prepare_model_for_training",
    "save_checkpoint",
    "trainable_parameter_counts",
    "transformer_layers",
]
