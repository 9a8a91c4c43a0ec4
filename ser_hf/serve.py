"""A web demo of a trained model (Gradio): upload or record audio, see the emotion it hears.

Shows the predicted class and its probabilities, the arousal/valence/dominance values, and for a
recording longer than one window the timeline of its windows. Runs a torch checkpoint or an ONNX
export (`ser-hf export`); predictions are `ser_hf.inference.predict`'s, so the page agrees with
``ser-hf predict`` on the same file.

``ser-hf serve MODEL_DIR [--host 127.0.0.1] [--port 7860]`` starts it. The same file is a Hugging
Face Space's ``app.py``: copy it there with the model folder (``model/`` or ``$SER_HF_MODEL``) and a
``requirements.txt`` holding ``ser-hf[serve]``; run as a script it serves that folder.
"""
from __future__ import annotations

import argparse
import os
import tempfile

# System fonts only: the page must not wait on fonts from the internet (offline machines, tests).
_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
_MONO = ["ui-monospace", "monospace"]


class EmotionDemo:
    """The model loaded once, and the function the page calls for each recording."""

    def __init__(self, model_dir: str, *, backend: str = "auto", device: str | None = None):
        from ser_hf.inference import load_model

        self.model_dir = model_dir
        self.backend = backend
        self.model, self.processor = load_model(model_dir, device=device, backend=backend)
        from ser_hf.export.onnx import model_kind

        kind = model_kind(self.model)
        if kind != "speech":
            raise ValueError(f"{model_dir}: the web demo serves speech models (audio in, no transcript); this is a {kind} model")
        self.config = self.model.config
        self.runtime = "onnxruntime" if hasattr(self.model, "session") else "PyTorch"

    def __call__(self, audio_path: str | None):
        """(label, {class: probability}, attribute rows, timeline PNG path or None)."""
        from ser_hf.inference import plot_timeline, predict

        if not audio_path:
            import gradio as gr

            raise gr.Error("No audio: upload a file or record one.")
        # One file per request, in the server's thread: no decoding worker processes forked from it.
        results = predict(self.model, [audio_path], processor=self.processor, progress=False, num_workers=0)
        (row,) = results.files
        label = row.get("label", "")
        probabilities = row.get("probabilities", {})
        attributes = [[name, round(value, 3)] for name, value in row.get("attributes", {}).items()]
        timeline = None
        if row["num_windows"] >= 2:
            timeline = os.path.join(tempfile.mkdtemp(prefix="ser_hf_serve_"), "timeline.png")
            plot_timeline(results.windows, results, timeline, title=os.path.basename(audio_path))
        return label, probabilities or None, attributes, timeline


def build_demo(model_dir: str, *, backend: str = "auto", device: str | None = None):
    """The Gradio Blocks app for ``model_dir`` (not launched)."""
    import gradio as gr

    demo_fn = EmotionDemo(model_dir, backend=backend, device=device)
    config = demo_fn.config
    with gr.Blocks(title="ser-hf: speech emotion recognition", analytics_enabled=False) as demo:
        gr.Markdown(
            f"## Speech emotion recognition\nModel: `{os.path.basename(os.path.abspath(model_dir))}` "
            f"({demo_fn.runtime}). Upload or record audio; "
            "long recordings are classified in overlapping windows and averaged."
        )
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="audio-input")
                button = gr.Button("Predict", variant="primary", elem_id="predict-button")
            with gr.Column():
                label = gr.Textbox(label="Predicted emotion", interactive=False, elem_id="predicted-label", visible=config.has_categorical)
                probabilities = gr.Label(label="Class probabilities", num_top_classes=10, elem_id="probabilities", visible=config.has_categorical)
                attributes = gr.Dataframe(
                    headers=["attribute", "value"], label=f"Attributes (scale {config.attribute_range[0]:g}-{config.attribute_range[1]:g})",
                    elem_id="attributes", visible=config.has_attributes, interactive=False,
                )
        timeline = gr.Image(label="Timeline (windows of a long recording)", type="filepath", elem_id="timeline")
        button.click(demo_fn, inputs=audio, outputs=[label, probabilities, attributes, timeline], api_name="predict")
    return demo


def launch(model_dir: str, *, host: str = "127.0.0.1", port: int | None = None, backend: str = "auto",
           device: str | None = None, block: bool = True):
    """Build and start the app; with ``block=False`` return ``(demo, url)`` while it serves in a thread."""
    import gradio as gr

    demo = build_demo(model_dir, backend=backend, device=device)
    theme = gr.themes.Default(font=_FONTS, font_mono=_MONO)
    _, url, _ = demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, share=False,
                            quiet=not block, theme=theme, ssr_mode=False, footer_links=[])
    return demo, url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser-hf serve",
        description="Start a web demo (Gradio) of a trained speech model: upload or record audio and see the predicted "
        "class probabilities, A/V/D values and, for long recordings, the timeline.",
    )
    parser.add_argument("model", help="Saved ser-hf speech model folder, or its ONNX export (`ser-hf export`).")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0 to serve other machines).")
    parser.add_argument("--port", type=int, default=7860, help="Port (default: 7860).")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto", help="As in `ser-hf predict`.")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (torch backend).")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        import sys

        print("ser-hf serve: needs gradio (pip install 'ser-hf[serve]')", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    launch(args.model, host=args.host, port=args.port, backend=args.backend, device=args.device)
    return 0


if __name__ == "__main__":  # a Space's app.py: serve $SER_HF_MODEL (default ./model) on Gradio's defaults
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    launch(os.environ.get("SER_HF_MODEL", "model"), host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
           port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
