"""v3's dictionary stage: its data and training recipes load, and chain onto v2's last stage."""

from pathlib import Path

from diffutron.data.recipes import load_sft_recipe
from diffutron.training.config import load_training_recipe

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "embedded"


def test_the_dictionary_stage_continues_v2_on_its_own_data():
    data = load_sft_recipe(CONFIGS / "data-dictionary.yaml")
    recipe = load_training_recipe(CONFIGS / "dictionary.yaml")
    v2 = load_training_recipe(CONFIGS / "sft2.yaml")
    assert recipe.task == "sft" and recipe.model.from_scratch is None
    assert recipe.model.name_or_path == data.tokenizer == f"{v2.output_dir}/final"
    assert recipe.data.train == str(data.output)
    assert recipe.training.max_length == data.max_length == 96


def test_the_dictionary_data_keeps_every_question_a_share_of_stage_two_and_the_whole_corpus():
    data = load_sft_recipe(CONFIGS / "data-dictionary.yaml")
    sources = {source.name: (str(source.path), source.format, source.limit) for source in data.sources}
    assert sources == {
        "kenet-stage1": ("runs/embedded/kenet-sft/stage1.jsonl", "messages", None),
        "kenet-stage2": ("runs/embedded/kenet-sft/stage2.jsonl", "messages", 20000),
        "corpus-replay": ("runs/embedded/corpus/train.jsonl", "text", None),
    }


def test_the_dictionary_training_settings():
    recipe = load_training_recipe(CONFIGS / "dictionary.yaml")
    training, optimizer = recipe.training, recipe.optimizer
    assert (training.batch_size, training.max_steps, training.group_by_length, training.precision) == (
        32,
        5000,
        True,
        "fp32",
    )
    assert (optimizer.lr, optimizer.schedule, optimizer.warmup) == (1e-3, "cosine", 0.03)
    assert (recipe.checkpoints.save_steps, recipe.checkpoints.keep_last, recipe.lora) == (500, 2, None)
