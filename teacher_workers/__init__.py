"""The teachers behind one interface (`teacher.Teacher`, registered in `registry`), one folder
each: `styleid/` (a style image per pair) and `lsast/` (a learned style per pair, and the loop
that learns one). Beside them what they share: model loading and pinning (`models`,
`model_source`), DDIM helpers (`ddim`), model shapes for sizing (`sizing`), the command-line
options (`options`) and the Ray service that runs any of them over tiles of pairs
(`generation`, `actor`, `tile_runner`, `node_fit`)."""
