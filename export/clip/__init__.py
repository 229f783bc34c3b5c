"""OpenCLIP checkpoints -> assoc bundles (`assoc export --from open-clip ARCH --pretrained TAG_OR_FILE`).

source.py finds the architecture and the weights (a file, or a tag found in the local caches only) and
builds the open_clip model; graphs.py makes its two ONNX graphs; tokenizer.py converts its tokenizer;
parity.py compares the bundle with open_clip; bundle.py writes it all. Only this module is torch-free:
the CLI reads the choices below without loading torch.
"""

from __future__ import annotations

# The patch vectors a bundle is exported with (assoc.export.clip.graphs). "value" is the default: on
# published training-free segmentation benchmarks CLIP's raw last-layer patch tokens localise far worse
# than variants built on its last block's value path (SCLIP, Wang et al., ECCV 2024: 14.1% mean mIoU over
# eight benchmarks for CLIP's tokens, 38.2% for SCLIP's; MaskCLIP, Zhou et al., ECCV 2022, introduced the
# value path; ClearCLIP, Lan et al., ECCV 2024, found dropping the block's residual and MLP from it helps).
# This exact variant, and any of them on assoc's own data, is not measured here (no real weights).
DENSE_VARIANTS = ("plain", "value")
DEFAULT_DENSE = "value"
# λ of a converted bundle's ranking (score = (1 - λ) MISA + λ cos(photo, sentence)): 1 ranks exactly as
# CLIP's own cosine, the only setting whose retrieval quality is published for these weights. Lower
# values mix in the per-word MaxSim, unmeasured here; `assoc ranking BUNDLE --global-weight` changes it
# without indexing again.
DEFAULT_GLOBAL_WEIGHT = 1.0
