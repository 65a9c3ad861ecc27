"""A tiny learnable segmentation dataset for trainer tests (no files, deterministic)."""

import torch
from torch.utils.data import Dataset

from ocrformer.engine import TrainConfig


class ToySegmentation(Dataset):
    """Images of coloured rectangles; the label is the rectangle's colour class (0 = background), with a
    random horizontal flip drawn from torch's global RNG, as real augmentations do."""

    classes = ["background", "red", "green"]
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    num_classes = 3

    def __init__(self, num_images: int = 12, size: tuple[int, int] = (32, 32), seed: int = 0, augment: bool = True):
        self.num_images, self.size, self.seed, self.augment = num_images, size, seed, augment

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 1000 + index)
        height, width = self.size
        label = torch.zeros(height, width, dtype=torch.long)
        image = torch.rand(3, height, width, generator=g) * 0.2
        for cls in (1, 2):
            y, x = torch.randint(0, height // 2, (2,), generator=g).tolist()
            label[y : y + height // 2, x : x + width // 3] = cls
            image[cls - 1, y : y + height // 2, x : x + width // 3] += 0.8
        label[0, 0] = 255  # one void pixel
        if self.augment and torch.rand(()) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return {"image": image, "label": label, "path": f"toy/{index}"}


def toy_config(tmp_dir, **overrides) -> TrainConfig:
    settings = dict(
        model="ocrnet_tiny",
        iterations=6,
        batch_size=2,
        lr=0.01,
        checkpoint_every=3,
        log_every=1,
        output_dir=str(tmp_dir),
        device="cpu",
        seed=3,
    )
    settings.update(overrides)
    return TrainConfig(**settings)
