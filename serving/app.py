"""The served student: a FastAPI app that Ray Serve runs in every replica.

    POST /stylize   content (file) + style (file) or style_id (a gallery id) [+ format png|jpeg]
                    -> the stylized image, at the content's aspect ratio
    GET  /styles    the gallery: [{"id", "url"}];  GET /styles/{id}: its image
    GET  /health    {"status": "ok", ...};  GET /: the web page;  GET /docs: the OpenAPI page

Bad input never reaches the model: an upload over the size limit is 413, an unreadable or
too-large image 400, an unknown style id 404, a missing field 422, each with one line in
`{"error": ...}`; the replica keeps serving. Past `max_queued_requests` Serve itself answers
503 at once. Requests arriving together share one model call (`@serve.batch`).
"""

# No `from __future__ import annotations` here: FastAPI reads each route's annotations to know
# where a parameter comes from, and behind Serve's ingress it cannot resolve them from strings
# (an uploaded file would be looked for in the query string).

import asyncio
import io
import mimetypes
import threading
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import tyro
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from ray.serve.deployment import Application

from common.errors import UserError, first_line
from common.images import load_scaled, to_pil
from common.storage import StorageOptions
from serving.config import ServeConfig
from serving.styles import GalleryStyle, StyleCache, read_gallery
from student.checkpoint import open_student
from student.inference import (
    encode_style,
    for_inference,
    resolve_for,
    style_shape,
    stylize_batch,
)

PAGE = (Path(__file__).with_name("page.html")).read_text()
# the answer's formats and PIL's options for each. PNG with zlib's run-length strategy after
# PNG's row filters: a stylized 256 px answer (12 samples) encodes in 3.9 ms on one core of a
# 2-core AMD EPYC, against 14.8 ms at PIL's default (level 6) and 4.6 ms at level 1, and its
# file is as small as level 6's (88.5 kB; level 1: 100 kB); still lossless
ENCODER_OPTIONS = {
    "png": {"compress_level": 1, "compress_type": zlib.Z_RLE},
    "jpeg": {"quality": 92},
}
FORMATS = tuple(ENCODER_OPTIONS)

api = FastAPI(
    title="Style transfer student",
    description="A distilled style-transfer student: upload a photo and a style (or pick one).",
)


class Refused(Exception):
    """A request the service answers with `status` and one line, e.g. an unknown style id."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def refusal(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@api.exception_handler(Refused)
async def _refused(_: Request, exc: Refused) -> JSONResponse:
    return refusal(exc.status, str(exc))


@api.exception_handler(UserError)
async def _bad_input(_: Request, exc: UserError) -> JSONResponse:
    return refusal(400, first_line(exc))


@api.exception_handler(RequestValidationError)
async def _malformed(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's list of problems -> its first one as one line, e.g. "content: Field required"."""
    problem = exc.errors()[0]
    field = ".".join(str(part) for part in problem["loc"] if part not in ("body", "query"))
    return refusal(422, f"{field}: {problem['msg']}" if field else problem["msg"])


def image_bytes(image: torch.Tensor, fmt: str) -> bytes:
    """[3, H, W] in [0, 1] -> the bytes of a PNG or JPEG file."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format=fmt.upper(), **ENCODER_OPTIONS[fmt])
    return buffer.getvalue()


def pick_device(config: ServeConfig) -> torch.device:
    """The replica's device: cuda when asked, or with "auto" when the replica holds a GPU."""
    wants_gpu = config.device == "cuda" or (config.device == "auto" and config.gpus_per_replica)
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


@serve.deployment
@serve.ingress(api)
class StudentServer:
    """One replica: the student, the gallery, and the encodings of the styles it saw last."""

    def __init__(self, config: ServeConfig, storage: StorageOptions) -> None:
        torch.set_num_threads(max(1, round(config.cpus_per_replica)))
        self.config = config
        device = pick_device(config)
        self.model = for_inference(open_student(config.student, storage, device))
        self.precision = resolve_for(self.model, config.precision)
        self.gallery = read_gallery(config.gallery, storage)
        self.styles: StyleCache[Any] = StyleCache(config.style_cache)
        self.model_lock = threading.Lock()  # one model call at a time: they share the cores
        self.model_calls = self.images = 0  # how well requests share calls (GET /health)
        self.run_batch.set_max_batch_size(config.batch_size)
        self.run_batch.set_batch_wait_timeout_s(config.batch_wait_s)

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(self) -> str:
        return PAGE

    @api.get("/health")
    async def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "replica": serve.get_replica_context().replica_id.to_full_id_str(),  # its actor
            "student": self.config.student,
            "gallery": len(self.gallery),
            "styles_encoded": self.styles.encoded,  # cache misses since the replica started
            "model_calls": self.model_calls,
            "images": self.images,
        }

    @api.get("/styles")
    async def styles(self) -> list[dict[str, str]]:
        return [{"id": style_id, "url": f"styles/{style_id}"} for style_id in self.gallery]

    @api.get("/styles/{style_id}")
    async def style_image(self, style_id: str) -> Response:
        style = self.gallery_style(style_id)
        media = mimetypes.guess_type(style.url)[0] or "application/octet-stream"
        return Response(style.data, media_type=media)

    @api.post("/stylize", response_class=Response)
    async def stylize(
        self,
        content: Annotated[UploadFile, File(description="the photo to re-render")],
        style: Annotated[UploadFile | None, File(description="a style image")] = None,
        style_id: Annotated[str | None, Form(description="or a gallery style's id")] = None,
        format: Annotated[Literal[FORMATS], Form()] = "png",  # type: ignore[valid-type]
    ) -> Response:
        """The content re-rendered in the style, at the content's aspect ratio (its longer side
        at most `max_side`); the header X-Stylize-Seconds says how long the service took."""
        start = time.perf_counter()
        if (style is None) == (style_id is None):
            raise Refused(422, "send exactly one of style (a file) and style_id")
        style_data = self.gallery_style(style_id).data if style_id else await self.read(style)
        photo = self.decode(await self.read(content), "content")
        encoded = await asyncio.to_thread(self.styles.get, style_data, self.encode)
        result = await self.run_batch((photo, encoded))
        body = await asyncio.to_thread(image_bytes, result, format)
        seconds = f"{time.perf_counter() - start:.3f}"
        return Response(body, media_type=f"image/{format}", headers={"X-Stylize-Seconds": seconds})

    def gallery_style(self, style_id: str) -> GalleryStyle:
        if style_id not in self.gallery:
            raise Refused(404, f"no style {style_id!r} in the gallery (GET /styles lists them)")
        return self.gallery[style_id]

    async def read(self, upload: UploadFile) -> bytes:
        """An upload's bytes; one over the size limit is refused after reading one byte more."""
        limit = self.config.max_upload_bytes
        data = await upload.read(limit + 1)
        if len(data) > limit:
            name = upload.filename or "upload"
            raise Refused(413, f"{name}: larger than {self.config.max_upload_mb:g} MiB")
        return data

    def decode(self, data: bytes, name: str) -> torch.Tensor:
        """[3, H, W] in [0, 1], longer side at most `max_side`; a bad image is a `UserError`."""
        return load_scaled(data, self.config.max_side, name, self.config.max_pixels)

    def encode(self, data: bytes) -> Any:
        """A style file's bytes -> the student's encoding of it (a cache miss)."""
        style = self.decode(data, "style")
        with self.model_lock:
            return encode_style(self.model, style, self.precision)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def run_batch(self, items: list[tuple[torch.Tensor, Any]]) -> list[torch.Tensor]:
        """Stylize the (content, encoded style) pairs of requests that arrived together."""
        return await asyncio.to_thread(self.compute, items)

    def compute(self, items: list[tuple[torch.Tensor, Any]]) -> list[torch.Tensor]:
        """One model call per group of contents of one size with styles of one shape (a
        MicroAST style always has one; an STTR style's tokens follow its image's size)."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, (content, style) in enumerate(items):
            groups[(tuple(content.shape), style_shape(style))].append(i)
        results: dict[int, torch.Tensor] = {}
        with self.model_lock:
            for members in groups.values():
                contents, styles = zip(*(items[i] for i in members), strict=True)
                outs = stylize_batch(self.model, list(contents), list(styles), self.precision)
                results.update(zip(members, outs, strict=True))
                self.model_calls, self.images = self.model_calls + 1, self.images + len(members)
        return [results[i].cpu() for i in range(len(items))]


def build(config: ServeConfig, storage: StorageOptions) -> Application:
    """The Serve application for `config` (its replicas, limits and batching)."""
    return StudentServer.options(**config.deployment_options()).bind(config, storage)


def config_from_args(args: dict[str, Any]) -> ServeConfig:
    """A `ServeConfig` from a Serve config's `args`: each key a field, each value as its flag
    takes it (`replicas: "1:4"`), checked as `jobs.serve` checks its flags."""
    flags = [
        part for key, value in args.items() for part in (f"--{key.replace('_', '-')}", str(value))
    ]
    return tyro.cli(ServeConfig, args=flags)


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve's application builder, for `serve run serving.app:build_app student=URL` and
    the `args` of a `serve deploy` config or a KubeRay RayService (k8s/rayservice.yaml); storage
    is reached through the standard credential chain."""
    return build(config_from_args(args), StorageOptions())
