"""Contents stylized together in one model call (what the server does with requests that arrive
together) give what each gives alone, for both students."""

from __future__ import annotations

import pytest
import torch

from student.inference import encode_style, for_inference, style_shape, stylize, stylize_batch
from student.microast import MicroASTConfig, build_microast
from student.model import STTRConfig, build_sttr


def students() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    sttr = STTRConfig(enc_layers=1, dec_layers=1, dim_feedforward=64, dropout=0.0)
    return {
        "sttr": build_sttr(sttr, init="scratch"),
        "microast": build_microast(MicroASTConfig(), init="authors"),
    }


@pytest.mark.parametrize("arch", ["sttr", "microast"])
def test_a_batch_gives_what_each_content_gives_alone(arch):
    model = for_inference(students()[arch])
    generator = torch.Generator().manual_seed(1)
    contents = [torch.rand(3, 40, 56, generator=generator) for _ in range(3)]
    styles = [encode_style(model, torch.rand(3, 64, 64, generator=generator)) for _ in range(2)]
    chosen = [styles[0], styles[1], styles[0]]  # two requests of one style, one of another
    assert len({style_shape(s) for s in chosen}) == 1
    together = stylize_batch(model, contents, chosen)
    alone = [stylize(model, c, s) for c, s in zip(contents, chosen, strict=True)]
    for got, want in zip(together, alone, strict=True):
        assert got.shape == want.shape == (3, 40, 56)
        torch.testing.assert_close(got, want, atol=5e-5, rtol=0)  # float32 noise, as test_microast
    assert (together[0] - together[1]).abs().max() > 1e-3  # each keeps its own content and style
