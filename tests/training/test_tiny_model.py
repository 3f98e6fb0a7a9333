"""The locally built student loads back with the tokenizer it was built with."""

from transformers import AutoTokenizer

from daggerlm.instances.synthetic import generate


def test_auto_tokenizer_loads_the_trained_tokenizer_and_identifiers_are_words(tiny_model_dir):
    from tokenizers import Tokenizer

    loaded = AutoTokenizer.from_pretrained(tiny_model_dir)  # what training, generation and `transformers serve` use
    trained = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    inst = generate(1, "train", seed=5)[0]
    for text in [inst.problem_statement, *inst.repo_files.values(), inst.patch]:
        assert loaded(text, add_special_tokens=False)["input_ids"] == trained.encode(text).ids
        assert loaded.decode(loaded(text, add_special_tokens=False)["input_ids"]) == text
    name = inst.FAIL_TO_PASS[0].split("::test_")[1]
    words = [w for w, _ in loaded.backend_tokenizer.pre_tokenizer.pre_tokenize_str(f"Bug in {name}(12)")]
    assert words[2] == "Ġ" + name and words[4:6] == ["1", "2"]  # an identifier is one word, digits one by one
