"""Training throughput of large speech encoders: audio-seconds/s, samples/s, peak memory and MFU.

Builds WavLM-large, wav2vec2-large (LV-60 layout) and the Whisper-large-v3 encoder from their
configs with random weights (nothing is downloaded), wraps each in `SERModelForSpeech` (attentive
statistics pooling, an 8-class head, CNN front end frozen) and trains on synthetic batches whose
lengths follow MSP-Podcast (lognormal, median 5 s, clipped to 2.75-11 s). For every combination of
``--precisions`` (fp32, bf16 autocast), ``--batching`` (random; grouped = the length-grouped
sampler), ``--checkpointing`` (off/on, non-reentrant) and ``--batch-sizes`` it times ``--steps``
optimizer steps after ``--warmup`` steps and reports

* audio-seconds/s: real (unpadded) audio seconds trained per second; samples/s;
* real-frame fraction of the batches (1 = no padding);
* peak memory (``torch.cuda.max_memory_allocated``; on CPU the process's peak RSS);
* MFU: model FLOPs from the config (transformer layers forward x 3 for training, the frozen CNN
  forward only; ``flops_per_audio_second``) x audio-seconds/s / the device's peak (``--peak-tflops``,
  by default 989 bf16 / 67 fp32 TFLOP/s for H100/H200-class GPUs, none on CPU).

On a lent GPU, one command:

    python benchmarks/gpu_throughput.py

``--compile on`` adds runs through ``torch.compile`` (``--compile-backend``, default inductor; static
shapes) with each batch padded to a multiple of ``--bucket-seconds`` (as ``torch_compile: true``
does in training, `ser_hf.data.shape_buckets`): every bucketed shape the timed steps use is
compiled before timing (reported as ``compile_seconds`` and ``compiled_graphs``), so the timed
steps are the steady state of a long run; the real-frame fraction counts the bucket padding.

``--tiny`` runs the same code on tiny configs on CPU (a test runs it). Results go to
benchmarks/results/gpu_throughput.json (``--tiny``: gpu_throughput_tiny.json), written atomically.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

LABELS = ["A", "S", "H", "U", "F", "D", "C", "N"]
FRAMES_PER_SECOND = 50  # 320x CNN downsampling at 16 kHz; Whisper: 100 mel frames -> 50 positions

_CNN = dict(conv_dim=(512,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2))
LARGE = {
    "wavlm-large": dict(model_type="wavlm", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                        intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True,
                        num_buckets=320, max_bucket_distance=800, layerdrop=0.1, **_CNN),
    "wav2vec2-large": dict(model_type="wav2vec2", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                           intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True,
                           layerdrop=0.1, **_CNN),
    "whisper-large-encoder": dict(model_type="whisper", d_model=1280, encoder_layers=32, encoder_attention_heads=20,
                                  encoder_ffn_dim=5120, decoder_layers=1, decoder_attention_heads=20,
                                  decoder_ffn_dim=5120, num_mel_bins=128, max_source_positions=1500,
                                  vocab_size=51866),
}


def tiny_configs() -> dict[str, dict]:
    from ser_hf.tiny import tiny_speech_backbone

    return {
        "wavlm-large": tiny_speech_backbone("wavlm", hidden_size=32, num_layers=2),
        "wav2vec2-large": tiny_speech_backbone("wav2vec2", hidden_size=32, num_layers=2),
        "whisper-large-encoder": tiny_speech_backbone("whisper", hidden_size=32, num_layers=2),
    }


def flops_per_audio_second(backbone: dict) -> float:
    """Training FLOPs per second of audio at ``seconds_context`` ~ 5 s (the MSP median).

    Transformer layers: forward 2 x (4 d^2 + 2 d f) per frame for the projections and MLP plus
    2 x 2 T d for attention scores and values (T = frames in the utterance), x 3 for forward and
    backward. CNN front end (frozen): forward only, 2 x kernel x c_in x c_out per output position.
    Whisper's two input convolutions are counted like the CNN; its fixed 30 s window is counted as
    padding (the real-frame fraction shows it), not here.
    """
    from transformers import AutoConfig

    config = AutoConfig.for_model(**backbone)
    frames = FRAMES_PER_SECOND
    context = 5.0 * frames
    if config.model_type == "whisper":
        d, f, layers = config.d_model, config.encoder_ffn_dim, config.encoder_layers
        cnn = 2 * (3 * config.num_mel_bins * d * 100 + 3 * d * d * frames)
    else:
        d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
        cnn, rate, c_in = 0.0, 16000.0, 1
        for c_out, stride, kernel in zip(config.conv_dim, config.conv_stride, config.conv_kernel):
            rate /= stride
            cnn += 2 * kernel * c_in * c_out * rate
            c_in = c_out
    per_frame = 2 * (4 * d * d + 2 * d * f) + 2 * 2 * context * d
    return 3 * layers * per_frame * frames + cnn


def msp_lengths(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(5.0), 0.5, n), 2.75, 11.0)


def build_model(backbone: dict, device):
    import torch

    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.modeling import SERModelForSpeech, build_feature_extractor

    config = SERSpeechConfig(backbone_config=dict(backbone), labels=LABELS, task="categorical",
                             pooling="attentive_stats", head_hidden_size=1024, freeze_feature_encoder=True,
                             max_audio_seconds=11.0)
    torch.manual_seed(0)
    model = SERModelForSpeech(config).to(device).train()
    return model, build_feature_extractor(config)


def run_case(model, extractor, lengths, labels, *, batch_size, grouped, precision, checkpointing, steps, warmup,
             device, whisper, compile_backend=None, bucket_seconds=0.5) -> dict:
    import resource

    import torch

    from ser_hf.data.shape_buckets import bucket_length, pad_batch_to_bucket

    from ser_hf.losses import build_loss
    from ser_hf.samplers import build_batch_sampler

    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.activation_checkpointing_disable()
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=fused)
    loss_fn = build_loss("focal", num_classes=len(LABELS))
    sampler = build_batch_sampler("none", labels.tolist(), batch_size, lengths=lengths.tolist(), group_by_length=grouped)
    batches = sampler.epoch_batches(0)[: warmup + steps]
    rng = np.random.default_rng(1)
    waves = {}
    real = padded = 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    multiple = 0 if whisper or not compile_backend else int(bucket_seconds * 16000)
    forward, compile_seconds, graphs = model, 0.0, None
    if compile_backend:
        import torch._dynamo
        from torch._dynamo.utils import counters

        torch._dynamo.reset()
        counters.clear()
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        forward = torch.compile(model, backend=compile_backend, dynamic=False)
        # Compile every bucketed shape the run will meet before timing (a long run compiles each once).
        shapes = sorted({(len(b), bucket_length(int(lengths[b].max() * 16000), multiple) if multiple else 0) for b in batches})
        compile_start = time.perf_counter()
        for size, samples in shapes:
            probe = [(np.zeros(samples or 16000, dtype=np.float32) + 0.01) for _ in range(size)]
            inputs = extractor(probe, sampling_rate=16000, padding="max_length" if whisper else True,
                               return_attention_mask=True, return_tensors="pt")
            inputs = {k: v.to(device) for k, v in inputs.items()}
            with autocast:
                out = forward(**inputs).logits
            loss_fn(out, torch.zeros(size, dtype=torch.long, device=device)).backward()
            model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        compile_seconds = time.perf_counter() - compile_start
        graphs = int(counters["stats"]["unique_graphs"])
    start = None
    timed_seconds = timed_samples = 0.0
    for step, batch in enumerate(batches):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        audio = [waves.setdefault(i, (rng.standard_normal(int(lengths[i] * 16000)) * 0.1).astype(np.float32))
                 for i in batch]
        inputs = extractor(audio, sampling_rate=16000, padding="max_length" if whisper else True,
                           return_attention_mask=True, return_tensors="pt")
        if multiple:
            inputs = pad_batch_to_bucket(dict(inputs), audio_multiple=multiple, text_multiple=0)
        inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
        targets = torch.as_tensor(labels[batch], device=device)
        with autocast:
            logits = forward(**inputs).logits
        loss = loss_fn(logits, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds = float(lengths[batch].sum())
        window = 30.0 if whisper else float(lengths[batch].max())
        if multiple:
            window = bucket_length(int(window * 16000), multiple) / 16000
        real += seconds
        padded += window * len(batch)
        if step >= warmup:
            timed_seconds += seconds
            timed_samples += len(batch)
        for i in batch:
            waves.pop(i, None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    elapsed = time.perf_counter() - start
    del optimizer
    return {"audio_seconds_per_second": timed_seconds / elapsed, "samples_per_second": timed_samples / elapsed,
            "real_frame_fraction": real / padded, "peak_memory_gib": peak, "timed_steps": len(batches) - warmup,
            "final_loss": float(loss.detach().float().cpu()), "seconds": elapsed,
            **({"compile_seconds": compile_seconds, "compiled_graphs": graphs} if compile_backend else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(LARGE), choices=list(LARGE))
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument("--batching", nargs="+", default=["grouped", "random"], choices=["grouped", "random"])
    parser.add_argument("--checkpointing", nargs="+", default=["off", "on"], choices=["off", "on"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"],
                        help="also (on) or only run through torch.compile with length-bucketed batches")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--bucket-seconds", type=float, default=0.5)
    parser.add_argument("--tiny", action="store_true", help="tiny configs on CPU (the test mode)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: by device)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    import torch

    from ser_hf.io import write_json_atomic

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    configs = tiny_configs() if args.tiny else LARGE
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    results = []
    n = max(args.batch_sizes) * (args.steps + args.warmup) * 4
    lengths = msp_lengths(n)
    labels = np.random.default_rng(2).integers(0, len(LABELS), n)
    print(f"device: {name}", flush=True)
    for model_name in args.models:
        backbone = configs[model_name]
        whisper = backbone["model_type"] == "whisper"
        flops = flops_per_audio_second(backbone)
        model, extractor = build_model(backbone, device)
        for precision, batching, checkpointing, batch_size, compiled in itertools.product(
            args.precisions, args.batching, args.checkpointing, args.batch_sizes, args.compile
        ):
            case = dict(model=model_name, precision=precision, batching=batching, checkpointing=checkpointing,
                        batch_size=batch_size, compile=compiled)
            try:
                row = run_case(model, extractor, lengths, labels, batch_size=batch_size, grouped=batching == "grouped",
                               precision=precision, checkpointing=checkpointing == "on", steps=args.steps,
                               warmup=args.warmup, device=device, whisper=whisper,
                               compile_backend=args.compile_backend if compiled == "on" else None,
                               bucket_seconds=args.bucket_seconds)
            except torch.OutOfMemoryError:
                row = {"error": "out of memory"}
                torch.cuda.empty_cache()
            peak = args.peak_tflops or ((989.0 if precision == "bf16" else 67.0) if device.type == "cuda" else None)
            if "audio_seconds_per_second" in row:
                row["tflops"] = flops * row["audio_seconds_per_second"] / 1e12
                row["mfu"] = row["tflops"] / peak if peak else None
            results.append({**case, "flops_per_audio_second": flops, **row})
            shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in results[-1].items()}
            print(json.dumps(shown), flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    print(f"\n{'model':22} {'prec':4} {'batches':7} {'ckpt':4} {'bs':>3} {'comp':4} {'audio-s/s':>9} {'samples/s':>9} "
          f"{'real':>5} {'peak GiB':>8} {'MFU':>6}")
    for r in results:
        if "error" in r:
            print(f"{r['model']:22} {r['precision']:4} {r['batching']:7} {r['checkpointing']:4} {r['batch_size']:3d} "
                  f"{r['error']}")
            continue
        mfu = f"{r['mfu']:.3f}" if r.get("mfu") is not None else "-"
        print(f"{r['model']:22} {r['precision']:4} {r['batching']:7} {r['checkpointing']:4} {r['batch_size']:3d} "
              f"{r['compile']:4} {r['audio_seconds_per_second']:9.1f} {r['samples_per_second']:9.2f} {r['real_frame_fraction']:5.3f} "
              f"{r['peak_memory_gib']:8.2f} {mfu:>6}")
    output = args.output or os.path.join(HERE, "results", "gpu_throughput_tiny.json" if args.tiny else "gpu_throughput.json")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    write_json_atomic(output, {
        "benchmark": "gpu_throughput", "device": name, "tiny": args.tiny, "results": results,
        "torch": torch.__version__, "command": "python benchmarks/gpu_throughput.py " + " ".join(sys.argv[1:]),
    })
    print(f"wrote {output}")
    if not all(math.isfinite(r.get("final_loss", 0.0)) for r in results):
        raise SystemExit("a run ended with a non-finite loss")


if __name__ == "__main__":
    main()
