"""The FG-CLIP 2 network on transformers' SigLIP 2 building blocks.

Only what FG-CLIP 2 adds to SigLIP 2 is written here: the long-text position tables, last-token
pooling with three text heads ("walk types"), the dense-feature head and region pooling. Parameter
names equal the official ones, so released checkpoints load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from transformers import Siglip2TextModel, Siglip2VisionModel
from transformers.models.siglip2.modeling_siglip2 import Siglip2MultiheadAttentionPoolingHead

from ..checkpoint import resolve_checkpoint
from ..config import FGCLIP2Config, check_walk_type
from ..devices import resolve_device
from .boxes import project_boxes, roi_embeddings, validate_boxes
from .attention_masks import encoder_key_mask
from .heads import dense_head_forward, pooling_head_forward
from .weights import as_dtype, check_state_dict, read_state_dict, save_model


class FGCLIP2TextEmbeddings(nn.Module):
    """Token embeddings plus either the short (64) or the long (196) position table.

    Long texts take their first ``keep_len`` positions from ``position_embedding_ori`` and the rest
    from ``position_embedding_res`` (FG-CLIP's long-text scheme).
    """

    def __init__(self, config: FGCLIP2Config):
        super().__init__()
        text = config.text_config
        self.keep_len = config.keep_len
        self.token_embedding = nn.Embedding(text.vocab_size, text.hidden_size)
        self.position_embedding = nn.Embedding(text.max_position_embeddings, text.hidden_size)
        self.position_embedding_ori = nn.Embedding(config.longtext_len, text.hidden_size)
        self.position_embedding_res = nn.Embedding(config.longtext_len, text.hidden_size)

    def forward(self, input_ids: torch.Tensor, walk_type: str = "short") -> torch.Tensor:
        length = input_ids.shape[-1]
        positions = torch.arange(length, device=input_ids.device)
        if walk_type == "long":
            table_len = self.position_embedding_ori.num_embeddings
            if length > table_len:
                raise ValueError(f"long text has {length} tokens; the model's long position table holds {table_len}")
            short_part = (positions < self.keep_len)[:, None]
            position = torch.where(short_part, self.position_embedding_ori(positions), self.position_embedding_res(positions))
        else:
            table_len = self.position_embedding.num_embeddings
            if length > table_len:
                raise ValueError(
                    f"{walk_type} text has {length} tokens; the model's position table holds {table_len} "
                    "(use walk_type='long' for long captions)"
                )
            position = self.position_embedding(positions)
        return self.token_embedding(input_ids) + position.to(self.token_embedding.weight.dtype)


def run_encoder_layers(encoder: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """transformers' SigLIP 2 encoder layers, called one by one with the model's own mask.

    The layers are transformers' (their weights, attention kernels and activation checkpointing); the
    mask is :func:`.attention_masks.encoder_key_mask`'s, whatever a release would have made of it.
    """
    for layer in encoder.layers:
        out = layer(hidden, mask)
        hidden = out[0] if isinstance(out, tuple) else out  # some releases return a 1-tuple
    return hidden


@dataclass
class VisionOutputs:
    """One vision-tower pass: ``last_hidden_state`` (B, N, D) after the post LayerNorm and ``pooler_output``
    (B, D), the pooling head's global embedding (None when it was not asked for)."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None


class FGCLIP2TextTransformer(Siglip2TextModel):
    """SigLIP 2's text tower with FG-CLIP 2's embeddings; returns the last token, before any head."""

    def __init__(self, config: FGCLIP2Config):
        super().__init__(config.text_config)
        self.embeddings = FGCLIP2TextEmbeddings(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, walk_type: str = "short"):
        hidden = self.embeddings(input_ids, walk_type)
        mask = encoder_key_mask(attention_mask, self.config._attn_implementation, hidden.dtype)
        hidden = run_encoder_layers(self.encoder, hidden, mask)
        hidden = self.final_layer_norm(hidden)
        # FG-CLIP 2 pools the LAST position, padding or not (texts are always padded to max_length).
        return hidden[:, -1, :]


@dataclass
class FGCLIP2Output:
    logits_per_image: torch.Tensor
    logits_per_text: torch.Tensor
    image_embeds: torch.Tensor
    text_embeds: torch.Tensor


class FGCLIP2Model(nn.Module):
    """FG-CLIP 2 with the official method names and semantics.

    Build from a checkpoint with :meth:`from_pretrained`; ``FGCLIP2Model(config)`` gives random weights.
    """

    def __init__(self, config: FGCLIP2Config, attn_implementation: str = "sdpa"):
        super().__init__()
        self.config = config
        for sub in (config.text_config, config.vision_config):
            sub._attn_implementation = attn_implementation
        self.vision_model = Siglip2VisionModel(config.vision_config)
        self.text_model = FGCLIP2TextTransformer(config)
        dim = config.text_config.hidden_size
        self.dense_feature_head = Siglip2MultiheadAttentionPoolingHead(config.vision_config)
        self.longtext_head = nn.Linear(dim, dim)
        self.boxtext_head = nn.Linear(dim, dim)
        self.logit_scale = nn.Parameter(torch.zeros(1))
        self.logit_bias = nn.Parameter(torch.zeros(1))

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, name_or_path, device=None, dtype=None, attn_implementation: str = "sdpa"):
        """Build a model from a checkpoint folder or model-hub id, in eval mode.

        ``dtype`` (default float32, whatever the file stores, as transformers does) and ``device``
        (default CPU; ``"auto"`` picks CUDA when available) place the weights; ``attn_implementation``
        is ``"sdpa"`` (fused kernels) or ``"eager"`` (explicit softmax, for checking).
        """
        target = resolve_device("cpu" if device is None else device)
        folder = resolve_checkpoint(name_or_path)
        config = FGCLIP2Config.from_json_file(folder / "config.json")
        state = read_state_dict(folder)
        # Build on the meta device: no time is spent on random initialisation that loading overwrites.
        with torch.device("meta"):
            model = cls(config, attn_implementation=attn_implementation)
        model.load_state_dict(check_state_dict(model, state, str(folder)), strict=True, assign=True)
        model.name_or_path = str(name_or_path)
        model.checkpoint_folder = folder
        return model.to(dtype=as_dtype(dtype or torch.float32)).to(target).eval()

    def save_pretrained(self, folder) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``."""
        save_model(self, folder)

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def dtype(self) -> torch.dtype:
        return self.logit_scale.dtype

    # ------------------------------------------------------------------ vision
    def vision_outputs(self, pixel_values, pixel_attention_mask=None, spatial_shapes=None, pool: bool = True) -> VisionOutputs:
        """One vision-tower pass: ``.pooler_output`` (B, D), the global embedding before normalisation,
        and ``.last_hidden_state`` (B, N, D) after the post LayerNorm, the input of the dense-feature head.

        For callers that need both from one pass (training uses the global embedding and the dense
        features of the same images); :meth:`get_image_features` and :meth:`vision_hidden_states`
        each return one of them. ``pool=False`` skips the pooling head (``pooler_output`` is None).

        transformers' SigLIP 2 parts (embeddings, encoder layers, post LayerNorm, pooling head) are
        called here one by one, each with the mask it takes: a (B, 1, 1, N) key mask for the encoder,
        O(N) memory at any patch count, and a (B, N) key-padding mask for the pooling head.
        """
        vision = self.vision_model
        hidden = vision.embeddings(pixel_values.to(self.dtype), spatial_shapes)
        mask = encoder_key_mask(pixel_attention_mask, self.config.vision_config._attn_implementation, hidden.dtype)
        hidden = vision.post_layernorm(run_encoder_layers(vision.encoder, hidden, mask))
        pooled = pooling_head_forward(vision.head, hidden, pixel_attention_mask) if pool else None
        return VisionOutputs(last_hidden_state=hidden, pooler_output=pooled)

    def vision_hidden_states(self, pixel_values, pixel_attention_mask=None, spatial_shapes=None) -> torch.Tensor:
        """The vision tower's last hidden state (B, N, D), after the post LayerNorm."""
        return self.vision_outputs(pixel_values, pixel_attention_mask, spatial_shapes, pool=False).last_hidden_state

    def get_image_features(self, pixel_values, pixel_attention_mask=None, spatial_shapes=None) -> torch.Tensor:
        """Global image embeddings (B, D), not normalised (as the official method)."""
        return self.vision_outputs(pixel_values, pixel_attention_mask, spatial_shapes).pooler_output

    def dense_features_from_hidden(self, hidden: torch.Tensor, pixel_attention_mask=None) -> torch.Tensor:
        return dense_head_forward(self.dense_feature_head, hidden, pixel_attention_mask)

    def get_image_dense_feature(self, pixel_values, pixel_attention_mask=None, spatial_shapes=None) -> torch.Tensor:
        """Dense patch features (B, max_num_patches, D), padding rows included, not normalised."""
        hidden = self.vision_hidden_states(pixel_values, pixel_attention_mask, spatial_shapes)
        return self.dense_features_from_hidden(hidden, pixel_attention_mask)

    def get_image_region_features(
        self,
        pixel_values,
        pixel_attention_mask=None,
        spatial_shapes=None,
        image_sizes: Sequence[Sequence[int]] | None = None,
        region_infos=None,
    ) -> list[torch.Tensor]:
        """RoIAlign region embeddings, one (num_boxes, D) tensor per image, not normalised.

        ``image_sizes`` are the original (height, width) of each image and ``region_infos`` xyxy boxes in
        those pixels. A box partly outside its image is clipped to the image; a box of zero area,
        inverted, non-finite or entirely outside raises :class:`fgdense.errors.BoxError`.
        """
        if region_infos is None or len(region_infos) == 0:
            return []
        batch = pixel_values.shape[0]
        if image_sizes is None or len(image_sizes) != batch or len(region_infos) != batch:
            raise ValueError(
                f"get_image_region_features needs one image size and one box list per image: {batch} images, "
                f"{0 if image_sizes is None else len(image_sizes)} sizes, {len(region_infos)} box lists"
            )
        checked = [validate_boxes(region_infos[i], tuple(image_sizes[i]), what=f"image {i} box") for i in range(batch)]
        dense = self.get_image_dense_feature(pixel_values, pixel_attention_mask, spatial_shapes)
        return [
            roi_embeddings(grid_of(dense[i], spatial_shapes[i]), project_boxes(checked[i], image_sizes[i], spatial_shapes[i]))
            for i in range(batch)
        ]

    # -------------------------------------------------------------------- text
    def get_text_features(self, input_ids, attention_mask=None, walk_type: str = "short") -> torch.Tensor:
        """Text embeddings (B, D), not normalised. ``walk_type``: short, box or long."""
        walk = check_walk_type(walk_type)
        pooled = self.text_model(input_ids, attention_mask=attention_mask, walk_type=walk)
        head = {"short": self.text_model.head, "box": self.boxtext_head, "long": self.longtext_head}[walk]
        return head(pooled)

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        input_ids,
        pixel_values,
        pixel_attention_mask=None,
        spatial_shapes=None,
        attention_mask=None,
        walk_type: str = "short",
    ) -> FGCLIP2Output:
        image_embeds = self.get_image_features(pixel_values, pixel_attention_mask, spatial_shapes)
        text_embeds = self.get_text_features(input_ids, attention_mask, walk_type)
        image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
        text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp() + self.logit_bias
        return FGCLIP2Output(
            logits_per_image=logits_per_text.t(),
            logits_per_text=logits_per_text,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
        )


def grid_of(features: torch.Tensor, spatial_shape) -> torch.Tensor:
    """The (h, w, D) grid of one image's real patches from its (N, D) padded rows."""
    h, w = int(spatial_shape[0]), int(spatial_shape[1])
    return features[: h * w].reshape(h, w, features.shape[-1])
