#!/usr/bin/env bash
# Reproduce the shipped default model: train on Flickr8k (train split; dev for model selection), export
# it, give it the shipped ranking (IDF token weights of the train captions, λ = 0.4), measure the int8
# text encoder's recall against fp32 on dev, and write the bundle to OUT.
# Needs the training extras (bash scripts/test.sh sets them up) and ../shared/data/flickr8k.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/default-bundle}
assoc=.venv/bin/assoc
data=../shared/data/flickr8k
"$assoc" train --config configs/default-model.toml
rm -rf "$out.fp32" "$out"
"$assoc" export runs/default-model/best.pt "$out.fp32" --name assoc-flickr8k-lite0-minilm
"$assoc" export runs/default-model/best.pt "$out" --name assoc-flickr8k-lite0-minilm --quantize
for bundle in "$out.fp32" "$out"; do
    "$assoc" ranking "$bundle" --data "$data" --global-weight 0.4
done
"$assoc" eval --data "$data" --split dev --model "$out.fp32" --json > "$out.fp32.dev.json"
"$assoc" eval --data "$data" --split dev --model "$out" --json > "$out.dev.json"
"$assoc" pointing ../shared/data/coco-boxes --model "$out" --json > "$out.pointing.json"
cat "$out.fp32.dev.json" "$out.dev.json" "$out.pointing.json"
