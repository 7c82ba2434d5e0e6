#!/usr/bin/env bash
# The README's medical examples, end to end on the bundled data (CPU): train each model with
# `segshield train`, then audit it with `segshield audit` through the default CPU engine set.
# Usage: bash scripts/medical_examples.sh [OUT]   (needs the [medical,monai] extras)
set -euo pipefail
OUT=${1:-medical-examples}
SS=${SEGSHIELD:-segshield}
ATTACK=(--attacks fgsm,pgd --epsilons 2/255,8/255 --steps 5 --no-bench)
mkdir -p "$OUT"

# (a) a MONAI 2-D U-Net on slices of the bundled lesion volumes (NIfTI), split by patient
$SS train --model segshield.models.zoo:monai_unet --dataset volumes --size 64 --loss dice \
    --epochs 12 --patience 6 --out "$OUT/models" --name unet2d --allow-degenerate
$SS audit --model segshield.models.zoo:monai_unet --weights "$OUT/models/unet2d.safetensors" \
    --dataset volumes --size 64 "${ATTACK[@]}" --out "$OUT/a-unet2d-slices"

# (b) a 3-D MONAI UNet on 32x64x64 patches around the lesions of the same volumes
$SS train --model segshield.models.zoo:monai_unet3d --dataset volumes --volume-mode patches \
    --loss dice --epochs 40 --patience 15 --out "$OUT/models" --name unet3d --allow-degenerate
$SS audit --model segshield.models.zoo:monai_unet3d --weights "$OUT/models/unet3d.safetensors" \
    --dataset volumes --volume-mode patches "${ATTACK[@]}" --out "$OUT/b-unet3d-volumes"

# (c) a multi-label model: two sigmoid channels from the label map (lesion, and everything
# that is not lesion: the bundled volumes have one lesion label)
$SS train --model segshield.models.zoo:monai_unet --model-kwargs '{"out_channels": 2}' \
    --dataset volumes --size 64 --label-groups 'lesion=1;not-lesion=0' --loss dice \
    --epochs 12 --patience 6 --out "$OUT/models" --name multilabel --allow-degenerate
$SS audit --model segshield.models.zoo:monai_unet --model-kwargs '{"out_channels": 2}' \
    --weights "$OUT/models/multilabel.safetensors" --dataset volumes --size 64 \
    --label-groups 'lesion=1;not-lesion=0' "${ATTACK[@]}" --out "$OUT/c-multilabel"

# (d) U-Net++ and a ResNet-18-encoder U-Net (MONAI FlexibleUNet, no pretrained weights) on
# the bundled nuclei tiles
for model in monai_unetpp monai_flexible_unet; do
    $SS train --model "segshield.models.zoo:$model" --dataset nuclei --loss dice \
        --epochs 10 --patience 5 --out "$OUT/models" --name "$model" --allow-degenerate
    $SS audit --model "segshield.models.zoo:$model" --weights "$OUT/models/$model.safetensors" \
        --dataset nuclei "${ATTACK[@]}" --out "$OUT/d-$model"
done
