"""The student served over HTTP with Ray Serve: a FastAPI app (`serving.app`), its options
(`serving.config`), the bounded cache of encoded styles (`serving.styles`) and a plain web page.

Started by `python -m jobs.serve` (locally or with `ray job submit`), or by `serve deploy` /
a KubeRay RayService through the application builder `serving.app:build_app`.
"""
