"""`assoc export --from open-clip`: OpenCLIP models as bundles, checked against open_clip itself.

No real CLIP weights are at hand, so the models have random weights from a fixed seed (every line of the
export runs the same on them). One ViT-B-32 "checkpoint" file is written once and exported through the
CLI; the bundle it makes serves the parity, tokenizer, ranking and end-to-end tests. One ViT-B-16 and
one larger-input ViT-B-32 are exported beside it. Photos and captions are the real ones in ../shared/data.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_support import SELF_SCORE, assert_one_line_error, assoc, copy_photos, ok, ok_json, run_process

from assoc.runtime.encoding.bundle import CONFIG_NAME, load_bundle, sha256_file
from assoc.runtime.encoding.encoders import ImageEncoder, TextEncoder
from assoc.runtime.encoding.providers import open_session
from assoc.runtime.encoding.tokenizer import QueryTokenizer
from assoc.runtime.imaging.images import load_image

pytestmark = pytest.mark.slow
open_clip = pytest.importorskip(
    "open_clip", reason="the OpenCLIP export needs the clip extra: pip install 'assoc[clip]'"
)
torch = pytest.importorskip("torch")

from assoc.export.clip.bundle import export_open_clip  # noqa: E402 - after the skips: these need torch
from assoc.models.features import load_pixels  # noqa: E402

ARCH = "ViT-B-32"
SEED = 7
# ONNX Runtime against torch on unit vectors, float32 both: only the order of sums differs.
PARITY = 1e-5
CAPTIONS = [
    "A black dog is running through the grass .",
    "Two children play on the beach, near 3 boats!",
    "a man in a red jacket climbs a rock wall",
    "The café's owner pours an espresso ; naïve art on the walls",
]


def _figures(**diffs: float) -> str:
    return ", ".join(f"{name} {value:.1e}" for name, value in diffs.items())


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A ViT-B-32 checkpoint file as a user would have one (random weights), and the open_clip model it holds."""
    torch.manual_seed(SEED)
    model = open_clip.create_model(ARCH, pretrained=None).eval()
    path = tmp_path_factory.mktemp("weights") / "vit-b-32.pt"
    torch.save(model.state_dict(), path)
    return path, model


@pytest.fixture(scope="module")
def converted(weights: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory, flickr8k: Path) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "clip-b32"
    result = ok(
        "export", "--from", "open-clip", ARCH, "--pretrained", weights[0], "--out", out, "--parity-data", flickr8k
    )
    assert result.stdout.strip() == str(out)
    assert re.search(r"parity with open_clip on 4 photos, max \|diff\|: patches \S+, image \S+", result.stderr)
    return out


@pytest.fixture(scope="module")
def photos(flickr8k: Path) -> list[Path]:
    return sorted((flickr8k / "images").glob("*.jpg"))[:30]


def _pixels(paths: list[Path], bundle_dir: Path) -> np.ndarray:
    """The runtime's squashed model input, which open_clip is fed too (not its centre crop)."""
    visual = load_bundle(bundle_dir).config.visual
    return np.stack([load_pixels(p, visual.image_size[0], visual.mean, visual.std) for p in paths])


def _token_states(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """open_clip's per-token text vectors: encode_text's ln_final output, projected and normalised."""
    states = []
    hook = model.ln_final.register_forward_hook(lambda _m, _i, output: states.append(output))
    with torch.no_grad():
        model.encode_text(ids)
        hook.remove()
        return torch.nn.functional.normalize(states[0] @ model.text_projection, dim=-1)


def _value_patches(model: Any, pixels: torch.Tensor) -> np.ndarray:
    """MaskCLIP's value path written out from the weights: the last block's input, its ln_1, the value
    third of in_proj, out_proj; then ln_post and proj. No residual, no MLP."""
    visual = model.visual
    last = visual.transformer.resblocks[-1]
    seen = []
    hook = last.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    with torch.no_grad():
        model.encode_image(pixels)
        hook.remove()
        width = seen[0].shape[-1]
        value = torch.nn.functional.linear(
            last.ln_1(seen[0]), last.attn.in_proj_weight[2 * width :], last.attn.in_proj_bias[2 * width :]
        )
        patches = visual.ln_post(last.attn.out_proj(value)[:, 1:]) @ visual.proj
    side = visual.grid_size[0]
    return torch.nn.functional.normalize(patches, dim=-1).reshape(len(pixels), side, side, -1).numpy()


def test_the_bundle_declares_its_outputs_and_where_it_came_from(converted: Path, weights: tuple[Path, Any]) -> None:
    bundle = load_bundle(converted)
    config = bundle.config
    assert (config.embed_dim, config.visual.image_size, config.visual.grid) == (512, (224, 224), (7, 7))
    assert config.visual.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    assert config.visual.std == pytest.approx(open_clip.OPENAI_DATASET_STD)
    assert config.textual.max_length == 77 and not config.textual.quantized
    assert config.ranking.global_weight == 1.0 and config.ranking.token_weights is None
    raw = json.loads((converted / CONFIG_NAME).read_text())
    assert (config.visual.global_output, config.textual.sentence_output) == ("image", "sentence")
    assert (raw["visual"]["global_output"], raw["textual"]["sentence_output"]) == ("image", "sentence")
    training = raw["training"]
    assert training["dense"] == "value"
    assert (training["source"], training["arch"], training["checkpoint"]) == ("open_clip", ARCH, str(weights[0]))
    assert training["checkpoint_sha256"] == sha256_file(weights[0])
    assert max(training["parity_max_abs"].values()) < PARITY
    # Both graphs take any batch; the visual one its one input size.
    visual = open_session(bundle.visual_path, "cpu")
    assert [o.name for o in visual.get_outputs()] == ["patches", "image"]
    patches, image = visual.run(None, {"pixels": np.zeros((3, 3, 224, 224), np.float32)})
    assert patches.shape == (3, 7, 7, 512) and image.shape == (3, 512)
    assert np.linalg.norm(patches, axis=-1) == pytest.approx(np.ones((3, 7, 7)), abs=1e-5)
    textual = open_session(bundle.textual_path, "cpu")
    assert [o.name for o in textual.get_outputs()] == ["tokens", "sentence"]


def test_parity_with_open_clip_on_real_photos_and_captions(
    converted: Path, weights: tuple[Path, Any], photos: list[Path]
) -> None:
    """All four outputs against open_clip's own functions on real photos and captions; the patch
    vectors against the value path written out from the weights."""
    model = weights[1]
    bundle = load_bundle(converted)
    pixels = _pixels(photos[:4], converted)
    onnx_patches, onnx_image = open_session(bundle.visual_path, "cpu").run(None, {"pixels": pixels})
    with torch.no_grad():
        image = model.encode_image(torch.from_numpy(pixels), normalize=True).numpy()
    # The runtime's own encoder gives the same grids.
    assert np.array_equal(ImageEncoder(bundle, "cpu").encode_arrays(pixels), onnx_patches)

    ids = open_clip.get_tokenizer(ARCH)(CAPTIONS)
    with torch.no_grad():
        sentence = model.encode_text(ids, normalize=True).numpy()
    reference_tokens = _token_states(model, ids).numpy()
    tokenizer = QueryTokenizer(bundle.tokenizer_path, 77)
    batch = tokenizer(CAPTIONS)
    assert np.array_equal(batch.input_ids, ids[:, : batch.input_ids.shape[1]].numpy())
    onnx_tokens, onnx_sentence = open_session(bundle.textual_path, "cpu").run(
        None, {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    )
    queries = TextEncoder(bundle, "cpu").encode(CAPTIONS)
    word_vectors = max(
        float(np.abs(q.vectors - reference_tokens[row, : batch.word_mask.shape[1]][batch.word_mask[row]]).max())
        for row, q in enumerate(queries)
    )
    real = batch.attention_mask.astype(bool)
    diffs = {
        "patches": float(np.abs(onnx_patches - _value_patches(model, torch.from_numpy(pixels))).max()),
        "image": float(np.abs(onnx_image - image).max()),
        "tokens": float(np.abs(onnx_tokens[real] - reference_tokens[:, : real.shape[1]][real]).max()),
        "words": word_vectors,
        "sentence": float(np.abs(onnx_sentence - sentence).max()),
    }
    print(f"ViT-B-32 value parity with open_clip, max |diff|: {_figures(**diffs)}")
    assert max(diffs.values()) < PARITY, diffs
    assert [q.words for q in queries][0] == ["A", "black", "dog", "is", "running", "through", "the", "grass"]


def test_vit_b16_plain_patches_are_open_clips_own_tokens(tmp_path: Path, photos: list[Path]) -> None:
    out = tmp_path / "b16"
    result = export_open_clip("ViT-B-16", None, out, dense="plain", seed=SEED)
    assert result.config.visual.grid == (14, 14) and result.config.training["dense"] == "plain"
    assert result.parity.worst < PARITY
    torch.manual_seed(SEED)  # the weights export_open_clip drew
    model = open_clip.create_model("ViT-B-16", pretrained=None).eval()
    pixels = _pixels(photos[:3], out)
    onnx_patches, onnx_image = open_session(out / "visual" / "model.onnx", "cpu").run(None, {"pixels": pixels})
    model.visual.output_tokens = True
    with torch.no_grad():
        pooled, tokens = model.visual(torch.from_numpy(pixels))
        patches = torch.nn.functional.normalize(tokens @ model.visual.proj, dim=-1).reshape(3, 14, 14, -1).numpy()
        image = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    diffs = {"patches": float(np.abs(onnx_patches - patches).max()), "image": float(np.abs(onnx_image - image).max())}
    print(f"ViT-B-16 plain parity with open_clip, max |diff|: {_figures(**diffs)}")
    assert max(diffs.values()) < PARITY, diffs


def test_a_larger_input_interpolates_the_checkpoints_positions(
    weights: tuple[Path, Any], tmp_path: Path, photos: list[Path]
) -> None:
    out = tmp_path / "b32-288"
    export_open_clip(ARCH, str(weights[0]), out, image_size=288)
    config = load_bundle(out).config
    assert (config.visual.image_size, config.visual.grid) == ((288, 288), (9, 9))
    # open_clip's own loading of the same file at that size (it interpolates the 7x7 position grid to 9x9)
    model = open_clip.create_model(ARCH, pretrained=str(weights[0]), force_image_size=288).eval()
    assert model.visual.positional_embedding.shape[0] == 82
    pixels = _pixels(photos[:2], out)
    onnx_patches, onnx_image = open_session(out / "visual" / "model.onnx", "cpu").run(None, {"pixels": pixels})
    with torch.no_grad():
        image = model.encode_image(torch.from_numpy(pixels), normalize=True).numpy()
    assert onnx_patches.shape == (2, 9, 9, 512)
    assert float(np.abs(onnx_image - image).max()) < PARITY
    assert float(np.abs(onnx_patches - _value_patches(model, torch.from_numpy(pixels))).max()) < PARITY


def _real_captions(flickr8k: Path, coco_boxes: Path) -> list[str]:
    """About 500 real captions, leaning on the hard ones: every one with digits or punctuation beyond
    .,'- (the data holds no character outside ASCII: NON_ASCII covers those), the longest ones, and a
    spread of the rest; plus captions run together past the 77-token context, which open_clip cuts."""
    lines = (flickr8k / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines()
    flickr = [line.split("\t", 1)[1] for line in lines if "\t" in line]
    manifest = json.loads((coco_boxes / "manifest.json").read_text(encoding="utf-8"))
    records = manifest if isinstance(manifest, list) else manifest["images"]
    coco = [caption for record in records for caption in record["captions"]]
    every = flickr + coco
    hard = [c for c in every if re.search(r"[0-9]|[^\w\s.,'-]", c)]
    longest = sorted(every, key=len)[-20:]
    chosen = list(dict.fromkeys([*hard, *longest, *every[:: max(1, len(every) // 150)]]))
    return [*chosen, " ".join(flickr[:10]), " ".join(coco[:10])]


def test_the_tokenizer_gives_open_clips_ids_on_real_captions(converted: Path, flickr8k: Path, coco_boxes: Path) -> None:
    captions = _real_captions(flickr8k, coco_boxes)
    assert len(captions) >= 300 and sum(any(ch.isdigit() for ch in c) for c in captions) >= 100
    ours = QueryTokenizer(converted / "textual" / "tokenizer.json", 77)(captions)
    theirs = open_clip.get_tokenizer(ARCH)(captions).numpy()
    assert (theirs[:, 76] != 0).sum() >= 2  # the run-together captions fill the whole context
    padded = np.zeros_like(theirs)
    padded[:, : ours.input_ids.shape[1]] = ours.input_ids
    differ = [captions[row] for row in range(len(captions)) if not np.array_equal(padded[row], theirs[row])]
    print(f"tokenizer: {len(differ)} of {len(captions)} real captions tokenized differently from open_clip")
    assert differ == []
    # Special tokens are no words; bare punctuation neither (as for the shipped tokenizer).
    batch = QueryTokenizer(converted / "textual" / "tokenizer.json", 77)(["a dog , running !"])
    assert batch.words == [["a", "dog", "running"]]
    assert batch.word_mask[0].tolist() == [False, True, True, False, True, False, False]


# Text beyond ASCII, each line aimed at one part of open_clip's cleaning (ftfy, html.unescape) or its split.
NON_ASCII = [
    "Ein Hund läuft über die Wiese, Größe XL",
    "São Paulo: crianças brincam à beira-mar",
    "naïve café crème brûlée façade Æsir Øresund",
    "Собака бежит по траве",
    "一只狗在草地上奔跑 日本語のテキスト 한국어 문장",
    "emoji dogs 🐶🐕 and a thumbs up 👍🏽",
    "“curly double” and ‘single’ quotes, don’t",
    "ﬁsh ﬂoat oﬀ the ﬆage",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ　ｗｉｔｈ　ｓｐａｃｅｓ！",
    "&quot;quoted&quot; a &lt;b&gt; tag, fish &amp; chips, &amp;quot;twice&amp;quot;, it&#39;s",
    "tabs\tand\nnew lines\r\nand  many   spaces",
    "C1 controls \x93read as Windows-1252\x94 \x85",
    "zero\u200bwidth and a \ufeffbyte order mark",
    "déjà vu " * 30,
]


def test_the_tokenizer_mirrors_open_clips_cleaning_beyond_ascii(converted: Path) -> None:
    ours = QueryTokenizer(converted / "textual" / "tokenizer.json", 77)(NON_ASCII)
    theirs = open_clip.get_tokenizer(ARCH)(NON_ASCII).numpy()
    padded = np.zeros_like(theirs)
    padded[:, : ours.input_ids.shape[1]] = ours.input_ids
    assert [text for text, a, b in zip(NON_ASCII, padded, theirs, strict=True) if not np.array_equal(a, b)] == []


def test_what_the_tokenizer_does_not_mirror(converted: Path) -> None:
    """The documented gaps (assoc.export.clip.tokenizer): ftfy's mojibake repair, and Python's final
    sigma when lower-casing Greek capitals (the tokenizers library lower-cases letter by letter)."""
    gaps = ["CafÃ© au lait", "ΟΔΟΣ"]
    ours = QueryTokenizer(converted / "textual" / "tokenizer.json", 77)(gaps)
    theirs = open_clip.get_tokenizer(ARCH)(gaps).numpy()
    for row in range(len(gaps)):
        assert not np.array_equal(ours.input_ids[row], theirs[row, : ours.input_ids.shape[1]])


def test_global_weight_one_ranks_as_open_clip(
    converted: Path, weights: tuple[Path, Any], photos: list[Path], tmp_path: Path
) -> None:
    """λ = 1: assoc's ranking of 30 real photos is open_clip's encode_image / encode_text cosine."""
    import assoc

    model = weights[1]
    library = copy_photos(photos, tmp_path / "library")
    assert len(library) == 30
    with torch.no_grad():
        images = model.encode_image(torch.from_numpy(_pixels(library, converted)), normalize=True).numpy()
        texts = model.encode_text(open_clip.get_tokenizer(ARCH)(CAPTIONS), normalize=True).numpy()
    store = assoc.StoreSpec.builtin(tmp_path / "gallery")
    with assoc.Searcher(model=converted, store=store, device="cpu") as searcher:
        assert searcher.index([tmp_path / "library"]).photos == len(library)
        for caption, text in zip(CAPTIONS, texts, strict=True):
            hits = searcher.search(caption, k=len(library), exact=True)
            cosine = dict(zip(map(str, library), images @ text, strict=True))
            scores = {h.path: h.score for h in hits}
            assert sorted(scores) == sorted(cosine)
            assert [scores[path] for path in cosine] == pytest.approx(list(cosine.values()), abs=1e-4)
            # The same order: stores keep the global vectors as float16 (~2e-5 off), so two photos whose
            # cosines are closer than the score tolerance may swap; none further apart does.
            ranked = [cosine[h.path] for h in hits]
            assert all(later <= earlier + 1e-4 for i, earlier in enumerate(ranked) for later in ranked[i + 1 :])
            assert [h.score for h in hits] == sorted(scores.values(), reverse=True)
            # The default search (a first stage, then the exact score) finds the same best ten.
            assert [h.path for h in searcher.search(caption, k=10)] == [h.path for h in hits[:10]]


@pytest.fixture(scope="module")
def library(converted: Path, flickr8k: Path, coco_boxes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("converted-gallery")
    copy_photos(sorted((flickr8k / "images").glob("*.jpg"))[:5], root / "photos")
    copy_photos(sorted((coco_boxes / "images").glob("*.jpg"))[:2], root / "photos")
    return root


def test_index_query_localize_and_qdrant_on_a_converted_bundle(converted: Path, library: Path) -> None:
    pytest.importorskip("qdrant_client")
    model = ("--model", converted, "--device", "cpu")
    builtin = ("--gallery", library / "gallery", *model)
    qdrant = ("--store", "qdrant", "--qdrant-path", library / "qdrant", "--collection", "clip", *model)
    for store in (builtin, qdrant):
        assert ok_json("index", library / "photos", *store)["added"] == 7
    photos = sorted((library / "photos").iterdir())

    hits = ok_json("query", "a dog runs on the grass", "-k", "7", *builtin)
    scores = [h["score"] for h in hits]
    assert len(hits) == 7 and all(np.isfinite(scores)) and scores == sorted(scores, reverse=True)
    in_qdrant = ok_json("query", "a dog runs on the grass", "-k", "7", *qdrant)
    assert [h["path"] for h in in_qdrant] == [h["path"] for h in hits]
    assert [h["score"] for h in in_qdrant] == pytest.approx(scores, abs=1e-4)
    itself = ok_json("query", photos[-1], "-k", "1", *builtin)[0]
    assert itself["path"] == str(photos[-1]) and itself["score"] == pytest.approx(SELF_SCORE, abs=2e-3)

    width, height = load_image(photos[-1]).width, load_image(photos[-1]).height
    where = ok_json("localize", photos[-1], "a person on a horse", *builtin)
    assert where["grid"] == [7, 7] and (where["width"], where["height"]) == (width, height)
    assert [w["word"] for w in where["words"]] == ["a", "person", "on", "a", "horse"]
    for point in [where["peak"], *(w["peak"] for w in where["words"])]:
        assert 0 <= point[0] < width and 0 <= point[1] < height
    assert all(np.isfinite(w["score"]) for w in where["words"])
    assert ok_json("localize", photos[-1], "a person on a horse", *qdrant) == where

    box = [0, 0, width // 2, height // 2]
    named = ok_json("localize", photos[-1], "a person on a horse", "--box", ",".join(map(str, box)), *builtin)
    assert (named["grid"], named["source"]) == ([7, 7], "phrase")
    left, top, across, down = named["region"]  # the grid cells whose centres lie in the box, in pixels
    assert min(left, top) >= 0 and left + across <= width and top + down <= height and across * down > 0
    assert [w["word"] for w in named["words"]] in (["person", "horse"], ["horse", "person"])
    region_scores = [w["score"] for w in named["words"]]
    assert all(np.isfinite(region_scores)) and region_scores == sorted(region_scores, reverse=True)
    explained = ok("query", "a dog", "-k", "1", "--explain", *builtin).stdout
    assert "dog" in explained


def test_serve_answers_on_a_converted_bundle(converted: Path, library: Path, tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    from web_support import Server, get_json

    gallery = library / "served"
    ok_json("index", library / "photos", "--gallery", gallery, "--model", converted, "--device", "cpu")
    server = Server("--gallery", gallery, "--model", converted, "--device", "cpu", cache=tmp_path / "cache")
    try:
        hits = get_json(f"{server.base}/api/search?q=a+dog&k=3")
        assert len(hits) == 3 and all(np.isfinite(h["score"]) for h in hits)
        where = get_json(f"{server.base}/api/localize?id={hits[0]['id']}&q=a+dog")
        assert where["grid"] == [7, 7] and [w["word"] for w in where["words"]] == ["a", "dog"]
    finally:
        server.stop()


def test_bad_input_is_one_line_and_exit_2(
    weights: tuple[Path, Any], tmp_path: Path, flickr8k: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = weights[0]
    out = ("--out", tmp_path / "out")
    assert_one_line_error(
        assoc("export", "--from", "open-clip", "ViT-Q-99", "--pretrained", path, *out), "unknown OpenCLIP architecture"
    )
    assert_one_line_error(
        assoc("export", "--from", "open-clip", ARCH, "--pretrained", tmp_path / "missing.pt", *out),
        "no such file, and not a tag of ViT-B-32",
    )
    assert_one_line_error(
        assoc("export", "--from", "open-clip", "ViT-B-16", "--pretrained", path, *out),
        "is not a ViT-B-16 checkpoint",
        "size mismatch",
    )
    photo = sorted((flickr8k / "images").glob("*.jpg"))[0]
    assert_one_line_error(
        assoc("export", "--from", "open-clip", ARCH, "--pretrained", photo, *out), "cannot be read as an open_clip"
    )
    # SigLIP builds offline, but its tokenizer is on the Hugging Face hub: refused before anything is built.
    assert_one_line_error(
        assoc("export", "--from", "open-clip", "ViT-B-16-SigLIP", "--pretrained", "webli", *out), "Hugging Face hub"
    )
    assert_one_line_error(assoc("export", "--from", "open-clip", ARCH, *out), "needs --pretrained")
    assert_one_line_error(
        assoc("export", "--from", "open-clip", ARCH, "--pretrained", path, "--image-size", "300", *out),
        "multiple of its 32-pixel patches",
    )
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert_one_line_error(
        assoc("export", "--from", "open-clip", ARCH, "--pretrained", path, "--out", tmp_path / "full"), "not an empty"
    )
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert_one_line_error(assoc("export", path, tmp_path / "o", "--dense", "plain"), "go with --from open-clip")
    # A known tag whose weights are not in this machine's caches: refused, nothing downloaded.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    assert_one_line_error(
        assoc("export", "--from", "open-clip", ARCH, "--pretrained", "laion2b_s34b_b79k", *out),
        "not in the local cache",
        "never downloads",
    )
    assert not (tmp_path / "out").exists()
    # As a real process too: no traceback from imports or shutdown.
    assert_one_line_error(
        run_process("export", "--from", "open-clip", "ViT-Q-99", "--pretrained", path, *out),
        "unknown OpenCLIP architecture",
    )


def test_a_cached_tag_is_found_without_the_network(
    weights: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag resolves to the file open_clip left in the Hugging Face cache (laid out as the hub library
    lays it out), with the tag's preprocessing; the model built from it is that checkpoint."""
    from huggingface_hub import constants

    from assoc.export.clip.source import load_open_clip

    repo = tmp_path / "hub" / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    os.symlink(weights[0], repo / "snapshots" / "0123abcd" / "open_clip_pytorch_model.bin")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    source = load_open_clip(ARCH, "laion2b_s34b_b79k")
    assert source.checkpoint == repo / "snapshots" / "0123abcd" / "open_clip_pytorch_model.bin"
    assert (source.image_size, source.grid, source.context_length) == (224, (7, 7), 77)
    assert source.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN) and not source.quick_gelu
    expected = weights[1].state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in source.model.state_dict().items())
