"""`SERModelForSpeech`: any Hugging Face audio encoder + masked pooling + emotion heads."""
from __future__ import annotations

import torch
from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

from .configuration import SERSpeechConfig
from .base import SERBackboneModel, SEROutput
from .input_normalization import mel_frame_mask, normalize_per_utterance, normalize_with_statistics
from .lean_attention import use_lean_wavlm_attention

WHISPER_HOP = 160  # samples per mel frame at 16 kHz


def _build_encoder(config: SERSpeechConfig):
    backbone_config = config.get_backbone_config()
    if config.is_whisper:
        # Only the encoder: the decoder is dead weight for classification.
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(backbone_config)
    return AutoModel.from_config(backbone_config)


def whisper_input_frames(config: SERSpeechConfig) -> int:
    """Mel frames Whisper's encoder takes (two per encoder position)."""
    return 2 * config.get_backbone_config().max_source_positions


def build_feature_extractor(config: SERSpeechConfig, backbone_name_or_path: str | None = None):
    """The feature extractor matching the encoder: raw waveform (wav2vec2 family) or log-mel (Whisper).

    From a pretrained backbone the extractor is loaded from it; otherwise one is built from the config,
    which is what tests and randomly initialised encoders use.
    """
    if config.is_whisper:
        frames = whisper_input_frames(config)
        backbone = config.get_backbone_config()
        extractor = WhisperFeatureExtractor(
            feature_size=backbone.num_mel_bins,
            sampling_rate=config.sampling_rate,
            hop_length=WHISPER_HOP,
            # A window of the crop length, not 30 s (see SERSpeechConfig.max_audio_seconds).
            chunk_length=frames * WHISPER_HOP // config.sampling_rate,
            return_attention_mask=True,
        )
        return extractor
    if backbone_name_or_path is not None:
        extractor = AutoFeatureExtractor.from_pretrained(backbone_name_or_path)
        extractor.return_attention_mask = True
        return extractor
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=config.sampling_rate, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )


class SERModelForSpeech(SERBackboneModel):
    """Speech emotion model: categorical logits, A/V/D attributes, or both.

    Inputs are what the feature extractor gives: ``input_values`` (+ sample-level ``attention_mask``)
    for wav2vec2-family encoders, ``input_features`` (+ mel-frame ``attention_mask``) for Whisper.
    Pooling only sees frames computed from real samples, using the encoder's own length function.
    """

    config_class = SERSpeechConfig
    main_input_name = "input_values"

    def __init__(self, config: SERSpeechConfig):
        super().__init__(config)
        self.backbone = _build_encoder(config)
        backbone_config = self.backbone.config
        if backbone_config.model_type == "wavlm":  # nothing reads attention weights: don't keep them
            use_lean_wavlm_attention(self.backbone)
        num_hidden_states = backbone_config.num_hidden_layers + 1
        hidden_size = backbone_config.d_model if config.is_whisper else backbone_config.hidden_size
        self._build_pooling_and_heads(hidden_size, num_hidden_states)
        if config.is_whisper and getattr(config, "input_normalization", "none") == "speaker":
            # The training population's log-mel statistics: what an input without speaker statistics
            # (a recording scored alone) is normalised by. Set by training, saved with the weights.
            bins = backbone_config.num_mel_bins
            self.register_buffer("input_mean", torch.zeros(bins))
            self.register_buffer("input_std", torch.ones(bins))
        if config.freeze_feature_encoder:
            self.freeze_feature_encoder()
        self.post_init()

    @classmethod
    def from_backbone(cls, backbone_name_or_path: str, **config_kwargs) -> "SERModelForSpeech":
        """A new SER model on a *pretrained* encoder, e.g. ``from_backbone("microsoft/wavlm-large", labels=[...])``."""
        config = SERSpeechConfig(backbone_name_or_path=backbone_name_or_path, **config_kwargs)
        model = cls(config)
        if config.is_whisper:
            from transformers import WhisperModel

            state = WhisperModel.from_pretrained(backbone_name_or_path).get_encoder().state_dict()
            positions = model.backbone.embed_positions.weight.shape[0]
            state["embed_positions.weight"] = state["embed_positions.weight"][:positions]
        else:
            state = AutoModel.from_pretrained(backbone_name_or_path).state_dict()
        model.load_backbone_weights(state)
        if config.freeze_feature_encoder:
            model.freeze_feature_encoder()
        return model

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the convolutional front end (CNN feature encoder / Whisper convs)."""
        if self.config.is_whisper:
            modules = [self.backbone.conv1, self.backbone.conv2]
        else:
            modules = [self.backbone.feature_extractor]
        for module in modules:
            for parameter in module.parameters():
                parameter.requires_grad = False

    def frame_lengths(self, attention_mask: torch.Tensor | None, num_frames: int, batch: int, device) -> torch.Tensor:
        """Valid encoder frames per utterance, from the input-level attention mask."""
        if attention_mask is None:
            return torch.full((batch,), num_frames, dtype=torch.long, device=device)
        input_lengths = attention_mask.sum(-1)
        if self.config.is_whisper:
            if attention_mask.shape[-1] > 2 * num_frames:  # a sample-level mask: count mel frames
                input_lengths = torch.div(input_lengths + WHISPER_HOP - 1, WHISPER_HOP, rounding_mode="floor")
            lengths = (input_lengths - 1) // 2 + 1  # conv2 has stride 2
        else:
            lengths = self.backbone._get_feat_extract_output_lengths(input_lengths)
        return lengths.clamp(min=1, max=num_frames).long()

    def encode(self, input_values=None, input_features=None, attention_mask=None, speaker_mean=None, speaker_std=None):
        want_all = self.layer_weights is not None
        if self.config.is_whisper:
            if input_features is None:
                raise ValueError("Whisper-based SER models take `input_features` (log-mel), not `input_values`")
            normalization = getattr(self.config, "input_normalization", "none")
            if normalization != "none":
                frames = mel_frame_mask(attention_mask, input_features.shape[-1], WHISPER_HOP)
                if normalization == "speaker":
                    if speaker_mean is None or speaker_std is None:  # a recording alone: the training population's
                        batch = input_features.shape[0]
                        speaker_mean = self.input_mean.unsqueeze(0).expand(batch, -1)
                        speaker_std = self.input_std.unsqueeze(0).expand(batch, -1)
                    input_features = normalize_with_statistics(input_features, speaker_mean, speaker_std, frames)
                else:
                    input_features = normalize_per_utterance(input_features, frames)
            outputs = self.backbone(input_features, output_hidden_states=want_all)
            # Whisper attends over the whole (zero-padded) window; pooling still skips padded frames.
        else:
            if input_values is None:
                raise ValueError("this SER model takes `input_values` (raw waveform)")
            outputs = self.backbone(input_values, attention_mask=attention_mask, output_hidden_states=want_all)
        hidden = self.combine_layers(outputs)
        batch, num_frames = hidden.shape[:2]
        lengths = self.frame_lengths(attention_mask, num_frames, batch, hidden.device)
        mask = torch.arange(num_frames, device=hidden.device).unsqueeze(0) < lengths.unsqueeze(1)
        return hidden, mask

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        attribute_labels: torch.Tensor | None = None,
        speaker_mean: torch.Tensor | None = None,
        speaker_std: torch.Tensor | None = None,
        **kwargs,
    ) -> SEROutput:
        hidden, mask = self.encode(
            input_values=input_values,
            input_features=input_features,
            attention_mask=attention_mask,
            speaker_mean=speaker_mean,
            speaker_std=speaker_std,
        )
        pooled = self.pooling(hidden, mask)
        return self._heads_forward(pooled, labels, attribute_labels)
