"""`ser-hf transcribe --corpus NAME --data_path PATH --output transcripts.jsonl [--model openai/whisper-large-v3]`.

Writes the corpus as a JSONL manifest whose ``transcript`` column follows ``--transcript_source``
(default: references for train, ASR for every other split, as in the paper). Train text models on
it with ``corpus: manifest`` and ``data_path: transcripts.jsonl``. A summary of how many rows got
which kind of transcript is written next to it (``<output>.summary.json``). Under ``accelerate
launch --num_processes N`` the utterances are shared out over the processes (one ASR model each)
and the main process writes the outputs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ser_hf.arguments import DataArguments
from ser_hf.config_parser import parse_config
from ser_hf.errors import ConfigError


@dataclass
class TranscribeArguments:
    output: str | None = field(default=None, metadata={"help": "The manifest to write (.jsonl), in the ser-hf schema (required)."})
    model: str = field(
        default="openai/whisper-large-v3",
        metadata={"help": "Any HF speech-recognition model name or local path (run through transformers.pipeline)."},
    )
    transcript_source: str = field(
        default="train=reference,default=asr",
        metadata={
            "help": "Per split: reference (corpus transcripts; missing ones are an error), asr, or reference_or_asr "
            "(references, ASR where missing). 'default' covers splits not named. A YAML mapping works too."
        },
    )
    batch_size: int = field(default=16, metadata={"help": "Utterances per ASR batch (and per cache append)."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where ASR results are cached (default: $SER_HF_CACHE/asr or ~/.cache/ser_hf/asr)."}
    )
    splits: str | None = field(
        default=None, metadata={"help": "Only these splits, comma-separated (default: every split of the corpus)."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Transcribe again even where the cache has a result."})
    language: str | None = field(default=None, metadata={"help": "Whisper's language (e.g. en); part of the cache key."})
    generate_kwargs: dict | None = field(
        default=None, metadata={"help": "Extra generation settings (YAML mapping only); part of the cache key."}
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: first GPU if any)."})
    dtype: str | None = field(default=None, metadata={"help": "Model dtype, e.g. float16 on a GPU (default: the model's)."})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, data_args = parse_config((TranscribeArguments, DataArguments), argv, prog="ser-hf transcribe")
    if not args.output:
        raise ConfigError("ser-hf transcribe needs --output (the .jsonl manifest to write)")
    import datasets

    from ser_hf.experiment import dump_json, load_data
    from ser_hf.io import write_json_atomic
    from ser_hf.transcription import parse_transcript_source, prepare_transcripts, save_manifest

    corpus = load_data(data_args)
    if args.splits:
        wanted = [name.strip() for name in args.splits.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(corpus))
        if unknown:
            raise ConfigError(f"--splits {unknown} not in the corpus (has {list(corpus)})")
        corpus = datasets.DatasetDict({name: corpus[name] for name in wanted})
    generate_kwargs = dict(args.generate_kwargs or {})
    if args.language:
        generate_kwargs["language"] = args.language
    source = parse_transcript_source(args.transcript_source)
    corpus, counts = prepare_transcripts(
        corpus,
        transcript_source=source,
        model=args.model,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        overwrite=args.overwrite,
        generate_kwargs=generate_kwargs or None,
        device=args.device,
        dtype=args.dtype,
    )
    from ser_hf.transcription import _process_state

    state = _process_state()  # under accelerate launch every process transcribed its share; one writes
    if state is not None and not state.is_main_process:
        return 0
    save_manifest(corpus, args.output)
    summary = {
        "corpus": data_args.corpus,
        "data_path": data_args.data_path,
        "asr_model": args.model,
        "generate_kwargs": generate_kwargs,
        "transcript_source": source,
        "rows": counts,
        "manifest": args.output,
    }
    write_json_atomic(f"{args.output}.summary.json", summary)
    print(dump_json(summary))
    return 0
