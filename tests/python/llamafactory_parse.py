"""Reads a Tunebench LLaMA-Factory export (train.yaml + dataset_info.json + data files) with
LLaMA-Factory's own code, as `llamafactory-cli train train.yaml` would before its first step:

  1. read_args + get_train_args: its HfArgumentParser over ModelArguments, DataArguments,
     TrainingArguments, FinetuningArguments and GeneratingArguments, with unknown keys refused
     and every check get_train_args makes;
  2. get_dataset_list: the dataset_info.json entries as its DatasetAttr;
  3. its loader on each dataset (file loading + alignment to its internal format), counting the
     examples it would skip as abnormal;
  4. the tokenizer, the template and get_dataset for the stage's workflow (sft: "sft", dpo: "rm",
     kto: "kto"), so its stage check and its tokenisation run too.

With --train N it then runs llamafactory.train.tuner.run_exp for N steps (CPU; small models).

Usage: llamafactory_parse.py EXPORT_DIR [--train N]. Prints one JSON object on stdout.
"""

import argparse
import contextlib
import io
import json
import os
import sys


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--train", type=int, default=0)
    opts = ap.parse_args()
    os.chdir(opts.dir)  # dataset_dir and output_dir are relative to where llamafactory-cli runs
    os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logs = io.StringIO()
    with contextlib.redirect_stdout(logs):
        out = read_export(opts.train)
    json.dump(out, sys.stdout)


def read_export(train_steps: int) -> dict:
    import llamafactory
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.data.loader import _get_merged_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import get_train_args, read_args
    from llamafactory.model import load_tokenizer

    # What llamafactory-cli train does with its arguments: the YAML through OmegaConf.
    sys.argv = ["llamafactory-cli", "train.yaml"]
    args = read_args()
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(dict(args))
    stage = finetuning_args.stage
    workflow_stage = {"sft": "sft", "dpo": "rm", "kto": "kto"}[stage]

    attrs = get_dataset_list(data_args.dataset, data_args.dataset_dir)
    aligned = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, workflow_stage, return_dict=True)
    datasets = []
    for attr, name in zip(attrs, data_args.dataset):
        rows = aligned[name]
        broken = sum(1 for r in rows if not r["_prompt"] or not r["_response"])
        first = rows[0]
        datasets.append(
            {
                "name": name,
                "file": attr.dataset_name,
                "load_from": attr.load_from,
                "formatting": attr.formatting,
                "ranking": attr.ranking,
                "kto_tag": attr.kto_tag,
                "rows": len(rows),
                "broken": broken,
                "first": {"prompt": first["_prompt"], "response": first["_response"], "system": first["_system"]},
            }
        )

    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    module = get_dataset(template, model_args, data_args, training_args, stage=workflow_stage, **tokenizer_module)
    train_ds = module.get("train_dataset")
    eval_ds = module.get("eval_dataset")

    out = {
        "llamafactory": llamafactory.__version__,
        "args": {
            "model_name_or_path": model_args.model_name_or_path,
            "adapter_name_or_path": model_args.adapter_name_or_path,
            "disable_gradient_checkpointing": model_args.disable_gradient_checkpointing,
            "stage": stage,
            "finetuning_type": finetuning_args.finetuning_type,
            "lora_rank": finetuning_args.lora_rank,
            "lora_alpha": finetuning_args.lora_alpha,
            "lora_dropout": finetuning_args.lora_dropout,
            "lora_target": finetuning_args.lora_target,
            "use_rslora": finetuning_args.use_rslora,
            "use_dora": finetuning_args.use_dora,
            "pref_beta": finetuning_args.pref_beta,
            "pref_loss": finetuning_args.pref_loss,
            "pref_ftx": finetuning_args.pref_ftx,
            "dpo_label_smoothing": finetuning_args.dpo_label_smoothing,
            "simpo_gamma": finetuning_args.simpo_gamma,
            "kto_chosen_weight": finetuning_args.kto_chosen_weight,
            "kto_rejected_weight": finetuning_args.kto_rejected_weight,
            "disable_shuffling": finetuning_args.disable_shuffling,
            "template": data_args.template,
            "dataset": data_args.dataset,
            "dataset_dir": data_args.dataset_dir,
            "cutoff_len": data_args.cutoff_len,
            "max_samples": data_args.max_samples,
            "val_size": data_args.val_size,
            "do_train": training_args.do_train,
            "output_dir": training_args.output_dir,
            "per_device_train_batch_size": training_args.per_device_train_batch_size,
            "per_device_eval_batch_size": training_args.per_device_eval_batch_size,
            "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
            "learning_rate": training_args.learning_rate,
            "weight_decay": training_args.weight_decay,
            "adam_beta1": training_args.adam_beta1,
            "adam_beta2": training_args.adam_beta2,
            "adam_epsilon": training_args.adam_epsilon,
            "max_grad_norm": training_args.max_grad_norm,
            "num_train_epochs": training_args.num_train_epochs,
            "max_steps": training_args.max_steps,
            "lr_scheduler_type": str(getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)),
            "warmup_ratio": getattr(training_args, "warmup_ratio", None),
            "warmup_steps": training_args.warmup_steps,
            "seed": training_args.seed,
            "eval_strategy": str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)),
            "eval_steps": training_args.eval_steps,
            "logging_steps": training_args.logging_steps,
            "save_steps": training_args.save_steps,
        },
        "datasets": datasets,
        "tokenized": {
            "train": len(train_ds) if train_ds is not None else 0,
            "eval": len(eval_ds) if eval_ds is not None else 0,
            "columns": sorted(train_ds.column_names) if train_ds is not None else [],
        },
    }

    if train_steps > 0:
        from llamafactory.train.tuner import run_exp

        run_exp({**args, "max_steps": train_steps, "save_steps": train_steps, "logging_steps": 1, "report_to": "none", "eval_strategy": "no", "val_size": 0})
        log_file = os.path.join(training_args.output_dir, "trainer_log.jsonl")
        with open(log_file) as f:
            out["trained"] = [json.loads(line) for line in f if line.strip()]
        out["adapter"] = sorted(os.listdir(training_args.output_dir))
    return out


if __name__ == "__main__":
    main()
