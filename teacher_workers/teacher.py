"""The Teacher interface: all that the tile runner, the generation service, the jobs and the
evaluation ask of a teacher, so that none of them asks which teacher it is.

Like a diffusers attention processor (one signature, many implementations), each teacher is a
folder under `teacher_workers/` whose `teacher.py` implements `Teacher` for its own settings in
`TeacherOptions`, and one line in `teacher_workers.registry`. A style is what the teacher's
engine takes per pair: a style image (StyleID, a trained student) or a learned style (LSAST),
read from the bytes of the URL a pair names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import torch

    from teacher_workers.options import TeacherOptions

Progress = Callable[[int], None]  # called with the number of UNet passes just finished
StyleInput = Literal["image", "learned"]  # a style image per pair, or a learned style's file


class Engine(Protocol):
    """A loaded teacher: stylizes chosen pairs of a tile, each input prepared once."""

    def stylize_pairs(
        self,
        contents: torch.Tensor,
        styles: Sequence[Any],
        pairs: Sequence[tuple[int, int]],
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """(content index, style index) pairs of contents [Nc, 3, R, R] in [0, 1] and the
        teacher's styles -> [P, 3, R, R] in [0, 1], in the order given."""
        ...

    def pair_passes(self, n_contents: int, n_styles: int, n_pairs: int) -> int:
        """UNet passes `stylize_pairs` makes for so many pairs, for progress totals."""
        ...


class Teacher(Protocol):
    """One teacher: how it reads its inputs, names its targets and builds its engine."""

    name: str  # its --teacher value and the `teacher` of its manifest lines
    title: str  # its name in reports and progress bars
    style_input: StyleInput

    def check(self, options: TeacherOptions) -> None:
        """Refuse its own settings that cannot run (`UserError`), before any work."""

    def chosen(self, options: TeacherOptions) -> TeacherOptions:
        """`options` with the shared flags (steps, resolution, seed, batch size) in its config."""
        ...

    def resolution(self, options: TeacherOptions) -> int:
        """The square side its inputs and targets have."""
        ...

    def pinned(self, options: TeacherOptions) -> TeacherOptions:
        """`options` with its own weights beyond the model pinned (the model is pinned already)."""
        ...

    def hash(self, options: TeacherOptions, model: str, revision: str | None, dtype: str) -> str:
        """The hash of all that decides its targets, for the model as pinned and the dtype."""
        ...

    def build(self, options: TeacherOptions, device: torch.device, dtype: torch.dtype) -> Engine:
        """Load the model on `device` and wrap it in its engine."""
        ...

    def style_urls(
        self,
        options: TeacherOptions,
        arguments: Sequence[str],
        storage: Mapping[str, Any],
        role: str,
    ) -> list[str]:
        """The style URLs that the style arguments name, each checked to read and to suit the
        model `options` name."""
        ...

    def style_url(self, options: TeacherOptions, argument: str, storage: Mapping[str, Any]) -> str:
        """The one style URL a single-style argument names, checked as `style_urls` checks."""
        ...

    def read_style(self, data: bytes, url: str, resolution: int) -> Any:
        """A style's bytes as the engine takes them (a bad one raises an `ImageError`)."""
        ...

    def tile(self, options: TeacherOptions, gpu_memory_gb: float) -> tuple[int, int]:
        """Contents x styles per work unit on a GPU of `gpu_memory_gb`."""
        ...

    def describe(self, options: TeacherOptions) -> dict[str, Any]:
        """What run.json records of it for reports: `teacher_label` (the contact sheet's
        teacher column) and, where the model flags do not tell, `teacher_model` and
        `teacher_parameters`."""
        ...


class ImageStyles:
    """How a teacher that takes a style *image* per pair (StyleID, a trained student) names,
    checks and reads its styles: the `Teacher` methods they share."""

    style_input: StyleInput = "image"

    def style_urls(
        self,
        options: TeacherOptions,
        arguments: Sequence[str],
        storage: Mapping[str, Any],
        role: str,
    ) -> list[str]:
        from common.inputs import expand_images

        return expand_images(arguments, storage, role)

    def style_url(self, options: TeacherOptions, argument: str, storage: Mapping[str, Any]) -> str:
        return argument

    def read_style(self, data: bytes, url: str, resolution: int) -> torch.Tensor:
        """[3, R, R] in [0, 1], centre-cropped as the contents are."""
        from common.images import load_square

        return load_square(data, resolution, url)
