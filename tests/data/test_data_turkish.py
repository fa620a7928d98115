"""Turkish capitalisation, and that the corpus and the questions built from KeNet agree on it."""

from diffutron.data.turkish import as_sentence, capitalize_first
from diffutron.embedded.corpus import kenet_document
from diffutron.embedded.kenet import Synset
import random

from diffutron.embedded.questions import definition_examples


def test_capitalize_first_uses_the_turkish_dotted_and_dotless_i():
    assert capitalize_first("ilk") == "İlk"
    assert capitalize_first("ıslak") == "Islak"
    assert capitalize_first("çay") == "Çay"
    assert capitalize_first("") == ""


def test_as_sentence_capitalises_and_ends_with_a_stop():
    assert as_sentence("ısısı yüksek olan") == "Isısı yüksek olan."
    assert as_sentence("ince ve uzun") == "İnce ve uzun."
    assert as_sentence("Ne güzel!") == "Ne güzel!"


def test_corpus_and_questions_capitalise_a_kenet_definition_the_same_way():
    synset = Synset(id="S-1", pos="a", literals=("ilk",), senses=(1,), definition="ilk olan, başta gelen",
                    examples=(), relations=())
    assert kenet_document(synset).text == "ilk (sıfat): İlk olan, başta gelen."
    (example,) = definition_examples(synset, {"ilk": "S-1"}, random.Random(0))
    assert example.answer == "İlk olan, başta gelen."
