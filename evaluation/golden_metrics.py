"""What the golden-set evaluation measures, with the field's implementations, so the figures
compare with the style-transfer papers (StyleID reports ArtFID, FID, LPIPS and CFSD):

- per stylized image, against its inputs: LPIPS to the content (torchmetrics, AlexNet as in
  ArtFID and StyleID), CFSD to the content (`evaluation.cfsd`), and the neural-style-transfer
  losses (VGG19 relu4_1 content MSE, Gram style distance);
- student against teacher: PSNR, SSIM and LPIPS (torchmetrics);
- over the whole set: FID of the stylized images to the style images (torchmetrics, with
  pytorch-fid's Inception: the TensorFlow FID weights that FID papers and ArtFID's code use)
  and ArtFID = (1 + LPIPS) * (1 + FID), only when the set is large enough for FID to mean
  something.

Every network's weights come from `student.pretrained` (a file, the torch hub cache, or a
download unless offline): torchmetrics' own constructors would download them instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3
from torch import Tensor, nn
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
from torchvision.models import AlexNet_Weights, alexnet

from evaluation.cfsd import cfsd
from student.inference import imagenet_normalize
from student.losses import (
    RELU3_1,
    RELU4_1,
    gram_distance,
    gram_matrix,
    relus,
    vgg19_features,
    vgg_slices,
)
from student.pretrained import (
    RANDOM,
    VGG19,
    Network,
    download,
    load_instrument,
    read_state,
)

ALEXNET = Network("AlexNet", "--lpips-weights", AlexNet_Weights.IMAGENET1K_V1.url, "features.")
INCEPTION = Network("Inception", "--inception-weights", FID_WEIGHTS_URL, "")
# StyleID's protocol: 20 contents x 40 styles. FID's 2048-d covariances from a few dozen
# images are mostly noise, and FID's bias grows as the set shrinks.
FID_MIN_PAIRS = 800
# pairs whose images wait for the Inception: few, so what is held never nears a golden set's
# size (tests/test_evaluate_memory.py compares 4 and 20 pairs)
FID_BATCH = 4
SSIM_WINDOW = 11  # torchmetrics' Gaussian window for its default sigma 1.5


def load_lpips(
    choice: str | None, options: Mapping[str, Any] | None
) -> tuple[LearnedPerceptualImagePatchSimilarity, str]:
    """torchmetrics' LPIPS metric (AlexNet, inputs in [0, 1]) and where its backbone weights
    came from.

    The metric's constructor takes no weights: it builds torchvision's ImageNet AlexNet, which
    torch hub reads from its cache folder, downloading when absent. So the project's weights
    (a file, the cache, a download or seeded random: `load_instrument`) are put there first,
    as the only file of a temporary hub folder; LPIPS's own linear layers ship with
    torchmetrics. Its classifier, which LPIPS never runs, is saved as one broadcast zero per
    tensor rather than 58M random numbers.
    """
    with torch.device("meta"):
        shapes = alexnet().state_dict()  # names and shapes only
    features = alexnet_features()
    source = load_instrument(ALEXNET, choice, options, features)
    state = {f"features.{key}": value for key, value in features.state_dict().items()}
    for key, value in shapes.items():
        state.setdefault(key, torch.zeros(()).expand(value.shape))
    with hub_folder_holding(ALEXNET, state):
        metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    return metric, source


def alexnet_features() -> nn.Sequential:
    """torchvision's AlexNet `features` (the part LPIPS runs), without its classifier."""
    with torch.device("meta"):
        features = alexnet().features
    return features.to_empty(device="cpu")


@contextmanager
def hub_folder_holding(network: Network, state: Mapping[str, Tensor]) -> Iterator[None]:
    """torch hub's folder, while inside, is a temporary one holding `state` as `network`'s
    cached download, so a library that reads the network only through torch hub (torchmetrics'
    LPIPS, pytorch-fid's Inception) loads it without a download; torch hub's folder is
    restored afterwards."""
    # None unless set_dir was called: restoring it (not get_dir()'s value) keeps TORCH_HOME live
    previous = torch.hub._hub_dir
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "checkpoints").mkdir()
        torch.save(dict(state), Path(folder) / "checkpoints" / network.cache_file.name)
        torch.hub.set_dir(folder)
        try:
            yield
        finally:
            torch.hub._hub_dir = previous


@dataclass(frozen=True)
class PairInputs:
    """A golden pair's content and style as `ImageMeter.against_inputs` needs them: computed
    once per pair (`ImageMeter.inputs`), so the teacher's, the student's and LSAST's images of
    the pair do not each run VGG19 over the content and the style again."""

    content: Tensor  # [3, H, W] in [0, 1], for LPIPS
    content_relus: list[Tensor]  # VGG19 relu1_1..relu4_1 of the content
    style_grams: list[Tensor]  # the Gram matrices of the style's relu1_1..relu4_1


class ImageMeter(nn.Module):
    """The frozen networks that score one stylized image: VGG19 and LPIPS's AlexNet."""

    def __init__(
        self,
        vgg_weights: str | None,
        lpips_weights: str | None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        features = vgg19_features()
        self.sources = {VGG19.name: load_instrument(VGG19, vgg_weights, options, features)}
        self.slices = vgg_slices(features.eval().requires_grad_(False))
        self.lpips, self.sources[f"{ALEXNET.name} (LPIPS)"] = load_lpips(lpips_weights, options)

    def activations(self, image: Tensor) -> list[Tensor]:
        """VGG19 relu1_1..relu4_1 of a [3, H, W] image in [0, 1]: the one pass that CFSD, the
        content loss and the Gram distance all read."""
        return list(relus(self.slices, imagenet_normalize(image)[None]))

    @torch.no_grad()
    def lpips_distance(self, a: Tensor, b: Tensor) -> float:
        """LPIPS between [3, H, W] images in [0, 1]."""
        self.lpips.update(a[None], b[None])
        distance = float(self.lpips.compute())
        self.lpips.reset()  # the metric keeps every score it is given: one pair at a time
        return distance

    @torch.no_grad()
    def inputs(self, content: Tensor, style: Tensor) -> PairInputs:
        """What a pair's [3, H, W] content and style images in [0, 1] give every image
        stylized from them."""
        grams = [gram_matrix(f) for f in self.activations(style)]
        return PairInputs(content, self.activations(content), grams)

    @torch.no_grad()
    def against_inputs(self, image: Tensor, inputs: PairInputs) -> dict[str, float]:
        """How a stylized [3, H, W] image in [0, 1] keeps its content and takes its style.
        `content_loss`: MSE of VGG19 relu4_1 features; `style_loss`: Gram distance over
        relu1_1..relu4_1 (the losses of neural style transfer, as `student.losses` has them)."""
        x, c = self.activations(image), inputs.content_relus
        return {
            "lpips_content": self.lpips_distance(image, inputs.content),
            "cfsd": cfsd(x[RELU3_1], c[RELU3_1]),
            "content_loss": float(F.mse_loss(x[RELU4_1], c[RELU4_1])),
            "style_loss": float(gram_distance(x, inputs.style_grams)),
        }

    def against_teacher(self, student: Tensor, teacher: Tensor) -> dict[str, float]:
        """How closely the student reproduces the teacher's image."""
        s, t = student[None], teacher[None]
        return {
            "psnr": float(peak_signal_noise_ratio(s, t, data_range=1.0)),
            "ssim": ssim(s, t),
            "lpips": self.lpips_distance(student, teacher),
        }


def ssim(a: Tensor, b: Tensor) -> float:
    """SSIM of [N, 3, H, W] images in [0, 1] as Wang et al. 2004 and scikit-image define it:
    the mean over windows that lie inside the image. torchmetrics averages its map over the
    whole image, reflect-padded at the borders, which at golden-set sizes (64-128 px) moves
    the score by a few hundredths; its map is cropped here to the inner windows instead."""
    _, full = structural_similarity_index_measure(a, b, data_range=1.0, return_full_image=True)
    border = SSIM_WINDOW // 2
    return float(full[..., border:-border, border:-border].mean())


class FidFeatures(nn.Module):
    """pytorch-fid's Inception as a torchmetrics FID feature extractor: [N, 3, H, W] in [0, 1]
    (resized to 299 inside) -> [N, 2048] pool features."""

    num_features = 2048  # torchmetrics reads it instead of running a dummy image

    def __init__(self, inception: InceptionV3) -> None:
        super().__init__()
        self.inception = inception.eval()

    def forward(self, images: Tensor) -> Tensor:
        return self.inception(images)[0].flatten(1)


def load_fid_inception(choice: str | None, options: Mapping[str, Any] | None) -> FidFeatures:
    """pytorch-fid's Inception with `choice` (any URL, checked as a state dict), else the hub
    cache, else a download unless offline. pytorch-fid reads its weights only through torch
    hub, so an explicit file is handed to it as the only file of a temporary hub folder."""
    if not choice:
        if not INCEPTION.cache_file.is_file():
            download(INCEPTION)  # into the hub cache, where pytorch-fid finds it
        return FidFeatures(InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]))
    state = read_state(INCEPTION, choice, options)
    with hub_folder_holding(INCEPTION, state):
        return FidFeatures(InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]))


class SetMeter:
    """FID and ArtFID over the golden set, or the reason they are left out. Fed a pair at a
    time (`update`), in batches of `FID_BATCH`, so the set is never held in memory: one FID
    per side (teacher, student, ...) keeps only its running feature sums (2048-d). Each side
    runs the Inception over the style images again: the price of not keeping them."""

    def __init__(
        self,
        pairs: int,
        inception_weights: str | None,
        options: Mapping[str, Any] | None = None,
        minimum: int = FID_MIN_PAIRS,
        features: nn.Module | None = None,
    ) -> None:
        """Built before any scoring, so missing Inception weights fail fast. `features`: the
        feature extractor to use instead of the Inception ([N, 3, H, W] in [0, 1] -> [N, D])."""
        self.features: nn.Module | None = None
        self.fid: dict[str, FrechetInceptionDistance] = {}
        self.pending: list[tuple[Tensor, Mapping[str, Tensor]]] = []
        self.source = "not used"
        if pairs < minimum:
            self.note = f"needs >= {minimum} golden pairs, golden set has {pairs}"
        elif inception_weights == RANDOM:
            self.note = f"{INCEPTION.flag} {RANDOM}: the FID of a random Inception means nothing"
        else:
            if features is None:
                features = load_fid_inception(inception_weights, options)
                self.source = inception_weights or str(INCEPTION.cache_file)
            self.features = features
            self.note = (
                "FID of the stylized images to the style images (pytorch-fid's Inception, "
                "2048 features); ArtFID = (1 + mean LPIPS to the content) * (1 + FID)"
            )

    def update(self, style: Tensor, stylized: Mapping[str, Tensor]) -> None:
        """One pair: its style image and its stylized images by side, [3, H, W] in [0, 1]
        (StyleID's protocol: the stylized images against their pairs' style images)."""
        if self.features is None:
            return
        self.pending.append((style, dict(stylized)))
        if len(self.pending) == FID_BATCH:
            self.flush()

    def flush(self) -> None:
        """Feed the pending pairs to each side's FID."""
        if not self.pending:
            return
        styles = torch.stack([style for style, _ in self.pending])
        for side in self.pending[0][1]:
            if side not in self.fid:
                self.fid[side] = FrechetInceptionDistance(feature=self.features, normalize=True).to(
                    styles.device
                )
            self.fid[side].update(styles, real=True)
            fakes = torch.stack([images[side] for _, images in self.pending])
            self.fid[side].update(fakes, real=False)
        self.pending.clear()

    def scores(self, lpips_content: Mapping[str, float]) -> dict[str, Any]:
        """FID and ArtFID of each side fed, with `lpips_content`: each side's mean LPIPS to
        the content."""
        if self.features is None:
            return {"fid": None, "art_fid": None, "fid_note": self.note}
        self.flush()
        fid = {side: float(metric.compute()) for side, metric in self.fid.items()}
        art_fid = {side: (1 + lpips_content[side]) * (1 + fid[side]) for side in fid}
        return {"fid": fid, "art_fid": art_fid, "fid_note": self.note}
